"""The heart's extent along z in a chest CT, from the lungs alone (for :mod:`calcscore.regions`).

Everything here works on the coarse grid of :func:`calcscore.regions.block_mean` (blocks of
about 3 mm): ``lungs`` and their in-plane convex ``hull`` are boolean (z, y, x) masks on it,
``block_mm`` its block size in mm, and the slices returned are coarse slices.

- :func:`heart_top`: the heart is the widest thing between the lungs.
- :func:`below_carina`: the heart's top is never above the carina.
- :func:`heart_bottom`: the heart lies on the diaphragm, where the lungs (and their front half,
  beside the heart) widen from their bases; below lie the liver, the stomach and the spleen,
  inside the lungs' hull too.
"""

from __future__ import annotations

import numpy as np

from calcscore.airway import find_carina
from calcscore.constants import BODY_THRESHOLD_HU
from calcscore.volume import CTVolume

#: the carina lowers the heart's top (widest rows + margin) to no less than this above the rows
HEART_ABOVE_WIDEST_MM = 10.0


def _lung_bounded_width(lungs: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Per (z, y) row, the longest run of ``tissue`` along x with lung right before and after it
    (in blocks)."""
    t = np.pad(tissue, ((0, 0), (0, 0), (1, 1))).astype(np.int8)
    lp = np.pad(lungs, ((0, 0), (0, 0), (1, 1)))
    out = np.zeros(tissue.shape[:2], int)
    for z, y in zip(*np.nonzero(tissue.any(axis=2))):
        edges = np.flatnonzero(np.diff(t[z, y]))
        for a, b in zip(edges[::2], edges[1::2]):  # run [a, b) of the padded row, = [a - 1, b - 1)
            if lp[z, y, a] and lp[z, y, b + 1] and b - a > out[z, y]:
                out[z, y] = b - a
    return out


def heart_top(
    d: np.ndarray,
    lungs: np.ndarray,
    block_mm: np.ndarray,
    *,
    min_width_mm: float,
    min_rows_mm: float,
    margin_mm: float,
) -> int | None:
    """The coarse slice of the heart's top, + ``margin_mm``.

    Args:
        d: the block means in HU.
        lungs: the lungs on the same grid.
        block_mm: the block size in mm (z, y, x).
        min_width_mm, min_rows_mm: the heart's top is the highest slice with at least
            ``min_rows_mm`` of rows whose run of mediastinal tissue between the two lungs is
            ``min_width_mm`` wide or wider (the superior mediastinum is narrower).
        margin_mm: added above that slice.

    Returns:
        the coarse slice, or None where no slice qualifies.
    """
    tissue = (d >= BODY_THRESHOLD_HU) & (d < 200)  # not bone: the vertebrae lie between the lungs
    width = _lung_bounded_width(lungs, tissue) * block_mm[2]
    rows = (width >= min_width_mm).sum(axis=1) * block_mm[1]
    heart = np.flatnonzero(rows >= min_rows_mm)
    if not len(heart):
        return None
    return min(d.shape[0] - 1, int(heart.max()) + int(np.ceil(margin_mm / block_mm[0])))


def _widening(share: np.ndarray) -> int:
    """The first index where ``share`` reaches half its median."""
    return int(np.flatnonzero(share >= 0.5 * float(np.median(share)))[0])


def heart_bottom(
    lungs: np.ndarray, hull: np.ndarray, block_mm: np.ndarray, margin_mm: float | None
) -> int:
    """The lowest coarse slice the heart can reach: ``margin_mm`` below the lowest slice where
    the lungs fill at least half the median share of their hull's cross-section, and their
    front half (in front of the lungs' middle row) half its median share of the hull's front
    half: at the heart's level the lungs reach forward on both sides of it; around the liver
    and the stomach below it they are thin recesses at the sides and the back.

    Args:
        lungs: the lungs (coarse grid).
        hull: their in-plane convex hull.
        block_mm: the block size in mm (z, y, x).
        margin_mm: how far below the widening the heart may reach; None: no bound.

    Returns:
        the coarse slice; 0 (no bound) unless the scan shows whole lungs (at least 200 mm of
        them along z; not a heart-only scan, whose narrow field of view keeps the lungs' share
        small at the heart too) with bases around the upper abdomen: slices below whose lungs
        fill at most 15% of the hull, under lungs filling at least 45% (a whole chest).
    """
    zs = np.flatnonzero(hull.any(axis=(1, 2)))[1:]  # the hull's lowest slice is the lungs' tip
    if margin_mm is None or len(zs) * block_mm[0] < 200.0:
        return 0
    share = lungs[zs].sum(axis=(1, 2)) / hull[zs].sum(axis=(1, 2))
    k = _widening(share)
    if float(np.median(share)) < 0.45 or k == 0 or share[:k].min() > 0.15:
        return 0
    ys = np.flatnonzero(lungs.any(axis=(0, 2)))
    front = np.s_[: (ys[0] + ys[-1]) // 2]
    share = lungs[zs][:, front].sum(axis=(1, 2)) / np.maximum(
        1, hull[zs][:, front].sum(axis=(1, 2))
    )
    k = max(k, _widening(share))
    return max(0, int(zs[k]) - int(np.ceil(margin_mm / block_mm[0])))


def below_carina(
    volume: CTVolume,
    lungs: np.ndarray,
    f: np.ndarray,
    mid_x: float,
    top: int | None,
    margin_mm: float,
) -> int | None:
    """The heart's top ``top`` lowered to the carina's slice.

    Args:
        volume: the scan.
        lungs: its lungs on the coarse grid.
        f: the block size in voxels (z, y, x).
        mid_x: the coarse column between the lungs.
        top: :func:`heart_top` (the widest rows + ``margin_mm``).
        margin_mm: the margin of ``top``.

    Returns:
        ``top`` lowered to the carina's coarse slice where :func:`calcscore.airway.find_carina`
        finds it, but not below the widest rows + :data:`HEART_ABOVE_WIDEST_MM`.
    """
    if top is None:
        return None
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    lung_top = min(volume.shape[0] - 1, (int(zs[-1]) + 1) * int(f[0]) - 1)
    carina = find_carina(volume, lung_top, (mid_x + 0.5) * f[2])
    if carina is None:
        return top
    block_z = float(volume.spacing_mm[0]) * int(f[0])
    floor = top - int(np.ceil(margin_mm / block_z)) + int(np.ceil(HEART_ABOVE_WIDEST_MM / block_z))
    return min(top, max(carina // int(f[0]), floor))
