"""Painting the four-chamber heart of :mod:`calcscore.phantom.heart` into a volume (anatomy v2):
pericardium, epicardial fat, the grooves' fat round the coronary arteries, myocardium, blood
pools, outflow tracts and the mitral and tricuspid orifices."""

from __future__ import annotations

import numpy as np

from calcscore.phantom._draw import GridSpec, coverage, paint, tube
from calcscore.phantom.heart import AV_GAP_MM, GROOVE_FAT_MM, Heart, _bounds, _union
from calcscore.phantom.tissue import HU


def render_heart(hu: np.ndarray, geo, grid: GridSpec) -> None:
    """Paint the four-chamber heart of ``geo.heart`` into ``hu`` (in place): pericardium,
    epicardial fat, the grooves' fat round the coronary arteries, myocardium, blood pools,
    outflow tracts and the mitral and tricuspid orifices.

    Args:
        hu: the volume being drawn, in HU.
        geo: the subject's geometry, with its ``heart`` and ``coronaries``.
        grid: the volume's grid.
    """
    heart: Heart = geo.heart
    h = grid.aa_width_mm
    epi = geo.epicardial_fat_mm
    ch = list(heart.chambers.values())
    lo, hi = _bounds(heart, epi + 2.0 + h)
    box = grid.box(lo, hi)
    if box is None:
        return
    z, y, x = grid.coords(box)
    outer = [c.sd_outer(x, y, z) for c in ch]
    union = _union(outer)
    below = z > geo.z_diaphragm - 25
    paint(hu, box, coverage(union - (epi + 1.5), h) * below, HU["soft"] - 5)  # pericardium
    paint(hu, box, coverage(union - epi, h) * below, HU["fat"])
    for name, pts in geo.coronaries.items():  # the grooves' fat round each artery
        res = tube(grid, pts[::2], geo.coronary_radius[name][::2] + GROOVE_FAT_MM, margin_mm=h)
        if res is not None:
            paint(hu, res[0], coverage(res[1], h), HU["fat"], hu[res[0]] > -400)
    # the AV plane's fibrous core: soft tissue in the gap between atria and ventricles, except
    # within 4 mm (plus the epicardial fat) of the outside, where the groove's fat is
    lv = heart.chambers["LV"]
    in_gap = np.abs(lv._cut(x, y, z) - AV_GAP_MM / 2 - 0.5) < AV_GAP_MM / 2 + 1.5
    sd_v = np.minimum(ch[0].sd_ellipsoid(x, y, z), ch[1].sd_ellipsoid(x, y, z))
    sd_a = np.minimum(ch[2].sd_ellipsoid(x, y, z), ch[3].sd_ellipsoid(x, y, z))
    core = np.maximum(sd_v, sd_a) + epi + 4.0
    paint(hu, box, coverage(core, h) * in_gap, HU["myocardium"])
    for c, sd in zip(ch, outer):
        paint(hu, box, coverage(sd, h), HU["myocardium"] if c.name[1] == "V" else HU["soft"] + 8)
    for name, (pts, r) in heart.outflow.items():
        res = tube(grid, pts, r + (3.0 if name == "LVOT" else 2.5), margin_mm=h)
        if res is not None:
            paint(hu, res[0], coverage(res[1], h), HU["myocardium"])
    lv_out = outer[0]
    for c in ch:
        sd = c.sd_inner(x, y, z)
        if c.name == "RV":  # the septum: the RV's cavity ends at the LV's outer surface
            sd = np.maximum(sd, -lv_out)
        paint(hu, box, coverage(sd, h), HU["blood"])
    for pts, r in heart.outflow.values():
        res = tube(grid, pts, r, margin_mm=h)
        if res is not None:
            paint(hu, res[0], coverage(res[1], h), HU["blood"])
    for oc, r in heart.orifices.values():  # blood through the AV plane within each annulus
        disc = np.stack([oc - heart.u * (AV_GAP_MM + 2), oc + heart.u * (AV_GAP_MM + 2)])
        res = tube(grid, disc, r, margin_mm=h)
        if res is not None:
            paint(hu, res[0], coverage(res[1], h), HU["blood"])
    # the aortic root's and ascending aorta's wall (2 mm) between its blood and the atria's
    root = geo.aorta_segment <= 1
    res = tube(grid, geo.aorta[root][::2], geo.aorta_radius[root][::2] + 2.0, margin_mm=h)
    if res is not None:
        paint(hu, res[0], coverage(res[1], h), HU["myocardium"], hu[res[0]] > -400)
