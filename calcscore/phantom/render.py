"""Painting a subject's tissues: the first generator's cartoon body ("v1") and the interior
that both anatomies share (mediastinum, heart, great vessels, airways, lung vessels, coronary
arteries). The realistic body is :mod:`calcscore.phantom.torso`."""

from __future__ import annotations

import logging

import numpy as np

from calcscore.phantom._draw import GridSpec, capsule, coverage, ellipsoid_sd, paint, tube
from calcscore.phantom.anatomy import (
    HU,
    Geometry,
    _sternum_y,
    _unit,
    atria,
    fat_thickness,
    muscle_thickness,
)

log = logging.getLogger(__name__)


def lung_vessel_tree(
    geo: Geometry, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Branching vessel segments (a, b, radius) from both hila into the lungs."""
    segs: list[tuple[np.ndarray, np.ndarray, float]] = []
    hila = [
        (geo.carina + np.array([52, 18, -40]), 1.0),
        (geo.carina + np.array([-46, 14, -30]), -1.0),
    ]
    for hilum, side in hila:
        stack: list[tuple[np.ndarray, np.ndarray, float, int]] = []
        for d0 in (
            [side, 0.1, 0.9],
            [side, 0.3, -0.9],
            [side, -0.6, -0.2],
            [side * 0.6, 0.8, -0.5],
            [side * 0.8, -0.3, 0.6],
            [side * 0.5, 0.6, 0.5],
        ):
            stack.append((hilum, _unit(d0), 4.5, 0))
        while stack:
            p, d, r, depth = stack.pop()
            length = float(rng.uniform(14, 26)) * (1.0 - 0.09 * depth)
            q = p + d * length
            segs.append((p, q, r))
            if r < 0.8 or depth >= 6:
                continue
            for sgn in (-1, 1):
                e = rng.normal(size=3)
                perp = _unit(
                    [
                        d[1] * e[2] - d[2] * e[1],
                        d[2] * e[0] - d[0] * e[2],
                        d[0] * e[1] - d[1] * e[0],
                    ]
                )
                nd = _unit(d + sgn * perp * rng.uniform(0.35, 0.7) + np.array([side * 0.15, 0, 0]))
                stack.append((q, nd, r * rng.uniform(0.7, 0.82), depth + 1))
    return segs


def _superellipse_depth(x, y, cx, cy, ax, ay, p: float = 2.6):
    """Radial depth (mm) below a superellipse surface (negative outside) and the polar angle."""
    dx, dy = x - cx, y - cy
    rho = np.sqrt(dx * dx + dy * dy) + 1e-6
    r = ((np.abs(dx) / ax) ** p + (np.abs(dy) / ay) ** p) ** (1.0 / p)
    depth = rho / np.maximum(r, 1e-6) - rho
    return depth.astype(np.float32), np.arctan2(dx, dy).astype(np.float32)


def render_anatomy_v1(geo: Geometry, grid: GridSpec) -> np.ndarray:
    """The first generator's cartoon anatomy on ``grid``: HU before blur and noise, (z, y, x)."""
    s = geo.subject
    nz, ny, nx = grid.shape
    z = grid.axis_mm(0).astype(np.float32)
    y2 = grid.axis_mm(1).astype(np.float32)[:, None]
    x2 = grid.axis_mm(2).astype(np.float32)[None, :]
    h = grid.aa_width_mm
    bx, by = geo.body_center
    a_x, a_y = s.body_half_width_mm, s.body_half_depth_mm

    # ---- 2D body layers, the same on every slice ----------------------------------------------
    depth, theta = _superellipse_depth(x2, y2, bx, by, a_x, a_y)
    fat = fat_thickness(s, theta)
    muscle = muscle_thickness(s, theta)
    d_skin, d_fat = 2.0, 2.0 + fat
    d_mus = d_fat + muscle
    d_rib = d_mus + 6.0
    base = np.full((ny, nx), HU["air"], np.float32)
    base += coverage(-depth, h) * (HU["skin"] - base)
    base += coverage(d_skin - depth, h) * (HU["fat"] - base)
    base += coverage(d_fat - depth, h) * (HU["muscle"] - base)
    # lung density rises towards the back (dependent lung)
    lung2d = s.lung_hu + 70.0 * np.clip((y2 - (by - a_y)) / (2 * a_y), 0, 1) ** 2
    cav = coverage(d_rib - depth, h)
    base += cav * (lung2d - base)
    # patient table under the back
    table_y = by + a_y + 6.0
    table = (np.abs(y2 - table_y - 5) < 5) & (np.abs(x2 - bx) < 210)
    base[table] = HU["table"]
    base[(np.abs(y2 - table_y) < 1.2) & (np.abs(x2 - bx) < 210)] = 150.0

    hu = np.empty(grid.shape, np.float32)
    hu[:] = base

    # ---- ribs, costal cartilage, intercostal muscle in the rib band ----------------------------
    band = (depth > d_mus - h) & (depth < d_rib + h)
    jj, ii = np.nonzero(band)
    if len(jj):
        th = theta[jj, ii]
        radial = np.clip((depth[jj, ii] - d_mus[jj, ii]) / 6.0, 0, 1)
        anterior = np.clip((-np.cos(th) - 0.72) / 0.2, 0, 1)  # costal cartilage near the front
        midline = np.abs(x2[0, ii] - bx) < 22
        offset = geo.rib_drop_mm * (1 - np.cos(th)) / 2
        zz = z[:, None]
        ph = np.mod(zz + offset[None, :] - geo.rib_z0, geo.rib_pitch_mm)
        rib_h = 11.0
        in_rib = (
            (ph < rib_h) & ~midline[None, :] & (zz < geo.z_apex + 10) & (zz > geo.z_diaphragm - 60)
        )
        edge = (ph < 1.6) | (ph > rib_h - 1.6) | (radial[None, :] < 0.2) | (radial[None, :] > 0.8)
        bone = np.where(edge, HU["cortical"] * 0.8, s.cancellous_hu + 40)
        val = np.where(anterior[None, :] > 0.5, HU["cartilage"], bone)
        val = np.where(in_rib, val, HU["muscle"]).astype(np.float32)
        hu[:, jj, ii] = val

    # ---- lung apex, diaphragm and upper abdomen ----------------------------------------------
    cav_depth = depth - d_rib  # > 0 inside the thoracic cavity
    inside = cav_depth > -h
    dome_r = (x2 - (bx - 45)) ** 2 / 90**2 + (y2 - by) ** 2 / 110**2
    dome_l = (x2 - (bx + 55)) ** 2 / 85**2 + (y2 - by) ** 2 / 110**2
    zd = np.maximum(geo.z_diaphragm + 18 - 60 * dome_r, geo.z_diaphragm - 2 - 60 * dome_l)
    zd = np.maximum(zd, geo.z_diaphragm - 80).astype(np.float32)
    liver = x2 < bx + 20 + 0 * y2
    abdo = np.where(liver, HU["liver"], HU["spleen"]).astype(np.float32)
    k0 = int(np.searchsorted(z, float(zd.max()) + 3))
    for k in range(min(k0, nz)):
        below = coverage(z[k] - zd, 2.0) * inside
        sl = hu[k]
        sl += below * (abdo - sl)
    # apices: above z_apex - 70 each lung narrows to a dome around its own apex
    apex_x = (bx - 0.42 * a_x, bx + 0.42 * a_x)
    apex_y = by + 0.15 * a_y
    r0 = 0.42 * a_x
    d_apex = np.minimum(
        np.hypot(x2 - apex_x[0], y2 - apex_y), np.hypot(x2 - apex_x[1], y2 - apex_y)
    )
    for k in range(np.searchsorted(z, geo.z_apex - 70), nz):
        t = float(np.clip((z[k] - (geo.z_apex - 70)) / 70.0, 0, 1))
        r = r0 * np.sqrt(max(1 - t * t, 0.0))
        soft = (1 - coverage(d_apex - r, h)) * inside
        sl = hu[k]
        sl += soft * (HU["muscle"] - 10 - sl)

    render_interior(hu, geo, grid, float(by - a_y + d_rib.min()))

    # ---- spine: vertebral bodies, discs, posterior elements ----------------------------------
    rx, ry = geo.vb_radii
    sy = geo.spine_y(z).astype(np.float32)
    box = grid.box(
        (geo.spine_x - 60, float(sy.min()) - ry - 25, z[0] - 1),
        (geo.spine_x + 60, float(sy.max()) + 75, z[-1] + 1),
    )
    if box is not None:
        zb, yb, xb = grid.coords(box)
        syb = sy[box[0]][:, None, None]
        dx = xb - geo.spine_x
        dy = yb - syb
        level = np.mod(zb - geo.rib_z0 + 3.0, 26.0)
        is_disc = level > 21.0
        endplate = (level < 1.5) | ((level > 19.5) & ~is_disc)
        qb = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2)
        sd_body = (qb - 1) * min(rx, ry)
        # paravertebral soft tissue around the body
        paint(hu, box, coverage(sd_body - 7, h), HU["soft"] - 15)
        body_val = np.where(
            is_disc,
            HU["disc"],
            np.where(endplate | (qb > 0.86), HU["cortical"] * 0.75, s.cancellous_hu),
        )
        paint(hu, box, coverage(sd_body, h), body_val.astype(np.float32))
        # neural arch: ring around the canal, spinous and transverse processes
        canal_y = syb + ry + 10
        rc = np.sqrt(dx**2 + (yb - canal_y) ** 2)
        arch = (rc < 15) & (rc > 8.5)
        spinous = (np.abs(dx) < 4 + 0 * yb) & (yb > canal_y + 8) & (yb < canal_y + 42)
        # transverse processes point back and out, about 30 degrees behind the frontal plane
        ca, sa = np.float32(np.cos(0.5)), np.float32(np.sin(0.5))
        along = np.abs(dx) * ca + (yb - canal_y + 2) * sa
        across = -np.abs(dx) * sa + (yb - canal_y + 2) * ca
        transverse = (along > 6) & (along < 36) & (np.abs(across) < 4.5)
        elems = (arch | spinous | transverse) & ~is_disc
        sub = hu[box]
        sub[elems] = s.cancellous_hu + 120
        sub[(rc <= 8.5) & (np.abs(dx) < 8.6)] = HU["csf"]

    # ---- scapulae: thin bony plates in the back muscles of the upper chest ------------------
    k0, k1 = int(np.searchsorted(z, s.z_av_mm - 10)), int(np.searchsorted(z, s.z_av_mm + 200))
    th_abs = np.abs(theta)
    in_layer = (depth > d_fat + 4) & (depth < d_fat + 8)
    for k in range(k0, min(k1, nz)):
        up = float(np.clip((z[k] - s.z_av_mm + 10) / 160.0, 0, 1))
        plate = in_layer & (th_abs > 0.5 + 0.25 * (1 - up)) & (th_abs < 0.85 + 0.45 * up)
        hu[k][plate] = s.cancellous_hu + 200

    # ---- sternum --------------------------------------------------------------------------------
    ys = _sternum_y(s)
    box = grid.box(
        (bx - 30, ys - 12, geo.z_ster_bottom - 2), (bx + 30, ys + 12, geo.z_ster_top + 2)
    )
    if box is not None:
        zb, yb, xb = grid.coords(box)
        wid = np.where(zb > geo.z_ster_top - 45, 24.0, 14.0).astype(np.float32)
        q = np.sqrt(((xb - bx) / wid) ** 2 + ((yb - ys) / 7.0) ** 2)
        sd = (q - 1) * 7.0
        val = np.where(q > 0.7, HU["cortical"] * 0.7, s.cancellous_hu).astype(np.float32)
        paint(hu, box, coverage(sd, h), val)
    log.debug("anatomy rendered on %s", grid.shape)
    return hu


