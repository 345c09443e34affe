"""Real chest CT without calcium annotations as training negatives.

On a real chest CT, every voxel of 130 HU or more outside the heart and the great vessels is
bone, cartilage, metal or a node: never coronary, aortic or valve calcium. :func:`real_negative_labels`
turns a scan into such a negative from the anatomical regions of :mod:`calcscore.regions`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.labels import IGNORE
from calcscore.regions import ChestRegions, find_chest_regions
from calcscore.volume import CTVolume


def real_negative_labels(
    volume: CTVolume, regions: ChestRegions | None = None, *, margin_mm: float = 15.0
) -> np.ndarray:
    """A training label map that makes a real scan without calcium annotations a negative.

    Voxels farther than ``margin_mm`` (in-plane, and as far in z) from where calcium of any
    label can lie (:attr:`ChestRegions.zone` > 0, bone taken out) are background (0): on a real
    chest CT every voxel of 130 HU or more there is bone, cartilage, metal or a node. The voxels
    near and inside the heart and the great vessels, and the bone within them, are not
    annotated: :data:`calcscore.labels.IGNORE`, left out of training. The project's own
    automatic annotation, not an expert's: look at it (e.g. with
    :func:`calcscore.viz.render_slice`) before training on it.

    Args:
        volume: a real chest CT in HU without calcium annotations.
        regions: its :func:`find_chest_regions` (found here when None).
        margin_mm: how far from the regions voxels become background.

    Returns:
        a uint8 array on the grid of ``volume``: 0 or :data:`calcscore.labels.IGNORE`.

    Raises:
        ValueError: when no chest regions are found.
    """
    regions = find_chest_regions(volume) if regions is None else regions
    if not regions.found:
        raise ValueError(
            f"no chest regions found ({regions.reason}): the scan cannot serve as a negative"
        )
    near = regions.zone > 0
    # bone inside the regions is zone 0 but lies in the heart's neighbourhood: fill it back
    near = ndimage.binary_closing(near, structure=np.ones((1, 3, 3), bool), iterations=3) | near
    steps = np.maximum(1, np.round(margin_mm / np.asarray(volume.spacing_mm)).astype(int))
    for axis, n in enumerate(steps):
        struct = np.zeros((3, 3, 3), bool)
        struct[tuple(1 if a != axis else slice(None) for a in range(3))] = True
        near = ndimage.binary_dilation(near, structure=struct, iterations=int(n))
    return np.where(near, IGNORE, 0).astype(np.uint8)
