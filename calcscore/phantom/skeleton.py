"""Bones and cartilage of the realistic ("v2") anatomy, painted on a working grid.

Every bone has a cortex and a marrow: ribs, costal cartilages and clavicles are tubes of
elliptical cross-section along the curves of :class:`~calcscore.phantom.habitus.Habitus`; the
vertebrae have bodies, discs and posterior elements (pedicles, laminae, spinous, transverse and
articular processes) with the spinal canal; the sternum is a manubrium, a body and a xiphoid
process; each scapula is a thin blade behind the posterolateral ribs with its glenoid, spine,
acromion and coracoid process; the humeri have a head of cancellous bone and a shaft of cortex
round fatty marrow. None of it is labelled: bright bone is background.
"""

from __future__ import annotations

import numpy as np

from calcscore.phantom._draw import (
    GridSpec,
    capsule,
    coverage,
    ellipsoid_sd,
    flat_tube,
    paint,
    tube,
)
from calcscore.phantom.habitus import (
    VERT_PITCH_MM,
    Habitus,
    chest_wall_inset,
    extra_muscle,
    outline,
    radius_at,
    sternum_half_width,
    sternum_y,
)

#: HU of cortical bone as painted (the working grid and the kernel blur it further)
CORTEX_HU = 900.0
CORTEX_MM = 1.3
CSF_HU, CORD_HU = 10.0, 32.0
FATTY_MARROW_HU = -30.0


def _paint_bone(hu, box, sd_outer, h, cortex_hu, marrow_hu, cortex_mm=CORTEX_MM) -> None:
    """Cortex over the whole bone, then the marrow inside ``cortex_mm`` from its surface."""
    paint(hu, box, coverage(sd_outer, h), cortex_hu)
    paint(hu, box, coverage(sd_outer + cortex_mm, h), marrow_hu)


def _paint_flat(hu, grid, bone, h, cortex_hu, marrow_hu, cortex_mm=CORTEX_MM) -> None:
    res = flat_tube(grid, bone.points, bone.normals, bone.r_normal, bone.r_binormal, margin_mm=h)
    if res is None:
        return
    box, q, r_mean = res
    rmin = float(min(np.min(bone.r_normal), np.min(bone.r_binormal)))
    paint(hu, box, coverage((q - 1.0) * rmin, h), cortex_hu)
    if marrow_hu is not None:
        f = max(1.0 - cortex_mm / rmin, 0.2)
        paint(hu, box, coverage((q - f) * rmin, h), marrow_hu)


def _paint_capsule(hu, grid, a, b, r, h, cortex_hu, marrow_hu) -> None:
    res = capsule(grid, a, b, r, margin_mm=h)
    if res is not None:
        _paint_bone(hu, res[0], res[1], h, cortex_hu, marrow_hu)


def render_skeleton(hu: np.ndarray, geo, hab: Habitus, grid: GridSpec) -> None:
    """Paint the bones and cartilage of the chest into ``hu`` (in place).

    Args:
        hu: (z, y, x) HU on ``grid``, changed in place.
        geo: the subject's geometry (spine, sternum levels).
        hab: the habitus: the curves of the ribs, cartilages and clavicles, the scapulae and
            humeri, marrow and cartilage HU.
        grid: the grid of ``hu``.
    """
    h = grid.aa_width_mm
    _render_spine(hu, geo, hab, grid)
    for rib in hab.ribs:
        _paint_flat(hu, grid, rib, h, CORTEX_HU, hab.marrow_hu - 20)
    for cart in hab.cartilages:  # soft-tissue density; its calcifications are confounders
        _paint_flat(hu, grid, cart, h, hab.cartilage_hu, None)
    _render_sternum(hu, geo, hab, grid)
    _render_scapulae(hu, geo, hab, grid)
    for clav in hab.clavicles:
        _paint_flat(hu, grid, clav, h, CORTEX_HU, hab.marrow_hu - 30, cortex_mm=1.8)
    _render_humeri(hu, hab, grid)