def render_interior(
    hu: np.ndarray, geo: Geometry, grid: GridSpec, y_front: float, *, grooves: bool = False
) -> None:
    """Paint the mediastinum, the heart, the great vessels, the airways, the lung vessels and the
    coronary arteries into ``hu`` (in place); ``y_front`` is the inner front of the chest wall.
    ``grooves`` lays each coronary artery in a groove of epicardial fat cut into the heart.

    Args:
        hu: (z, y, x) HU on ``grid``, the body already painted, changed in place.
        geo: the subject's geometry.
        grid: the grid of ``hu``.
        y_front: y (mm) of the inner front of the chest wall.
        grooves: lay the coronary arteries in grooves of fat (the realistic anatomy).
    """
    s = geo.subject
    z = grid.axis_mm(0).astype(np.float32)
    h = grid.aa_width_mm
    bx = geo.body_center[0]
    # ---- mediastinum: a central band of fat between the lungs, from sternum to spine ---------
    zc = z[:, None, None]
    y_back = float(geo.spine_y0)
    med_cy = (y_front + y_back) / 2
    med_hy = (y_back - y_front) / 2 + 8
    # below the heart's centre only the posterior mediastinum (aorta, oesophagus) goes on
    f_low = np.clip(
        (geo.heart_center[2] - zc) / max(geo.heart_center[2] - geo.z_diaphragm, 1.0), 0, 1
    )
    med_w = (np.where(zc > geo.carina[2] - 10, 24.0, 30.0) - 14.0 * f_low).astype(np.float32)
    cy_z = (med_cy + f_low * (y_back - 22 - med_cy)).astype(np.float32)
    hy_z = (med_hy * (1 - 0.65 * f_low)).astype(np.float32)
    box = grid.box((bx - 60, y_front - 10, z[0] - 1), (bx + 60, y_back + 40, z[-1] + 1))
    if box is not None:
        zb, yb, xb = grid.coords(box)
        w_b = med_w[box[0]]
        q = ((xb - (bx + 4)) / w_b) ** 2 + ((yb - cy_z[box[0]]) / hy_z[box[0]]) ** 2
        sd = (np.sqrt(q) - 1) * w_b
        paint(hu, box, coverage(sd, h) * (zb > geo.z_diaphragm - 5), HU["fat"] + 15)

    # ---- heart: pericardial sac (fat), pericardium, myocardium, blood pool -------------------
    if geo.heart is not None:  # the realistic anatomy's four chambers
        from calcscore.phantom.heart_render import render_heart

        render_heart(hu, geo, grid)
    else:
        _render_heart_v1(hu, geo, grid)

    # ---- great vessels --------------------------------------------------------------------------
    def draw_tube(
        points, radius, value, *, step: int = 1, rim: float = 0.0, only_lung: bool = False
    ):
        pts = points[::step] if step > 1 else points
        rad = np.asarray(radius)[::step] if np.ndim(radius) and step > 1 else radius
        if rim > 0:  # a fat sleeve where the vessel runs through lung or fat, not through the heart
            res = tube(grid, pts, np.asarray(rad) + rim, margin_mm=h)
            if res is not None:
                paint(hu, res[0], coverage(res[1], h), HU["fat"], hu[res[0]] < 0)
        res = tube(grid, pts, rad, margin_mm=h)
        if res is not None:
            b, sd = res
            where = (hu[b] < -400) if only_lung else None
            paint(hu, b, coverage(sd, h), value, where)

    for pts, r in geo.pulmonary:
        draw_tube(pts, r, HU["blood"], rim=2.0)
    draw_tube(geo.svc, 9.0, HU["blood"], rim=1.5)
    for br in geo.branches:
        draw_tube(br, 5.5 * s.aorta_scale, HU["blood"], rim=1.5)
    draw_tube(geo.aorta, geo.aorta_radius, HU["blood"], step=3, rim=3.0)
    draw_tube(geo.esophagus, 7.5, HU["muscle"] - 10)
    draw_tube(geo.trachea, 10.5, HU["soft"] + 20, rim=2.5)
    draw_tube(geo.trachea, 8.5, HU["air"])
    for br in geo.bronchi:
        draw_tube(br, 7.5, HU["soft"] + 20)
        draw_tube(br, 5.8, HU["air"])

    # ---- lung vessels (only inside the lungs) ---------------------------------------------------
    for a, b, r in geo.lung_vessels:
        res = capsule(grid, a, b, r, margin_mm=h)
        if res is not None:
            bb, sd = res
            paint(hu, bb, coverage(sd, h), HU["blood"], hu[bb] < -400)

    # ---- coronary arteries in the epicardial fat -------------------------------------------
    for name, pts in geo.coronaries.items():
        r_cor = geo.coronary_radius[name]
        if (
            grooves and geo.heart is None
        ):  # the atrioventricular and interventricular grooves: fat round the artery
            res = tube(grid, pts[::2], np.asarray(r_cor)[::2] + 3.5, margin_mm=h)
            if res is not None:
                paint(hu, res[0], coverage(res[1], h), HU["fat"], hu[res[0]] > -400)
        draw_tube(pts, r_cor, HU["blood"] + 8, step=2, rim=2.5)


