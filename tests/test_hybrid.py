"""Synthetic lesions inserted into scans (calcscore.realism.hybrid): the partial-volume model
against the sphere's analytic volume, and the epicardial sites on a drawn heart."""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.realism.hybrid import Lesion, epicardial_sites, insert_lesions, lesion_fraction
from calcscore.volume import CTVolume


@pytest.mark.parametrize(
    "spacing, thickness",
    [((0.5, 0.5, 0.5), 0.5), ((5.0, 0.84, 0.84), 5.0), ((3.0, 0.4, 0.4), 3.0)],
)
def test_the_lesion_fractions_add_up_to_the_sphere_volume(spacing, thickness):
    """Summed over the voxels, the partial volume is the sphere's 4/3 pi r^3, whatever the slice
    thickness and blur; a thick slice lowers the peak (a 4 mm sphere in a 5 mm slice fills at
    most 4/5 of a voxel's depth)."""
    lesion = Lesion((20.3, 20.1, 19.7), 4.0, 1000.0)
    _, f = lesion_fraction((200, 200, 200), spacing, lesion, thickness_mm=thickness)
    volume = f.sum() * np.prod(spacing)
    assert volume == pytest.approx(4 / 3 * np.pi * 2.0**3, rel=0.03)
    assert 0 <= f.min() and f.max() <= 1
    if thickness > 4:
        assert f.max() <= 4 / 5 + 1e-6


def test_inserted_lesions_raise_the_scan_and_are_labelled_one_by_one():
    hu = np.full((12, 80, 80), -100, np.int16)
    scan = CTVolume(hu, (3.0, 0.5, 0.5))
    lesions = [Lesion((18.0, 10.0, 10.0), 3.0, 800.0), Lesion((18.0, 30.0, 30.0), 4.0, 600.0)]
    hybrid, ref = insert_lesions(scan, lesions)
    assert (scan.hu == -100).all()  # the input is not changed
    assert set(np.unique(ref)) == {0, 1, 2}
    # every labelled voxel is calcium (>= 130 HU) and every voxel >= 130 HU is labelled
    assert (hybrid.hu[ref > 0] >= 130).all() and (ref[hybrid.hu >= 130] > 0).all()
    # the larger lesion has more voxels above 130 HU; both peak near their slice's share
    assert (ref == 2).sum() > (ref == 1).sum() > 0
    assert 130 < hybrid.hu[ref == 1].max() < 800


def test_epicardial_sites_lie_in_the_fat_around_the_heart_and_apart():
    """A drawn heart (a soft-tissue disk, 40 mm across) in a ring of fat (6 mm) in lung: the
    sites lie in the fat, 1-3 mm from the heart, away from the lung, 15 mm apart."""
    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80) * 0.5  # mm
    sl = np.where(r <= 20, 40, np.where(r <= 30, -100, -850)).astype(np.int16)
    scan = CTVolume(np.repeat(sl[None], 10, axis=0), (3.0, 0.5, 0.5))
    sites = epicardial_sites(
        scan,
        (2, 7),
        ((10, 150), (10, 150)),
        12,
        rng=np.random.default_rng(1),
        separation_mm=15,
        lung_mm=5,
    )
    assert len(sites) >= 6
    pts = np.array([s.centre_mm for s in sites])
    radius = np.hypot(pts[:, 1] - 40, pts[:, 2] - 40)
    assert (radius >= 20.5).all() and (radius <= 23.5).all()
    assert (pts[:, 1] - 40 <= 0.6 * 20 + 0.5).all()  # none far behind the heart's centre
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 99
    assert d.min() >= 15
    # the artery by the groove: patient right (image left) RCA, in front LAD, behind left LCX
    for s, (_, y, x) in zip(sites, pts):
        dy, dx = y - 40, x - 40
        if abs(dx + 4) < 0.5 or abs(dy) < 0.5:
            continue  # on a border of the rule (the radius comes from the drawn area)
        want = "RCA" if dx < -4 else "LAD" if dy < 0 else "LCX"
        assert Label(s.artery).name == want, (dy, dx)


