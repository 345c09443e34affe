"""The realistic ("v2") anatomy: the body, lungs, upper abdomen, neck, arms and breasts around
the four-chamber heart and great vessels (:mod:`calcscore.phantom.heart`,
:mod:`calcscore.phantom.aorta`), then the skeleton.

:func:`render_anatomy_v2` paints, slice by slice, a trunk whose outline follows z (abdomen,
chest, shoulders, neck) with skin, subcutaneous fat and muscle (more over the scapulae), the
thoracic cavity with the lungs, apices and diaphragm domes; below the diaphragm the liver (with
its left lobe across the midline), the stomach with air over fluid, the spleen, the upper poles
of the kidneys in perirenal fat and the colon's flexures with air; the breasts; then in 3D the
arms, the mediastinum, heart, vessels and airways of :func:`calcscore.phantom.anatomy.render_interior`,
the thyroid and the neck veins, and the bones of :mod:`calcscore.phantom.skeleton`.
"""

from __future__ import annotations

import logging

import numpy as np

from calcscore.phantom._draw import GridSpec, coverage, ellipsoid_sd, paint, tube
from calcscore.phantom.habitus import OUTLINE_P, Habitus, extra_muscle, outline
from calcscore.phantom.render import render_interior
from calcscore.phantom.skeleton import render_skeleton
from calcscore.phantom.tissue import HU, fat_thickness, muscle_thickness

log = logging.getLogger(__name__)

#: cavity wall: the rib and intercostal layer (mm) between the chest wall muscle and the lungs
RIB_LAYER_MM = 8.0
ABDOMEN_HU = {
    "liver": 58.0,
    "spleen": 46.0,
    "kidney": 32.0,
    "stomach_wall": 40.0,
    "fluid": 12.0,
    "bowel_fat": -75.0,
    "colon_wall": 35.0,
    "thyroid": 95.0,
    "gland": -5.0,
}


#: the diaphragm slopes down from front to back: this much higher 110 mm in front of the body's
#: centre, as much lower 110 mm behind it. The lungs' posterior recesses reach lowest: on the seven
#: open real chest CTs the lowest lung of the back third of the lungs lies 15-58 mm (median 20)
#: below that of the front third in six of them (generator 2026-12-05.3 without it: 16-36 mm above)
DIAPHRAGM_TILT_MM = 30.0


def _diaphragm_z(geo, x2, y2) -> np.ndarray:
    """z (mm) of the diaphragm's surface over (x, y): the right dome higher than the left, the
    front higher than the back (:data:`DIAPHRAGM_TILT_MM`)."""
    bx, by = geo.body_center
    dome_r = (x2 - (bx - 45)) ** 2 / 90**2 + (y2 - by) ** 2 / 110**2
    dome_l = (x2 - (bx + 55)) ** 2 / 85**2 + (y2 - by) ** 2 / 110**2
    zd = np.maximum(geo.z_diaphragm + 18 - 60 * dome_r, geo.z_diaphragm - 2 - 60 * dome_l)
    zd = zd + DIAPHRAGM_TILT_MM * np.clip((by - y2) / 110.0, -1.0, 1.0)
    return np.maximum(zd, geo.z_diaphragm - 80).astype(np.float32)


def render_anatomy_v2(geo, grid: GridSpec) -> np.ndarray:
    """Paint the realistic anatomy of ``geo`` (which has a habitus) on ``grid``: HU before blur
    and noise, float32 (z, y, x)."""
    hab: Habitus = geo.habitus
    hu = np.empty(grid.shape, np.float32)
    below = _render_body(hu, geo, hab, grid)
    _render_abdomen(hu, geo, hab, grid, below)
    del below
    _render_arms(hu, geo, hab, grid)
    s = geo.subject
    y_front = float(geo.body_center[1] - s.body_half_depth_mm)
    y_front += float(2 + fat_thickness(s, np.pi) + muscle_thickness(s, np.pi) + RIB_LAYER_MM)
    render_interior(hu, geo, grid, y_front, grooves=True)
    _render_neck(hu, geo, hab, grid)
    render_skeleton(hu, geo, hab, grid)
    log.debug("v2 anatomy rendered on %s", grid.shape)
    return hu