def _render_heart_v1(hu: np.ndarray, geo: Geometry, grid: GridSpec) -> None:
    """The first generator's heart: ventricles as one ellipsoid, two atria, in epicardial fat."""
    h = grid.aa_width_mm
    # ventricles: a prolate ellipsoid along u; atria: the left behind the mitral valve, in front
    # of the oesophagus, the right on the right of the aortic root
    L, B = geo.heart_axes
    u = geo.heart_u
    rot = np.stack([u, geo.heart_v, geo.heart_w], axis=1)
    epi = geo.epicardial_fat_mm
    parts = [(geo.heart_center, np.array([L, B, B]), rot)] + [
        (c_, ax_, None) for c_, ax_ in atria(geo)
    ]
    boxes = []
    for c, axes, _ in parts:
        reach = float(axes.max()) + epi + 6
        boxes.append(grid.box(c - reach, c + reach))
    for extra, value in ((epi + 1.5, HU["soft"] - 5), (epi, HU["fat"])):  # pericardium, fat
        for (c, axes, frame), box in zip(parts, boxes):
            if box is None:
                continue
            zb = grid.coords(box)[0]
            sd = ellipsoid_sd(grid, box, c, axes + extra, frame)
            paint(hu, box, coverage(sd, h) * (zb > geo.z_diaphragm - 25), value)
    for (c, axes, frame), box in zip(parts[1:], boxes[1:]):
        if box is not None:
            paint(hu, box, coverage(ellipsoid_sd(grid, box, c, axes, frame), h), HU["blood"])
    box = boxes[0]
    c = geo.heart_center
    if box is not None:
        sd_myo = ellipsoid_sd(grid, box, c, (L, B, B), rot)
        paint(hu, box, coverage(sd_myo, h), HU["myocardium"])
        sd_blood = ellipsoid_sd(grid, box, c - u * 0.1 * L, (0.8 * L, 0.74 * B, 0.74 * B), rot)
        paint(hu, box, coverage(sd_blood, h), HU["blood"])
