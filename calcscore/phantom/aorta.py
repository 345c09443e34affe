"""The realistic ("v2") aorta and the great vessels round the four-chamber heart of
:mod:`calcscore.phantom.heart`, and :func:`build_v2_heart_and_aorta`, which puts them all in
place of the first generator's.

The aorta: the root from the aortic valve up, right and forwards (sinuses 30-35 mm across), the
ascending aorta right of the midline, in front of the trachea and behind the sternum, the arch
over the left main bronchus and the pulmonary bifurcation to the left of the trachea, the
descending aorta against the left front of the vertebral bodies (a fat plane from the bone),
drifting towards the midline below the heart: its course is planned first and the heart fitted
round it (:func:`descending_plan`), the oesophagus moved off it. The pulmonary trunk leaves the right
ventricle in front of, left of and above the aortic valve and winds round the ascending aorta's
left side to its bifurcation; the superior vena cava runs down right of the ascending aorta into
the right atrium.
"""

from __future__ import annotations

import logging

import numpy as np

from calcscore.phantom._draw import arc_length, resample_curve, segments_at
from calcscore.phantom.heart import (
    GROOVE_FAT_MM,
    _fit_heart,
    _move,
    _unit,
    build_coronaries,
    build_heart,
    heart_centroid,
)

log = logging.getLogger(__name__)


#: the descending aorta's centre left of the vertebral body's centre (mm) at the top of its
#: straight course (34 mm below the arch's top): a fraction of the vertebral body's half width
#: plus mm (plus 3 mm x the tortuosity):
#: on the real non-contrast lungdx-a0001-b it lies 29-30 mm left of it 25 mm above the aortic
#: valve, 26 mm at 35 mm below, 19-20 mm at 55-75 mm below (docs/phantoms.md)
DESC_X = (0.75, 12.0)
#: where (a fraction of its course from 34 mm below the arch's top to 230 mm below the valve) it
#: starts drifting towards the midline, and by how much of the vertebral half width at the end
DESC_DRIFT = (0.2, 1.0)


def _descending_levels(geo) -> tuple[np.ndarray, np.ndarray]:
    """The heights (mm) of the descending aorta's 12 control points and their fraction along it."""
    s = geo.subject
    z_top, z_bottom = s.z_av_mm + s.arch_height_mm - 34, s.z_av_mm - 230
    zs = np.linspace(z_top, z_bottom, 12)
    return zs, (z_top - zs) / (z_top - z_bottom)


def _descending_x(geo, zz: float, f: float) -> float:
    """The descending aorta's centre x (mm) at height ``zz`` (fraction ``f`` along it): beside
    the left of the vertebral body, drifting towards the midline below the heart."""
    rx = geo.vb_radii[0]
    drift = max(f - DESC_DRIFT[0], 0.0) / (1 - DESC_DRIFT[0]) * DESC_DRIFT[1] * (rx - 1.0)
    return geo.spine_x + DESC_X[0] * rx + DESC_X[1] + 3 * geo.subject.aortic_tortuosity - drift


def _descending_point(geo, xx: float, zz: float, r: float) -> np.ndarray:
    """The descending aorta's centre at (``xx``, ``zz``): in front of the vertebral body as far as
    its ellipse grown by the lumen ``r``, the wall and ``AORTA_SPINE_GAP_MM`` requires, at least a
    quarter of the body's depth in front of its centre."""
    from calcscore.phantom.anatomy import AORTA_SPINE_GAP_MM, _clear_of_spine

    sy = float(geo.spine_y(zz))
    yy = sy - _clear_of_spine(xx - geo.spine_x, geo.vb_radii, r + AORTA_SPINE_GAP_MM + 1.0)
    return np.array([xx, min(yy, sy - geo.vb_radii[1] * 0.75), zz])