def _render_body(hu, geo, hab: Habitus, grid: GridSpec) -> np.ndarray:
    """Trunk, chest wall, lungs, apices, diaphragm and the abdominal base, breasts and the table,
    slice by slice; returns the (z, y, x) mask of the cavity below the diaphragm."""
    s = geo.subject
    h = grid.aa_width_mm
    z = grid.axis_mm(0)
    y2 = grid.axis_mm(1).astype(np.float32)[:, None]
    x2 = grid.axis_mm(2).astype(np.float32)[None, :]
    bx, by = geo.body_center
    zd = _diaphragm_z(geo, x2, y2)
    below = np.zeros(grid.shape, bool)
    w0 = s.body_half_width_mm
    apex_x = (bx - 0.42 * w0, bx + 0.42 * w0)
    apex_y = by + 0.15 * s.body_half_depth_mm
    d_apex = np.minimum(
        np.hypot(x2 - apex_x[0], y2 - apex_y), np.hypot(x2 - apex_x[1], y2 - apex_y)
    )
    # the liver fills the right and, in front, crosses the midline with its left lobe
    front = np.clip((by - 0.05 * s.body_half_depth_mm - y2) / 45.0, 0, 1)
    back = np.clip((y2 - (geo.spine_y0 - geo.vb_radii[1] - 30)) / 25.0, 0, 1)
    x_lim = bx + 12 + 70 * front - 22 * back
    cov_liver = coverage(x2 - x_lim, 6.0)
    abdo = ABDOMEN_HU["bowel_fat"] + cov_liver * (ABDOMEN_HU["liver"] - ABDOMEN_HU["bowel_fat"])
    abdo = abdo.astype(np.float32)
    table_y = by + s.body_half_depth_mm * 1.04 + 6.0
    p = np.float32(OUTLINE_P)
    polar: dict[float, tuple] = {}
    for k in range(grid.shape[0]):
        zk = float(z[k])
        cy, ax, ay, neck = outline(hab, geo, zk)
        key = round(cy, 3)
        if key not in polar:  # the polar maps change only where the trunk blends into the neck
            dx, dy = x2 - np.float32(bx), y2 - np.float32(cy)
            rho = np.sqrt(dx * dx + dy * dy) + np.float32(1e-6)
            theta = np.arctan2(dx, dy)
            polar = {
                key: (
                    rho,
                    np.abs(np.sin(theta)) ** p,
                    np.abs(np.cos(theta)) ** p,
                    fat_thickness(s, theta).astype(np.float32),
                    muscle_thickness(s, theta).astype(np.float32),
                    np.asarray(extra_muscle(hab, theta, None), dtype=np.float32),
                )
            }
        rho, sin_p, cos_p, fat0, mus0, ext0 = polar[key]
        r_out = (sin_p / np.float32(ax) ** p + cos_p / np.float32(ay) ** p) ** np.float32(-1 / p)
        depth = r_out - rho
        fat = fat0 * np.float32(1 - 0.45 * neck)
        band = float(extra_muscle(hab, None, zk))
        mus = (mus0 + ext0 * np.float32(band)) * np.float32(1 - 0.3 * neck)
        d_fat, d_mus = 2.0 + fat, 2.0 + fat + mus
        sl = hu[k]
        sl[:] = HU["air"]
        sl += coverage(-depth, h) * (HU["skin"] - sl)
        sl += coverage(2.0 - depth, h) * (HU["fat"] - sl)
        sl += coverage(d_fat - depth, h) * (HU["muscle"] - sl)
        if hab.breast_mm > 0:
            _breasts(sl, geo, hab, zk, x2, y2, depth, d_fat, h)
        # thoracic cavity inside the rib layer; it closes in the neck
        inside = coverage(d_mus + RIB_LAYER_MM - depth, h) * (1 - neck)
        lung = s.lung_hu + 70.0 * np.clip((y2 - (by - ay)) / (2 * ay), 0, 1) ** 2
        sl += inside * (lung - sl)
        # apices: above z_apex - 70 each lung narrows to a dome around its own apex
        if zk > geo.z_apex - 70:
            t = float(np.clip((zk - (geo.z_apex - 70)) / 70.0, 0, 1))
            r = 0.42 * w0 * np.sqrt(max(1 - t * t, 0.0))
            soft = (1 - coverage(d_apex - r, h)) * inside
            sl += soft * (HU["muscle"] - 10 - sl)
        if zk < float(zd.max()) + 3:
            cov = coverage(zk - zd, 2.0) * inside
            sl += cov * (abdo - sl)
            below[k] = cov > 0.5
        sl[(np.abs(y2 - table_y - 5) < 5) & (np.abs(x2 - bx) < 210)] = HU["table"]
        sl[(np.abs(y2 - table_y) < 1.2) & (np.abs(x2 - bx) < 210)] = 150.0
    return below


