"""The realistic ("v2") heart and aorta: four chambers, coronary arteries in their grooves'
fat, an aorta of real diameters and curvature, no bone on any of them; v1 byte for byte.

The expectations are anatomical facts and the generator's parameters measured on the painted
(noise-free) anatomy, not figures read off the drawing code.
"""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.phantom import make_scans
from calcscore.phantom._draw import GridSpec, curve_frames
from calcscore.phantom.anatomy import (
    build_geometry,
    draw_subject,
    heart_section_fraction,
    render_anatomy,
)
from calcscore.phantom.aorta import HEART_GROWTH
from calcscore.phantom.calcification import Burden, draw_lesions

#: Fingerprints of the v1 phantoms below, taken with the generator before the v2 heart (commit
#: 73e42e7, whose sha256 of them the new generator reproduced bit for bit on this project's
#: machine): the shipped networks learned v1, so it must not change. Per scan: voxels per label
#: (exact up to 2 boundary voxels) and the HU mean and SD (to 0.01 HU): a real change of v1 moves
#: them far more, while another CPU's floating-point rounding (SIMD paths of numpy) does not.
V1_FINGERPRINTS = {
    (0, "soft"): ({0: 982786, 1: 23, 4: 231}, -418.1025, 470.4487),
    (0, "sharp"): ({0: 982787, 1: 25, 4: 228}, -412.0762, 481.3322),
    (3, "soft"): ({0: 982641, 2: 90, 6: 309}, -347.4961, 444.6767),
    (3, "sharp"): ({0: 982660, 2: 89, 6: 291}, -346.2409, 462.6629),
}
CORONARY = {Label.LAD: "LAD", Label.LCX: "LCX", Label.RCA: "RCA"}


def _geo(seed: int, anatomy: str = "v2"):
    return build_geometry(draw_subject(np.random.default_rng(seed)), anatomy)


def _anatomy_around(geo, center, half_mm: float, step: float = 1.0):
    n = int(2 * half_mm / step)
    grid = GridSpec((n, n, n), (step,) * 3, tuple(np.asarray(center)[::-1] - half_mm))
    return render_anatomy(geo, grid), grid


def _hu_at(hu, grid, p_xyz) -> np.ndarray:
    p = np.atleast_2d(p_xyz)[:, ::-1]
    idx = np.round((p - np.asarray(grid.origin_mm)) / np.asarray(grid.spacing_mm)).astype(int)
    idx = np.clip(idx, 0, np.asarray(grid.shape) - 1)
    return hu[idx[:, 0], idx[:, 1], idx[:, 2]]


def test_v1_is_unchanged():
    for seed in (0, 3):
        for kernel, (vol, lab, _) in make_scans(rng=seed, size="small", anatomy="v1").items():
            counts, mean, sd = V1_FINGERPRINTS[(seed, kernel)]
            values, n = np.unique(lab.array, return_counts=True)
            got = dict(zip(values.tolist(), n.tolist()))
            assert got.keys() == counts.keys(), (seed, kernel, got)
            assert all(abs(got[k] - counts[k]) <= 2 for k in counts), (seed, kernel, got)
            hu = vol.hu.astype(np.float64)
            assert abs(hu.mean() - mean) < 0.01 and abs(hu.std() - sd) < 0.01, (seed, kernel)


