"""The blood pool of a chest CT, for the contrast check of :mod:`calcscore.checks`.

How the blood pool is found: the scan is averaged in blocks of about 3 mm and smoothed with a
3 x 3 x 3 mean. The voxels between 150 and 700 HU are eroded by two blocks (about 6 mm, which cuts
the descending aorta from most of the vertebrae it lies on) and split into connected cores. In
each core, the largest connected part within 40 HU of the core's most common value is a blood
pool when it holds at least 25 cm^3, is at least 12 cm^2 wide in one slice and under 15 % of its
blocks hold cortical bone (a voxel above 800 HU). Bone marrow (sternum, vertebral bodies) reads
150-330 HU too and a chain of vertebral bodies can be as homogeneous (up to 71 cm^3 on the
phantoms), but it is narrow: at most 8 cm^2 per slice after the erosion, where the heart's
chambers give 17-40 cm^2 (enhanced blood pools on the phantoms: 51-253 cm^3). Any blood pool
makes the scan contrast-enhanced (non-contrast blood reads 30-60 HU).

For the blood pool of an unenhanced region, the slices where a row holds a run of at least 80 mm
of mediastinal tissue with lung right and left of it, over 30 mm of rows, are taken (over 20 mm
of slices); the median of the soft tissue in those runs is the reported blood pool HU: 150 HU or
more is a contrast-enhanced heart too, 90-150 HU gives a warning (possibly a late contrast
phase).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.volume import CTVolume

#: A blood pool whose median is at least this is contrast-enhanced (refused).
CONTRAST_BLOOD_POOL_HU = 150.0
#: The smallest contrast-enhanced blood pool: connected, within 40 HU of one value (cm^3).
MIN_POOL_CM3 = 25.0
#: ... and at least this wide in one axial slice, after a 6 mm erosion (cm^2).
MIN_POOL_AREA_CM2 = 12.0
_EROSION_BLOCKS = 2
_BLOCK_MM = 3.0
_BONE_HU = 800.0  # a block holding a voxel above this holds cortical bone
_MAX_BONE_FRACTION = 0.15  # of a blood pool's blocks
_POOL_BAND_HU = 40.0


def _block_mean(
    hu: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Average in blocks of about 3 mm; returns the block means and the block size (voxels)."""
    f = np.array([max(1, int(round(_BLOCK_MM / s))) for s in spacing_mm])
    n = (np.array(hu.shape) // f) * f
    a = np.clip(hu[: n[0], : n[1], : n[2]], -1024.0, 3000.0, dtype=np.float32)
    a = a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).mean(axis=(1, 3, 5))
    return a, f