def _render_spine(hu, geo, hab: Habitus, grid: GridSpec) -> None:
    """Vertebral bodies (thin cortex, cancellous bone, endplates), discs, canal and cord, and
    the posterior elements of every vertebra in the grid."""
    h = grid.aa_width_mm
    z = grid.axis_mm(0)
    rx0, ry0 = geo.vb_radii
    sx = geo.spine_x
    marrow = hab.marrow_hu
    # the canal and the cord, one tube along the spine
    zs = np.arange(float(z.min()) - 30, float(z.max()) + 30, 6.0)
    canal = np.stack([np.full_like(zs, sx), geo.spine_y(zs) + ry0 + 9.0, zs], axis=1)
    k_lo = int(np.floor((float(z.min()) - 40 - hab.vert_z0) / VERT_PITCH_MM))
    k_hi = int(np.ceil((float(z.max()) + 40 - hab.vert_z0) / VERT_PITCH_MM))
    for k in range(k_lo, k_hi + 1):
        name, lo, hi = hab.vertebra(k)
        scale = 0.62 if name[0] == "C" else 1.12 if name[0] == "L" else 1.0
        rx, ry = rx0 * scale, ry0 * scale
        zc = 0.5 * (lo + hi)
        sy = float(geo.spine_y(zc))
        c = np.array([sx, sy, zc])
        # the disc above the body, then the body as a short elliptic cylinder
        box = grid.box(c - [rx + 3, ry + 3, 11], c + [rx + 3, ry + 3, VERT_PITCH_MM - 8])
        if box is not None:
            zb, yb, xb = grid.coords(box)
            qb = np.sqrt(((xb - sx) / rx) ** 2 + ((yb - sy) / ry) ** 2)
            sd_r = (qb - 1) * min(rx, ry)
            in_disc = (zb > hi) & (zb < hi + 5.0)
            paint(hu, box, coverage(sd_r, h) * in_disc, 85.0)
            sd_z = np.maximum(lo - zb, zb - hi)
            sd = np.maximum(sd_r, sd_z)
            _paint_bone(hu, box, sd, h, CORTEX_HU * 0.85, marrow, cortex_mm=1.1)
        yc = sy + ry + 9.0  # canal centre
        lam = yc + 9.0
        s = 1.0 if name[0] != "C" else 0.7
        elems = []
        for side in (-1.0, 1.0):
            elems += [
                ((sx + side * 0.5 * rx, sy + 0.8 * ry, zc + 3), (sx + side * 9.5, yc, zc + 3), 4.2),
                ((sx + side * 9.5, yc + 1, zc + 2), (sx + side * 2, lam, zc + 1), 3.6),
                ((sx + side * 11, yc + 3, zc - 7), (sx + side * 11, yc + 4, zc + 13), 4.0),
            ]
            if name[0] == "L":
                tp = (sx + side * (rx + 30), yc - 4, zc + 2)
            else:
                tp = (sx + side * (rx + 22) * s, yc + 9 * s, zc + 5)
            elems.append(((sx + side * 9, yc + 2, zc + 3), tp, 4.5 * s))
        spin_len = 15.0 if name[0] == "C" else 22.0
        spin_dz = 0.7 if name[0] == "T" else 0.15
        elems.append(
            ((sx, lam, zc + 1), (sx, lam + spin_len, zc + 1 - spin_dz * spin_len), 3.0 * s)
        )
        for a, b, r in elems:
            _paint_capsule(hu, grid, a, b, r, h, CORTEX_HU * 0.8, marrow + 40)
    for r, val in ((8.0, CSF_HU), (5.0, CORD_HU)):
        t = tube(grid, canal, r, margin_mm=h)
        if t is not None:
            paint(hu, t[0], coverage(t[1], h), val)


def _render_sternum(hu, geo, hab: Habitus, grid: GridSpec) -> None:
    """Manubrium, body and xiphoid: a curved plate with cortex and marrow, the sternal angle and
    the xiphoid partly cartilage."""
    h = grid.aa_width_mm
    bx = geo.body_center[0]
    ys = float(sternum_y(hab, geo, hab.z_top))
    box = grid.box((bx - 32, ys - 30, hab.z_bottom - 2), (bx + 32, ys + 30, hab.z_top + 2))
    if box is None:
        return
    zb, yb, xb = grid.coords(box)
    zc = zb[:, 0, 0]
    yc = sternum_y(hab, geo, zc).astype(np.float32)[:, None, None]
    wid = sternum_half_width(hab, zc).astype(np.float32)[:, None, None]
    thick = np.where(zc > hab.z_angle, 7.5, np.where(zc > hab.z_xiphoid, 5.5, 3.0))
    thick = thick.astype(np.float32)[:, None, None]
    p = 3.0
    q = (np.abs((xb - bx) / wid) ** p + np.abs((yb - yc) / thick) ** p) ** (1 / p)
    sd = np.maximum((q - 1) * thick, np.maximum(hab.z_bottom - zb, zb - hab.z_top))
    _paint_bone(hu, box, sd, h, CORTEX_HU * 0.9, hab.marrow_hu - 10, cortex_mm=1.2)
    joint = (np.abs(zb - hab.z_angle) < 1.5) | (zb < hab.z_xiphoid - 12)
    paint(hu, box, coverage(sd + 1.2, h) * joint, hab.cartilage_hu)