def test_v2_has_its_own_heart_and_aorta_v1_keeps_the_first():
    g1, g2 = _geo(4, "v1"), _geo(4, "v2")
    assert g1.heart is None and set(g2.heart.chambers) == {"LV", "RV", "LA", "RA"}
    assert not np.array_equal(g1.aorta, g2.aorta)
    # the same subject: its airways, and the aortic valve at the same level
    assert np.array_equal(g1.carina, g2.carina) and g1.av_center[2] == g2.av_center[2]


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_chamber_walls_lv_thick_rv_thin_blood_like_myocardium():
    geo = _geo(2)
    heart = geo.heart
    lv, rv = heart.chambers["LV"], heart.chambers["RV"]
    sc = geo.subject.heart_scale
    c = lv.center + heart.u * 25.0
    hu, grid = _anatomy_around(geo, c + heart.e2 * 5.0, 42.0, 0.5)

    def run_of(start, direction, value, tol=1.0):
        """mm along ``direction`` from ``start`` that hold ``value`` after leaving the cavity."""
        t = np.arange(0, 40, 0.25)
        v = _hu_at(hu, grid, start + np.outer(t, direction))
        on = np.abs(v - value) < tol
        first = np.argmax(on)
        last = first + np.argmin(on[first:])
        return (last - first) * 0.25

    # the LV's lateral wall (away from the septum) and the RV's free wall (away from the LV)
    lateral = run_of(c, heart.e2, 46.0)
    rv_c = rv.center + heart.u * 10.0 - heart.e2 * 8.0
    free = run_of(rv_c, -heart.e2, 46.0)
    assert lateral == pytest.approx(10.0 * sc, abs=1.5)
    assert free == pytest.approx(4.0 * sc, abs=1.5)
    # non-contrast: blood and myocardium differ by less than 15 HU
    assert abs(_hu_at(hu, grid, c)[0] - _hu_at(hu, grid, c + heart.e2 * (lateral + 9))[0]) < 15


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_chamber_volumes_are_an_adults():
    # a subject whose chest left room for the heart (a shallow chest shrinks it: _fit_heart)
    geo = _geo(2)
    assert geo.heart.fit_scale == 1.0
    hu, grid = _anatomy_around(geo, geo.heart.origin + geo.heart_u * 20, 85.0, 1.0)
    z, y, x = (
        a.astype(float) for a in np.meshgrid(*(grid.axis_mm(k) for k in range(3)), indexing="ij")
    )
    blood = hu == 38.0
    vols = {}
    for name, ch in geo.heart.chambers.items():
        inside = ch.sd_inner(x, y, z) < -1.0
        vols[name] = float((blood & inside).sum()) / 1000.0  # ml at 1 mm
    # non-gated, mid-cycle adult volumes (ml): ventricles 50-160, atria 30-110
    assert 50 < vols["LV"] < 160 and 50 < vols["RV"] < 180, vols
    assert 30 < vols["LA"] < 110 and 30 < vols["RA"] < 120, vols


def _coronary_lesions(seed: int):
    geo = _geo(seed)
    burden = Burden(4, 2500.0, True, False, False, 0.0)
    return geo, [les for les in draw_lesions(geo, burden, seed) if les.label in CORONARY]


@pytest.mark.parametrize("seed", [0, 3])
def test_coronary_calcium_lies_in_the_grooves_fat(seed):
    geo, lesions = _coronary_lesions(seed)
    assert {les.label for les in lesions} == set(CORONARY)
    heart = geo.heart
    hu, grid = _anatomy_around(geo, heart.origin + heart.u * 25, 90.0, 1.0)
    grooves = np.concatenate(list(heart.grooves.values()))
    ball = np.array(
        [[i, j, k] for i in range(-4, 5) for j in range(-4, 5) for k in range(-4, 5)], float
    )
    ball = ball[np.linalg.norm(ball, axis=1) <= 4.0]
    # the left main (to the LCX's start) and the RCA to the AV groove leave the aortic root
    lad = geo.coronaries["LAD"]
    lm = int(np.argmin(np.linalg.norm(lad - geo.coronaries["LCX"][0], axis=1)))
    first = {
        "LAD": lm,
        "LCX": 0,
        "RCA": int(
            np.argmin(
                np.linalg.norm(
                    geo.coronaries["RCA"][:60, None] - heart.grooves["AV"][None], axis=2
                ).min(axis=1)
            )
        ),
    }
    for les in lesions:
        c = np.asarray(les.center_mm)
        name = CORONARY[les.label]
        k = int(np.argmin(np.linalg.norm(geo.coronaries[name] - c, axis=1)))
        if k < first[name]:
            continue
        # in a groove: within 7 mm of the AV or an IV groove, with fat within 4 mm of it
        assert np.linalg.norm(grooves - c, axis=1).min() < 7.0, CORONARY[les.label]
        assert (_hu_at(hu, grid, c + ball) < -60).any(), CORONARY[les.label]


def test_lcx_runs_left_and_behind_the_lad_rca_on_the_right():
    left_back = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    for seed in range(4):
        geo, lesions = _coronary_lesions(seed)
        mean = {
            n: np.mean([les.center_mm for les in lesions if CORONARY[les.label] == n], axis=0)
            for n in ("LAD", "LCX", "RCA")
        }
        assert mean["LCX"] @ left_back > mean["LAD"] @ left_back + 5, seed
        assert mean["RCA"][0] < mean["LAD"][0] - 10, seed
        # the LAD runs down to the apex: left of, in front of and below its start
        bif = geo.coronaries["LCX"][0]
        end = geo.coronaries["LAD"][-1]
        assert end[2] < bif[2] - 25 and end[0] > bif[0] + 20 and end[1] < bif[1], seed