def _breasts(sl, geo, hab: Habitus, zk, x2, y2, depth, d_fat, h) -> None:
    """Fat and glandular tissue in front of the pectoral muscles, at the level of the heart."""
    s = geo.subject
    bx, by = geo.body_center
    zc = s.z_av_mm - 45.0
    rz = 55.0 + 0.4 * hab.breast_mm
    f = 1 - ((zk - zc) / rz) ** 2
    if f <= 0:
        return
    j1 = int(np.searchsorted(y2[:, 0], by - 0.3 * s.body_half_depth_mm))
    sl, y2, depth = sl[:j1], y2[:j1], depth[:j1]
    d_fat = d_fat[:j1] if np.ndim(d_fat) else d_fat
    ax, ay = s.body_half_width_mm, s.body_half_depth_mm
    for side in (-1.0, 1.0):
        cx = bx + side * 0.5 * ax
        # the front of the chest under the breast: the trunk's superellipse at x = cx
        front = by - ay * (1 - (0.5 * 0.95) ** OUTLINE_P) ** (1 / OUTLINE_P) + 12.0
        rx, ry = 85.0 * np.sqrt(f), (hab.breast_mm + 12.0) * np.sqrt(f)
        q = np.sqrt(((x2 - cx) / rx) ** 2 + ((y2 - front) / ry) ** 2)
        outer = coverage((q - 1) * ry, h) * (depth < d_fat)
        sl += outer * (HU["fat"] - sl)
        skin = (outer - coverage((q - 1) * ry + 2.0, h)).clip(0, 1) * (depth < 0)
        sl += skin * (HU["skin"] - sl)
        gland = coverage((q - 0.55) * ry, h) * (depth < d_fat) * (y2 < front - 0.2 * ry)
        sl += gland * (ABDOMEN_HU["gland"] - sl)