def _render_scapulae(hu, geo, hab: Habitus, grid: GridSpec) -> None:
    """A thin blade behind the posterolateral ribs, thicker at its lateral border and spine;
    the glenoid, the acromion and the coracoid at the top."""
    h = grid.aa_width_mm
    sc = hab.scapula
    z = grid.axis_mm(0)
    bx, by = geo.body_center
    s = geo.subject
    box = grid.box(
        (bx - 2 * s.body_half_width_mm, by - 0.2 * s.body_half_depth_mm, sc["z_bottom"]),
        (bx + 2 * s.body_half_width_mm, by + 1.2 * s.body_half_depth_mm, sc["z_top"]),
    )
    if box is None:
        return
    y = grid.axis_mm(1)[box[1]].astype(np.float32)[:, None]
    x = grid.axis_mm(2)[box[2]].astype(np.float32)[None, :]
    cache: dict[float, tuple] = {}
    for k in range(box[0].start, box[0].stop):
        zk = float(z[k])
        cy, ax, ay, _ = outline(hab, geo, zk)
        if round(cy, 3) not in cache:
            dx, dy = x - np.float32(bx), y - np.float32(cy)
            ath = np.abs(np.arctan2(dx, dy))
            inset0 = chest_wall_inset(hab, geo, ath, None) - 16.0 * np.exp(
                -(((ath - 1.0) / 0.5) ** 2)
            )
            cache = {round(cy, 3): (np.sqrt(dx * dx + dy * dy), ath, inset0.astype(np.float32))}
        rho, ath, inset0 = cache[round(cy, 3)]
        f = (zk - sc["z_bottom"]) / (sc["z_top"] - sc["z_bottom"])  # 0 inferior angle, 1 top
        rot = sc["rotation"] * (1 - f)  # raised arms swing the inferior angle outwards
        t_med = sc["theta_medial"] + rot
        t_lat = t_med + (sc["theta_lateral"] - t_med) * min(f / 0.55, 1.0) ** 0.7
        if t_lat - t_med < 0.02:
            continue
        inset = inset0 + extra_muscle(hab, ath, zk)
        rho_s = radius_at(ax, ay, ath) - (0.62 * inset + 2.0)
        border = np.clip((ath - (t_lat - 0.12)) / 0.12, 0, 1)  # the thick lateral border
        half = 1.3 + 2.8 * border + 4.5 * np.clip((f - 0.8) / 0.2, 0, 1)
        sd = np.maximum(np.abs(rho - rho_s) - half, (np.maximum(t_med - ath, ath - t_lat)) * rho)
        cov = coverage(sd, h)
        sl = hu[k, box[1], box[2]]
        sl += cov * (np.float32(CORTEX_HU) - sl)
        inner = coverage(sd + 1.3, h) * (half > 2.5)
        sl += inner * (np.float32(hab.marrow_hu) - sl)
    for head, side in zip(hab.humeral_heads, (-1.0, 1.0)):
        glen = head + np.array([-side * 27.0, 2.0, 0.0])
        box = grid.box(glen - 20, glen + 20)
        if box is not None:
            sd = ellipsoid_sd(grid, box, glen, (9.0, 14.0, 17.0))
            _paint_bone(hu, box, sd, h, CORTEX_HU, hab.marrow_hu)
        acro = head + np.array([-side * 6.0, 14.0, 24.0])
        _paint_capsule(hu, grid, glen + [0, 10, 16], acro, 5.0, h, CORTEX_HU, hab.marrow_hu)
        cor = glen + np.array([side * 4.0, -34.0, 8.0])
        _paint_capsule(hu, grid, glen + [0, -8, 8], cor, 5.0, h, CORTEX_HU, hab.marrow_hu)


def _render_humeri(hu, hab: Habitus, grid: GridSpec) -> None:
    """Humeral heads (cancellous bone in a thin cortex) and shafts (thick cortex, fatty marrow)."""
    h = grid.aa_width_mm
    for head, axis in zip(hab.humeral_heads, hab.arm_axes):
        box = grid.box(head - 26, head + 26)
        if box is not None:
            sd = ellipsoid_sd(grid, box, head, (23.0, 23.0, 24.0))
            _paint_bone(hu, box, sd, h, CORTEX_HU * 0.8, hab.marrow_hu - 20)
        d = axis[-1] - axis[0]
        d = d / np.linalg.norm(d)
        shaft = np.stack([head + d * 18.0, head + d * 360.0])
        res = tube(grid, shaft, 11.0, margin_mm=h)
        if res is not None:
            _paint_bone(hu, res[0], res[1], h, CORTEX_HU * 1.1, FATTY_MARROW_HU, cortex_mm=3.5)