@pytest.mark.parametrize(
    "spacing, thickness, direction",
    [
        ((0.5, 0.5, 0.5), 0.5, (0.0, 0.6, 0.8)),
        ((5.0, 0.84, 0.84), 5.0, (0.0, 1.0, 0.0)),
        ((3.0, 0.4, 0.4), 3.0, (0.6, 0.0, 0.8)),
    ],
)
def test_a_capsule_fills_its_analytic_volume(spacing, thickness, direction):
    """A capsule (3 mm across, swept 12 mm): summed partial volume = pi r^2 L + 4/3 pi r^3
    (84.8 + 14.1 mm^3), and it reaches as far as its ends, along its direction."""
    lesion = Lesion((30.2, 40.1, 39.7), 3.0, 1000.0, length_mm=12.0, direction=direction)
    box, f = lesion_fraction((200, 200, 200), spacing, lesion, thickness_mm=thickness)
    volume = f.sum() * np.prod(spacing)
    assert lesion.volume_mm3 == pytest.approx(np.pi * 1.5**2 * 12 + 4 / 3 * np.pi * 1.5**3)
    assert volume == pytest.approx(lesion.volume_mm3, rel=0.03)
    # the voxels at least half filled lie within the capsule's reach and span its length
    zyx = (np.argwhere(f >= 0.5) + [b.start for b in box]) * spacing - lesion.centre_mm
    along = zyx @ np.asarray(direction)
    assert along.max() - along.min() > 12 - 2 * max(spacing)
    assert np.abs(along).max() <= 6 + 1.5 + max(spacing)