def descending_plan(geo) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) on the descending aorta's planned course (its wiggle left out) and the
    radius (mm) of its wall round each: obstacles the heart is fitted round."""
    asc = geo.subject.aorta_scale
    pts, rad = [], []
    for zz, f in zip(*_descending_levels(geo)):
        r = (12.8 + f * (11.2 - 12.8)) * asc
        pts.append(_descending_point(geo, _descending_x(geo, zz, f), zz, r))
        rad.append(r + 1.5 + 2 * geo.subject.aortic_tortuosity)
    p = resample_curve(np.array(pts), 4.0)
    r = np.interp(np.linspace(0, 1, len(p)), np.linspace(0, 1, len(rad)), rad)
    return p, r


def build_aorta(geo, rng: np.random.Generator):
    """The aorta's centreline (1 mm steps), lumen radius and segment (0 root, 1 ascending, 2
    arch, 3 descending): root from the aortic valve up, right and forwards, the ascending aorta
    behind the sternum, the arch left of the trachea over the left bronchus, the descending
    aorta on the left of the vertebral bodies, ``AORTA_SPINE_GAP_MM`` clear of them."""
    from calcscore.phantom.habitus import sternum_y

    s = geo.subject
    tort, asc = s.aortic_tortuosity, s.aorta_scale
    a, n = geo.av_center, geo.av_normal
    zav, z_top = s.z_av_mm, s.z_av_mm + s.arch_height_mm
    rx, ry = geo.vb_radii
    r_root, r_asc, r_arch, r_d0, r_d1 = (v * asc for v in (17.0, 16.0, 14.0, 12.8, 11.2))

    tr = geo.trachea[-1]  # the carina end of the trachea

    def behind_sternum(p, r):
        # the ascending aorta lies well in front of the trachea (the right paratracheal nodes
        # between), but its front wall 6 mm behind the sternum's back
        y_min = float(sternum_y(geo.habitus, geo, p[2])) + 7.5 + 6.0 + r
        return np.array([p[0], max(min(p[1], tr[1] - r - 24.0), y_min), p[2]])

    stj = a + n * 24.0
    # right of the midline (the valve may lie left of it)
    x_asc = min(a[0] - 12.0, geo.spine_x - 14.0) - 7 * tort
    asc_mid = behind_sternum(np.array([x_asc, a[1] - 14.0, a[2] + 0.45 * (z_top - zav)]), r_asc)
    asc_top = behind_sternum(np.array([x_asc + 2.0, a[1] - 10.0, z_top - 22]), r_asc)
    # the arch: over the top, in front of and then left of the trachea (its wall and fat 13 mm)
    arch_top = np.array([tr[0] + 14.0, tr[1] - (r_arch + 13.0), z_top])
    arch_post = np.array([tr[0] + 13.0 + r_arch + 5.0, tr[1] + 6.0, z_top - 14])
    ctrl = [a + n * 2.0, a + n * 12.0, stj, asc_mid, asc_top, arch_top, arch_post]
    phase = rng.uniform(0, 2 * np.pi)
    heart = geo.heart
    cors = np.concatenate(list(geo.coronaries.values()))
    for zz, f in zip(*_descending_levels(geo)):
        xx = _descending_x(geo, zz, f) + tort * 5 * np.sin(phase + zz / 45.0)
        r = r_d0 + f * (r_d1 - r_d0)
        for _ in range(12):  # out of the heart's way (rarely: the heart was fitted round it)
            p = _descending_point(geo, xx, zz, r)
            gap = min(
                float(heart.sd_heart(p)[0]) - geo.epicardial_fat_mm,
                float(np.linalg.norm(cors - p, axis=1).min()) - GROOVE_FAT_MM - 3.0,
            )
            if gap > r + 1.0:
                break
            xx += 2.5
        ctrl.append(p)
    aorta = resample_curve(np.array(ctrl), 1.0)
    sl = arc_length(aorta)
    (i_asc, i_arch0, i_arch1), seg = segments_at(aorta, [stj, asc_top, ctrl[7]])
    radius = np.interp(
        sl,
        [0, sl[i_asc] * 0.5, sl[i_asc], sl[i_arch0], sl[i_arch1], sl[-1]],
        [max(r_root - 2.0, geo.av_radius + 1.0), r_root, r_asc, r_arch, r_d0, r_d1],
    )
    return aorta, radius, seg, (i_asc, i_arch0, i_arch1)


#: the four chambers' size (not their walls) over the first generator's heart envelope, before
#: :func:`calcscore.phantom.heart._fit_heart` (whose ``fit_scale`` is relative to it): without it
#: the hearts' sacs filled a median 11.7 % of the body's section at mid-heart, against 13.4 % and
#: 14.7 % on the real lungdx-a0001-b and lidc-idri-0001, and the median left ventricle held 77 ml
HEART_GROWTH = 1.08
#: the oesophagus's radius as drawn (:func:`calcscore.phantom.render.render_interior`) and the
#: fat (mm) kept between it and the descending aorta's wall
ESO_R, ESO_GAP = 7.5, 3.5


def _esophagus_beside(geo) -> np.ndarray:
    """The oesophagus (3 mm steps) moved off the descending aorta where they would overlap: away
    from the aorta's centre across the body, so that it lies right of and, lower down, in front
    of it (it passes in front of the aorta to the hiatus)."""
    eso = resample_curve(geo.esophagus, 3.0)
    desc = geo.aorta_segment == 3
    a, r = geo.aorta[desc], geo.aorta_radius[desc]
    for k, p in enumerate(eso):
        i = int(np.argmin(np.abs(a[:, 2] - p[2])))
        if abs(a[i, 2] - p[2]) > 2.0:
            continue
        d = p[:2] - a[i, :2]
        need = r[i] + 2.0 + ESO_GAP + ESO_R
        n = float(np.linalg.norm(d))
        if n < need:
            eso[k, :2] = a[i, :2] + d / max(n, 1e-6) * need
    return eso


def build_v2_heart_and_aorta(geo) -> None:
    """Replace ``geo``'s heart, coronary arteries, aorta, arch branches and SVC by the realistic
    ones (in place), from a random stream of their own (``subject.seed``, 28)."""
    rng = np.random.default_rng([geo.subject.seed, 28])
    # two thirds of the heart left of the midline: the valve a little left of the first's
    geo.av_center = geo.av_center + np.array([8.0, 0.0, 0.0])
    a = geo.av_center
    # the root points up, right and forwards out of the left ventricle
    geo.av_normal = _unit(np.array([-0.45, -0.55, 1.0]) + rng.normal(0, 0.06, 3))
    # the pulmonary valve in front of, left of and above the aortic valve, the trunk from it
    trunk, r_pa = geo.pulmonary[0]
    pv = a + _unit([0.4, -1.0, 0.4]) * (geo.av_radius + 30.0)
    geo.pulmonary[0] = (resample_curve(np.array([pv, trunk[-1]]), 2.0), r_pa)
    heart = build_heart(geo, rng)
    _move(geo, heart, geo.av_center.copy(), HEART_GROWTH)  # (about the valve, which stays)
    heart.fit_scale = 1.0  # (the fit's own shrinking)
    _fit_heart(geo, heart, descending_plan(geo))
    geo.heart = heart
    geo.heart_center = heart_centroid(heart)  # (it centres heart-region fields of view)
    a = geo.av_center
    # the trunk from the valve up and back round the ascending aorta's left side to its
    # bifurcation under the arch, left of the first generator's
    pv = a + _unit([0.4, -1.0, 0.4]) * (geo.av_radius + 30.0)  # as before the fit
    rvot, r_rvot = heart.outflow["RVOT"]
    heart.outflow["RVOT"] = (
        resample_curve(np.array([rvot[0], rvot[len(rvot) // 2], pv]), 2.0),
        r_rvot,
    )
    bif = np.array([a[0] + 24.0, a[1] + 26.0, a[2] + 36.0])
    mid = np.array([pv[0] + 10.0, pv[1] + 4.0, pv[2] + 22.0])
    lpa, rpa = geo.pulmonary[1], geo.pulmonary[2]
    geo.pulmonary[:] = [
        (resample_curve(np.array([pv, mid, bif]), 2.0), r_pa),
        (resample_curve(np.array([bif, bif + [22, 8, 3], lpa[0][-1]]), 2.0), lpa[1]),
        (resample_curve(np.array([bif, bif + [-34, 2, -3], rpa[0][-1]]), 2.0), rpa[1]),
    ]
    mv_c = heart.orifices["MV"][0]
    # the mitral annulus keeps the first generator's radius (its calcium's bead count)
    geo.mv_center, geo.mv_normal = mv_c, heart.u.copy()
    geo.coronaries, geo.coronary_radius = build_coronaries(geo, heart, rng)
    aorta, radius, seg, (i_asc, i0, i1) = build_aorta(geo, rng)
    geo.aorta, geo.aorta_radius, geo.aorta_segment = aorta, radius, seg
    geo.esophagus = _esophagus_beside(geo)
    branches = []
    for k, dx in enumerate((-12.0, -2.0, 10.0)):
        p0 = aorta[i0 + (i1 - i0) * (k + 1) // 5]
        branches.append(
            resample_curve(np.array([p0, p0 + [dx * 0.7, 4, 30], p0 + [dx, 8, 120]]), 3.0)
        )
    geo.branches = branches
    ra = heart.chambers["RA"]
    top = ra.center + np.array([4.0, 2.0, 0.7 * ra.axes[2]])
    x_svc = min(top[0], float((aorta[: i0 + 1, 0] - radius[: i0 + 1]).min()) - 13.0)
    geo.svc = resample_curve(
        np.array([[x_svc - 4, top[1] - 2, a[2] + 175], [x_svc, top[1], a[2] + 30], top]), 2.0
    )
    log.debug("v2 heart: LAD %d, LCX %d, RCA %d mm", *(len(c) for c in geo.coronaries.values()))