def test_lesions_per_label_are_those_of_v1():
    for seed in (1, 6):
        counts = {}
        for anatomy in ("v1", "v2"):
            geo = _geo(seed, anatomy)
            burden = Burden(3, 400.0, True, True, True, 1.5)
            lesions = draw_lesions(geo, burden, seed)
            counts[anatomy] = np.bincount([les.label for les in lesions], minlength=8)[1:]
        # the same calcium (the costal cartilages' confounders, label 0, are v2's own)
        assert np.array_equal(counts["v1"], counts["v2"]) and counts["v2"][:3].sum() > 0


def _lumen_diameter(geo, i: int) -> float:
    """Median over 12 directions of the longest run (mm) of blood HU on a line across the
    aorta's centreline at point i, in its cross-section (noise-free anatomy)."""
    p = geo.aorta[i]
    t, n, b = (f[i] for f in curve_frames(geo.aorta))
    hu, grid = _anatomy_around(geo, p, 30.0, 0.5)
    chords = []
    for a in np.linspace(0, np.pi, 12, endpoint=False):
        d = n * np.cos(a) + b * np.sin(a)
        on = np.abs(_hu_at(hu, grid, p + np.outer(np.arange(-29, 29, 0.25), d)) - 38.0) < 2
        edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
        runs = np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0]
        chords.append(runs.max() * 0.25 if len(runs) else 0.0)
    return float(np.median(chords))


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
@pytest.mark.parametrize("seed", [1, 5])
def test_aorta_diameters_at_the_root_and_descending(seed):
    geo = _geo(seed)
    seg, z = geo.aorta_segment, geo.aorta[:, 2]
    root = int(np.nonzero(seg == 0)[0][-1] * 0.7)  # the sinuses, above the coronary ostia
    desc = int(np.argmin(np.abs(z - (geo.av_center[2] - 40)) + 1e3 * (seg != 3)))
    d_root, d_desc = _lumen_diameter(geo, root), _lumen_diameter(geo, desc)
    assert d_root == pytest.approx(2 * geo.aorta_radius[root], abs=2.0)
    assert d_desc == pytest.approx(2 * geo.aorta_radius[desc], abs=1.5)
    assert 27 < d_root < 40 and 20 < d_desc < 30  # an adult's (mm)


def test_aorta_curves_like_a_real_one():
    for seed in range(6):
        geo = _geo(seed)
        a, seg = geo.aorta, geo.aorta_segment
        av, tr = geo.av_center, geo.trachea[-1]
        asc, arch, desc = a[seg == 1], a[seg == 2], a[seg == 3]
        # the root rises out of the heart up, right and forwards
        d = a[20] - a[0]
        assert d[2] > 0 and d[0] < 0 and d[1] < 0
        # ascending on the right, in front of the trachea; arch higher than the carina; the
        # descending aorta left of the spine and behind the ascending
        assert np.median(asc[:, 0]) < geo.spine_x and np.median(asc[:, 1]) < tr[1]
        assert arch[:, 2].max() > geo.carina[2] + 15
        top = desc[desc[:, 2] > av[2] - 60]
        assert (
            np.all(top[:, 0] > geo.spine_x + 15)
            and np.median(top[:, 1]) > np.median(asc[:, 1]) + 30
        )
        # the arch passes left of the trachea: the point of the arch beside it lies on its left
        beside = arch[np.argmin(np.abs(arch[:, 1] - tr[1]))]
        assert beside[0] > tr[0] + 15


def _bone_points(geo):
    """Points (N, 3) and their radii (N,) on the ribs, costal cartilages and sternum."""
    from calcscore.phantom.habitus import sternum_half_width, sternum_y

    hab = geo.habitus
    pts, rad = [], []
    for bone in hab.ribs + hab.cartilages:
        pts.append(bone.points)
        rad.append(np.maximum(bone.r_normal, bone.r_binormal))
    zs = np.arange(hab.z_bottom, hab.z_top, 2.0)
    for f in np.linspace(-1, 1, 9):
        xs = geo.body_center[0] + f * sternum_half_width(hab, zs)
        pts.append(np.stack([xs, sternum_y(hab, geo, zs), zs], axis=1))
        rad.append(np.full(len(zs), 7.5))
    return np.concatenate(pts), np.concatenate(rad)