def test_elongated_lesions_are_capsules_along_the_hearts_surface():
    """On a drawn round heart every site's tangent is perpendicular to the line from the heart's
    centre; ``elongated=1`` draws capsules 5-20 mm long along it (tilted out of the slice by at
    most 60 degrees), ``elongated=0`` the spheres of the same random draws as before."""
    from calcscore.realism.hybrid import random_lesions

    yy, xx = np.mgrid[:160, :160]
    r = np.hypot(yy - 80, xx - 80) * 0.5
    sl = np.where(r <= 20, 40, np.where(r <= 30, -100, -850)).astype(np.int16)
    scan = CTVolume(np.repeat(sl[None], 10, axis=0), (3.0, 0.5, 0.5))
    sites = epicardial_sites(
        scan, (2, 7), ((10, 150), (10, 150)), 8, rng=np.random.default_rng(1), lung_mm=5
    )
    for s in sites:
        radial = np.array(s.centre_mm[1:]) - 40
        assert abs(np.dot(radial / np.linalg.norm(radial), s.tangent_yx)) < 0.1
    capsules = random_lesions(sites, np.random.default_rng(4), elongated=1.0)
    for s, le in zip(sites, capsules):
        u = np.array(le.direction)
        assert 5 <= le.length_mm <= 20 and 2 <= le.diameter_mm <= 4
        assert abs(u[0]) <= np.sin(np.pi / 3) + 1e-9
        assert abs(np.dot(u[1:] / np.linalg.norm(u[1:]), s.tangent_yx)) > 0.999
    spheres = random_lesions(sites, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    for le in spheres:
        assert le.length_mm == 0
        assert le.diameter_mm == rng.choice([2.5, 3.0, 3.5, 4.0, 5.0])
        assert le.peak_hu == rng.uniform(400, 1000)


def test_the_heart_only_cut_is_a_gated_field_of_view_around_the_lesions():
    """200 mm across (at 0.5 mm: 400 voxels) centred on the lesions' mean centre, the heart's
    slices and 10 mm (at 2.5 mm: 4 slices) above and below, clipped to the scan; every voxel keeps
    its physical position and its reference."""
    from calcscore.realism.hybrid import heart_only_cut

    hu = np.arange(30 * 600 * 600, dtype=np.float32).reshape(30, 600, 600)
    scan = CTVolume(hu, (2.5, 0.5, 0.5), origin_mm=(-100.0, 10.0, 20.0))
    ref = np.zeros(hu.shape, np.uint8)
    ref[12, 300, 250], ref[14, 320, 270] = 1, 2
    lesions = [Lesion((30.0, 150.0, 125.0), 3.0, 500.0), Lesion((35.0, 160.0, 135.0), 3.0, 500.0)]
    cut, ref_cut = heart_only_cut(scan, ref, lesions, {"z": [2, 20], "y": [0, 1], "x": [0, 1]})
    # centre (voxels): y 310, x 260; 200 voxels either side; z 2 - 4 -> 0 (clipped), 20 + 4
    assert cut.shape == (25, 400, 400) == ref_cut.shape
    assert cut.hu[0, 0, 0] == hu[0, 110, 60] and cut.hu[-1, -1, -1] == hu[24, 509, 459]
    first = cut.index_to_physical(np.asarray([[0.0, 0.0, 0.0]]))[0]
    assert np.allclose(first, scan.index_to_physical(np.asarray([[0.0, 110.0, 60.0]]))[0])
    assert ref_cut[12, 190, 190] == 1 and ref_cut[14, 210, 210] == 2 and ref_cut.sum() == 3


def _hybrid_benchmark():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hybrid_lesions.py"
    spec = importlib.util.spec_from_file_location("hybrid_lesions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_bins_heart_only_lesions_by_their_distance_from_the_cut_end():
    """A lesion on slices 1-2 of 10 lies 1 slice (5 mm) from the first; one on slices 5-6, 3
    slices (15 mm) from the last; one on slices 0-9 touches both; an absent one has none. The
    summary counts found lesions of heart-only cases only, per distance bin."""
    bench = _hybrid_benchmark()
    ref = np.zeros((10, 4, 4), np.uint8)
    ref[1:3, 0, 0], ref[5:7, 1, 1], ref[0:10, 2, 2] = 1, 2, 3
    assert bench.edge_mm(ref, 4, 5.0) == [5.0, 15.0, 0.0, None]

    def case(edges, lesions):
        return {"edge_mm": edges, "m": {"with_net": {"lesions": lesions}}}

    result = {
        "models": {"m": "dir"},
        "cases": {
            "a heart-only seed 0": case([5.0, 30.0, 60.0], ["found", "missed", "found"]),
            "a heart-only seed 1": case([10.0, None], ["missed", "invisible"]),
            "a seed 0": case([0.0, 0.0], ["found", "found"]),  # whole scans are not counted
        },
    }
    (line,) = bench.by_edge(result)
    assert line.endswith("0-25 mm 1/2, 25-50 mm 0/1, 50+ mm 1/1")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::calcscore.preprocess.ThickSliceWarning")  # 5 mm slices
def test_a_gated_scans_circular_field_of_view_changes_no_label(hybrid_heart_cut):
    """A gated calcium scan stores its heart-only field of view as a circle, with padding (-1,024,
    -2,048 or -3,024 HU by scanner) outside it. The real chest CT that ships with calcscore, with
    12 synthetic coronary lesions in its epicardial fat and cut heart-only (200 mm square), is
    labelled voxel for voxel as the same cut with its corners outside the circle padded, and most
    of the inserted calcium is labelled coronary in both."""
    from calcscore.inference import InferenceOptions, Model, segment

    cut, ref_cut = hybrid_heart_cut
    model, opts = Model.load(None), InferenceOptions(channels_last=True)
    square = segment(cut, model, opts).labels.labels
    coronary = np.isin(square, [int(Label.LAD), int(Label.LCX), int(Label.RCA)])
    assert (coronary & (ref_cut > 0)).sum() > 0.7 * (ref_cut > 0).sum()
    _, ny, nx = cut.shape
    yy, xx = np.mgrid[:ny, :nx]
    outside = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) > min(ny, nx) / 2
    assert outside.sum() > 0.2 * ny * nx  # the corners: a fifth of the square
    for pad in (-1024.0, -2048.0, -3024.0):
        hu = cut.hu.copy()
        hu[:, outside] = pad
        circle = segment(cut.with_array(hu), model, opts).labels.labels
        np.testing.assert_array_equal(circle, square)


def test_mediastinal_node_sites_lie_in_fat_above_the_heart_and_apart():
    """benchmarks/mediastinal_nodes.py on the shipped real scan: every calcified node lies in the
    mediastinum's fat, above the heart's last drawn slice and at most 50 mm above it, 15 mm apart
    from the others."""
    import importlib.util
    from pathlib import Path

    from scipy import ndimage

    from calcscore.datasets import examples
    from calcscore.regions import find_chest_regions

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mediastinal_nodes.py"
    spec = importlib.util.spec_from_file_location("mediastinal_nodes", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    scan = examples.chest_ct()
    top = 34  # data/real_negatives/hearts.json's last heart slice of lungdx-a0001-b
    nodes = bench.nodes(scan, top, 8, np.random.default_rng(0))
    assert len(nodes) == 8
    zone = find_chest_regions(scan).aorta
    fat = ndimage.uniform_filter(scan.hu.astype(np.float32), size=(1, 3, 3))
    zyx = np.array([n.centre_mm for n in nodes]) / np.array(scan.spacing_mm)
    z, y, x = np.round(zyx).astype(int).T
    assert (z > top).all() and (z <= top + 10).all()  # 50 mm of 5 mm slices
    assert zone[z, y, x].all()
    assert ((fat[z, y, x] > -150) & (fat[z, y, x] < -40)).all()
    pts = np.array([n.centre_mm for n in nodes])
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 99
    assert d.min() >= 15
    assert all(4 <= n.diameter_mm <= 10 and 300 <= n.peak_hu <= 900 for n in nodes)