def _render_abdomen(hu, geo, hab: Habitus, grid: GridSpec, below: np.ndarray) -> None:
    """Stomach (air over fluid), spleen, kidneys in perirenal fat and colon flexures with air,
    painted only in the cavity below the diaphragm."""
    if not below.any():
        return
    s = geo.subject
    rng = np.random.default_rng([s.seed, 27])
    bx, by = geo.body_center
    w, d = s.body_half_width_mm, s.body_half_depth_mm
    h = grid.aa_width_mm
    zd_l = geo.z_diaphragm - 2
    sy = geo.spine_y0

    def blob(center, axes, value, where=None):
        c = np.asarray(center, dtype=float)
        box = grid.box(c - np.max(axes) - 2, c + np.max(axes) + 2)
        if box is None:
            return None
        sd = ellipsoid_sd(grid, box, c, axes)
        m = below[box] if where is None else below[box] & where(box)
        paint(hu, box, coverage(sd, h) * m, value)
        return box

    # stomach under the left dome: wall, fluid, and air above the fluid level
    st = np.array([bx + 0.42 * w, by - 0.12 * d, zd_l - 48])
    st_axes = np.array([40.0, 36.0, 46.0]) * rng.uniform(0.85, 1.15)
    blob(st, st_axes, ABDOMEN_HU["stomach_wall"])
    blob(st, st_axes - 4, ABDOMEN_HU["fluid"])
    z_level = st[2] + st_axes[2] * rng.uniform(-0.2, 0.5)
    blob(st, st_axes - 4, HU["air"], lambda b: grid.coords(b)[0] > z_level)
    # spleen: posterior and lateral on the left
    blob([bx + 0.68 * w, by + 0.42 * d, zd_l - 45], (22.0, 38.0, 50.0), ABDOMEN_HU["spleen"])
    # kidneys: upper poles beside the spine in perirenal fat, the right one lower
    for side, dz in ((-1.0, -22.0), (1.0, 0.0)):
        c = [geo.spine_x + side * 62, sy + 6, s.z_av_mm - 175 + dz]
        blob(c, (34.0, 32.0, 62.0), HU["fat"])
        blob(c, (26.0, 24.0, 55.0), ABDOMEN_HU["kidney"])
    # colon: the splenic flexure in front of the stomach, the hepatic flexure under the liver
    for pts in (
        [[bx + 0.55 * w, by - 0.55 * d, zd_l - 95], [bx + 0.72 * w, by - 0.1 * d, zd_l - 70]],
        [[bx - 0.55 * w, by - 0.5 * d, zd_l - 120], [bx - 0.3 * w, by - 0.62 * d, zd_l - 125]],
    ):
        p = np.asarray(pts, dtype=float)
        for r, val in ((22.0, ABDOMEN_HU["colon_wall"]), (19.0, HU["air"])):
            res = tube(grid, p, r, margin_mm=h)
            if res is not None:
                paint(hu, res[0], coverage(res[1], h), val, below[res[0]])


def _render_arms(hu, geo, hab: Habitus, grid: GridSpec) -> None:
    """Each arm: skin and fat round muscle, along its axis (the humerus is a bone)."""
    h = grid.aa_width_mm
    r = hab.arm_radius_mm
    fat = 4.0 + 0.35 * geo.subject.fat_mm
    for axis, head in zip(hab.arm_axes, hab.humeral_heads):
        pts = np.concatenate([head[None] + (head - axis[-1]) * 0.02, axis])
        for rad, val in ((r, HU["skin"]), (r - 2.0, HU["fat"]), (r - 2.0 - fat, HU["muscle"])):
            res = tube(grid, pts, rad, margin_mm=h)
            if res is not None:
                paint(hu, res[0], coverage(res[1], h), val, hu[res[0]] < -300 if rad == r else None)


def _render_neck(hu, geo, hab: Habitus, grid: GridSpec) -> None:
    """Thyroid lobes and isthmus beside and in front of the trachea, and the internal jugular
    veins beside the carotid arteries (from the first generator's branches)."""
    h = grid.aa_width_mm
    tr = geo.trachea[0]
    zc = hab.z_top + 28.0
    for side in (-1.0, 1.0):
        c = np.array([tr[0] + side * 19.0, tr[1] - 2.0, zc])
        box = grid.box(c - 26, c + 26)
        if box is not None:
            paint(
                hu,
                box,
                coverage(ellipsoid_sd(grid, box, c, (8.0, 11.0, 22.0)), h),
                ABDOMEN_HU["thyroid"],
            )
    c = np.array([tr[0], tr[1] - 13.0, zc - 8])
    box = grid.box(c - 16, c + 16)
    if box is not None:
        paint(
            hu,
            box,
            coverage(ellipsoid_sd(grid, box, c, (14.0, 4.0, 6.0)), h),
            ABDOMEN_HU["thyroid"],
        )
    for br in geo.branches[:1] + geo.branches[1:2]:
        top = br[-1]
        side = -1.0 if top[0] < geo.body_center[0] else 1.0
        vein = np.array([top + [side * 16, -6, -120 + 40], top + [side * 18, -8, 60]])
        res = tube(grid, vein, 8.0, margin_mm=h)
        if res is not None:
            paint(hu, res[0], coverage(res[1], h), HU["blood"])
