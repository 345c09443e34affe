"""Bone in a chest CT, found from the scan alone: thick cores of voxels >= 130 HU, and the spine.

The anatomical safety net (:mod:`calcscore.regions`) keeps calcium labels off bone and coronary
and valve labels away from the spine; the realism report and the domain-shift notebook measure
where bone lies.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.volume import CTVolume

#: the bone test uses the calcium threshold of the candidates
BONE_HU = CALCIUM_THRESHOLD_HU
#: coronary and valve labels this close (in-plane, mm) to the spine are removed: none of 14 v2
#: phantoms' (even at 30 mm); on the real lungdx-a0001-b, a LAD label 3.8 mm from a vertebra,
#: its whole CAC score (benchmarks/README.md)
SPINE_MARGIN_MM = 10.0
#: bone behind the lungs' middle row that reaches this close (mm) to their midline is the spine
SPINE_MIDLINE_MM = 5.0
#: a vertebra's cross-section (body and arch) is under this (cm²); a heart is not
SPINE_MAX_CM2 = 40.0


def bone_mask(volume: CTVolume, *, max_lesion_mm3: float) -> np.ndarray:
    """Bone: voxels >= 130 HU of (and two voxels around) thick cores larger than ``max_lesion_mm3``.

    The cores are what survives an in-plane erosion by one voxel of the voxels >= 130 HU,
    26-connected: vertebral bodies, the sternum, clavicles and rib heads have thick cores; an
    aortic or coronary wall calcification is thin, so a calcification that touches a vertebra at
    130 HU (the descending aorta lies on the spine) is not merged into it."""
    hot = volume.hu >= BONE_HU
    core = ndimage.binary_erosion(hot, structure=np.ones((1, 3, 3), bool))
    lab, n = ndimage.label(core, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros(hot.shape, bool)
    sizes = np.bincount(lab.ravel()) * float(np.prod(volume.spacing_mm))
    sizes[0] = 0.0
    big = sizes > max_lesion_mm3
    # grow the cores back by their eroded voxel and one more (their cortex)
    grown = ndimage.binary_dilation(big[lab], structure=np.ones((1, 3, 3), bool), iterations=2)
    return grown & hot


def near_spine(
    bone: np.ndarray, spacing_mm: tuple[float, float, float], mid_y: float, mid_x: float
) -> np.ndarray:
    """Voxels within :data:`SPINE_MARGIN_MM` (in-plane) of the spine. Per slice, the spine is
    the in-plane component of ``bone`` (eroded by 2 mm, which parts the ribs from it) that
    crosses the lungs' midline column ``mid_x`` with its centre behind their middle row ``mid_y``
    and an area under :data:`SPINE_MAX_CM2`: a vertebra, not a contrast-filled heart or aorta.

    Args:
        bone: :func:`bone_mask` of the scan.
        spacing_mm: its voxel size (z, y, x).
        mid_y, mid_x: the lungs' middle row and column (voxels).

    Returns:
        a boolean mask on the grid of ``bone``."""
    out = np.zeros(bone.shape, bool)
    px = float(spacing_mm[1] * spacing_mm[2])
    disk = in_plane_disk(2.0, spacing_mm)
    x0, x1 = (int(mid_x + k * SPINE_MIDLINE_MM / spacing_mm[2]) for k in (-1, 1))
    for z in np.flatnonzero(bone[:, :, max(0, x0) : x1 + 1].any(axis=(1, 2))):
        lab, n = ndimage.label(ndimage.binary_erosion(bone[z], structure=disk))
        ids = np.unique(lab[:, max(0, x0) : x1 + 1])
        ids = ids[ids > 0]
        if not len(ids):
            continue
        area = ndimage.sum_labels(np.ones_like(lab), lab, ids) * px / 100.0
        cy = np.array(ndimage.center_of_mass(lab > 0, lab, ids))[:, 0].reshape(-1)
        keep = ids[(area <= SPINE_MAX_CM2) & (cy > mid_y)]
        if len(keep):
            spine = ndimage.binary_dilation(np.isin(lab, keep), structure=disk) & bone[z]
            dist = ndimage.distance_transform_edt(~spine, sampling=spacing_mm[1:])
            out[z] = dist <= SPINE_MARGIN_MM
    return out


def in_plane_disk(radius_mm: float, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """An in-plane disk of ``radius_mm`` (at least one voxel) as a (y, x) structuring element."""
    ry, rx = (max(1, int(round(radius_mm / s))) for s in spacing_mm[1:])
    yy, xx = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    return ((yy * spacing_mm[1]) ** 2 + (xx * spacing_mm[2]) ** 2) <= radius_mm**2