def _block_max(hu: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = (np.array(hu.shape) // f) * f
    a = hu[: n[0], : n[1], : n[2]]
    return a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).max(axis=(1, 3, 5))


def find_blood_pool(volume: CTVolume) -> dict:
    """Find a contrast-enhanced blood pool, and the heart, in a block-averaged scan.

    Returns a dict: ``contrast`` (a blood pool or the heart is enhanced), ``blood_pool_hu``
    (``nan`` when none was found), ``heart_found``, ``regions`` (the eight largest candidate
    pools, each measured) and ``heart_slices`` (blocks along z).
    """
    d, f = _block_mean(volume.hu, volume.spacing_mm)
    if min(d.shape) < 3:
        return _result(False, float("nan"), False, [], 0)
    block_mm = np.asarray(volume.spacing_mm) * f
    smooth = ndimage.uniform_filter(d, 3, mode="nearest")
    bone = _block_max(volume.hu, f) > _BONE_HU
    regions = _candidate_pools(smooth, bone, block_mm)
    pools = [
        r
        for r in regions
        if r["pool_cm3"] >= MIN_POOL_CM3
        and r["max_area_cm2"] >= MIN_POOL_AREA_CM2
        and r["bone_fraction"] < _MAX_BONE_FRACTION
    ]
    contrast = bool(pools)
    blood_pool_hu = float(pools[0]["median_hu"]) if pools else float("nan")
    heart_slices, soft_tissue = _heart_slices(smooth, block_mm)
    heart_found = bool(heart_slices * block_mm[0] >= 20.0)
    if not pools and heart_found:
        values = np.concatenate(soft_tissue)
        if values.size:
            blood_pool_hu = float(np.median(values))
    if not pools and blood_pool_hu >= CONTRAST_BLOOD_POOL_HU:  # the heart itself is enhanced
        contrast = True
    return _result(contrast, blood_pool_hu, heart_found, regions[:8], heart_slices)


def _result(
    contrast: bool, blood_pool_hu: float, heart_found: bool, regions: list, heart_slices: int
) -> dict:
    """The dict :func:`find_blood_pool` returns (the report's ``details``)."""
    return {
        "contrast": contrast,
        "blood_pool_hu": blood_pool_hu,
        "heart_found": heart_found,
        "regions": regions,
        "heart_slices": heart_slices,
    }


def _candidate_pools(smooth: np.ndarray, bone: np.ndarray, block_mm: np.ndarray) -> list[dict]:
    """The candidate blood pools, largest first: a large region between 150 and 700 HU, to be
    told from bone marrow (see the module docstring: marrow blocks touch cortex, or carry the
    cortical shell in their upper tail)."""
    block_cm3 = float(np.prod(block_mm)) / 1000.0
    enhanced = (smooth >= CONTRAST_BLOOD_POOL_HU) & (smooth < 700)
    # erode by about 6 mm to cut the aorta from the vertebrae it lies on; in each core, the
    # largest connected part within 40 HU of the core's most common value is the candidate pool
    cores, n = ndimage.label(ndimage.binary_erosion(enhanced, iterations=_EROSION_BLOCKS))
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    regions = []
    for k in np.flatnonzero(sizes * block_cm3 >= MIN_POOL_CM3):
        if k == 0:
            continue
        regions.append(
            _measure_pool(cores == k, smooth, bone, block_mm, float(sizes[k] * block_cm3))
        )
    regions.sort(key=lambda r: -r["pool_cm3"])
    return regions


def _measure_pool(
    core: np.ndarray, smooth: np.ndarray, bone: np.ndarray, block_mm: np.ndarray, core_cm3: float
) -> dict:
    """The largest part of ``core`` within 40 HU of its most common value, measured."""
    block_cm3 = float(np.prod(block_mm)) / 1000.0
    counts, edges = np.histogram(smooth[core], bins=np.arange(CONTRAST_BLOOD_POOL_HU, 711.0, 10.0))
    mode = float(edges[int(np.argmax(counts))] + 5.0)
    parts, n_parts = ndimage.label(core & (np.abs(smooth - mode) < _POOL_BAND_HU))
    part_sizes = np.bincount(parts.ravel(), minlength=n_parts + 1)
    part_sizes[0] = 0
    pool = parts == int(np.argmax(part_sizes))
    median = float(np.median(smooth[pool]))
    return {
        "mode_hu": mode,
        "median_hu": round(median, 1),
        "max_area_cm2": round(
            float(pool.sum(axis=(1, 2)).max() * block_mm[1] * block_mm[2] / 100.0), 1
        ),
        "core_cm3": round(core_cm3, 1),
        "pool_cm3": round(float(part_sizes.max() * block_cm3), 1),
        "bone_fraction": round(float(bone[pool].mean()), 3),
    }


def _heart_slices(smooth: np.ndarray, block_mm: np.ndarray) -> tuple[int, list[np.ndarray]]:
    """The number of slices whose rows hold a wide run of mediastinal tissue with lung on both
    sides, and the soft tissue of those runs, one array per slice."""
    lung = (smooth > -960) & (smooth < -500)
    tissue = (smooth >= -500) & (smooth < 700)
    min_run = max(3, int(round(80.0 / block_mm[2])))
    heart_slices = 0
    soft_tissue = []
    for z in range(smooth.shape[0]):
        rows = [
            (y, run)
            for y in range(smooth.shape[1])
            for run in _lung_bounded_runs(lung[z, y], tissue[z, y], min_run)
        ]
        if len(rows) * block_mm[1] >= 30.0:
            heart_slices += 1
            values = np.concatenate([smooth[z, y, a:b] for y, (a, b) in rows])
            soft_tissue.append(values[(values > -20) & (values < 700)])
    return heart_slices, soft_tissue


def _lung_bounded_runs(lung: np.ndarray, tissue: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, stop) of runs of ``tissue`` at least ``min_len`` long with lung right before and after."""
    t = np.concatenate([[False], tissue, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(t))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a >= min_len and a > 0 and b < lung.size and lung[a - 1] and lung[b]:
            out.append((int(a), int(b)))
    return out