def test_no_bone_on_the_heart_or_the_aorta():
    for seed in range(12):
        geo = _geo(seed)
        bone, r_bone = _bone_points(geo)
        # the heart with its epicardial fat
        gap = geo.heart.sd_heart(bone) - r_bone - geo.epicardial_fat_mm
        assert gap.min() > 0, (seed, gap.min())
        # the aorta's wall (its calcium lies in it)
        d = np.linalg.norm(bone[:, None] - geo.aorta[None, ::2], axis=2)
        gap = (d - geo.aorta_radius[None, ::2] - r_bone[:, None]).min()
        assert gap > 0, (seed, gap)
        # vertebral bodies: the heart stays in front of them
        zs = np.arange(geo.z_diaphragm, geo.carina[2], 4.0)
        ang = np.linspace(0, 2 * np.pi, 36, endpoint=False)
        rx, ry = geo.vb_radii
        vb = np.array(
            [
                [geo.spine_x + rx * np.cos(a), float(geo.spine_y(z)) + ry * np.sin(a), z]
                for z in zs
                for a in ang
            ]
        )
        assert geo.heart.sd_heart(vb).min() > geo.epicardial_fat_mm, seed


def _desc_offset(geo, dz: float):
    """The descending aorta's centre ``dz`` mm from the aortic valve's level: mm left of and in
    front of the vertebral body's centre, and the fat (mm) between its wall (lumen + 2 mm) and the
    vertebral body's ellipse."""
    a, seg = geo.aorta, geo.aorta_segment
    i = int(np.argmin(np.abs(a[:, 2] - (geo.av_center[2] + dz)) + 1e3 * (seg != 3)))
    c, sy = a[i], float(geo.spine_y(a[i, 2]))
    ang = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    rx, ry = geo.vb_radii
    ell = np.stack([geo.spine_x + rx * np.cos(ang), sy + ry * np.sin(ang)], axis=1)
    gap = np.linalg.norm(ell - c[:2], axis=1).min() - geo.aorta_radius[i] - 2.0
    return c[0] - geo.spine_x, sy - c[1], gap


def test_descending_aorta_lies_against_the_left_front_of_the_spine():
    # real chest CT (docs/phantoms.md): the centre 19-30 mm left of the vertebral body's centre
    # on lungdx-a0001-b, 13-18 mm on lidc-idri-0001, 12-31 mm in front of it, touching it
    # with a few mm of fat; generator 2026-12-05.2 put it 43-48 mm left in subjects 2, 3 and 5
    for seed in (2, 3, 5, 8):
        geo = _geo(seed)
        for dz in (-40.0, 20.0):
            left, front, gap = _desc_offset(geo, dz)
            assert 15.0 < left < 32.0, (seed, dz, left)
            assert 0.5 * geo.vb_radii[1] < front < 30.0, (seed, dz, front)
            assert 0.0 < gap < 6.0, (seed, dz, gap)
        # the oesophagus beside it, not in it
        eso, a = geo.esophagus, geo.aorta[geo.aorta_segment == 3]
        r = geo.aorta_radius[geo.aorta_segment == 3]
        d = np.linalg.norm(eso[:, None] - a[None], axis=2) - r[None] - 7.5
        assert d.min() > -1.0, (seed, d.min())


def _lv_blood_ml(geo, step: float = 1.5) -> float:
    h = geo.heart
    c = h.origin + h.u * 20
    ax = np.arange(-95, 95, step)
    z, y, x = np.meshgrid(c[2] + ax, c[1] + ax, c[0] + ax, indexing="ij")
    return float((h.chambers["LV"].sd_inner(x, y, z) < 0).sum()) * step**3 / 1000.0


def test_shallow_chests_keep_an_adult_heart():
    # the three thinnest chests of draw_subject(0..19) held a left ventricle of 24-29 ml with
    # generator 2026-12-05.2 (shrunk to 0.82-0.88); a non-gated adult CT shows about 60-140 ml
    for seed in (6, 8, 9):
        geo = _geo(seed)
        # shrunk to no less than 0.85 of the first generator's heart envelope (v2 grows its
        # chambers by HEART_GROWTH before fitting them)
        assert geo.heart.fit_scale * HEART_GROWTH >= 0.85, (seed, geo.heart.fit_scale)
        assert _lv_blood_ml(geo) > 45.0, seed
        # the heart fills the chest as on a real scan: its pericardial sac at least 7.5 % of the
        # body's section through its centre (lungdx-a0001-b: 13.4 %, lidc-idri-0001: 14.7 %)
        frac = heart_section_fraction(geo)
        assert frac > 0.075, (seed, frac)
