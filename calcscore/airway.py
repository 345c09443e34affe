"""The carina: where the trachea divides, found from the scan alone.

Calcium-scoring CT is planned from the carina (or 1 cm below it) down to the heart's base: the
coronary ostia lie below it (35-60 mm on the seven open chest CTs beside the project). The
anatomical safety net (:mod:`calcscore.regions`) keeps coronary and valve labels at or below the
carina's slice, which takes them off the aortic arch, where the widest-heart rule and its margin
(:func:`calcscore.regions.find_chest_regions`) can reach.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.constants import OUTSIDE_FOV_HU
from calcscore.volume import CTVolume

#: airway lumen: the in-plane Gaussian (sigma 1 voxel) of the scan below this (lung parenchyma is
#: -850..-700 HU; the smoothing keeps the trachea's thin wall between it and the lung)
LUMEN_HU = -900.0
#: a trachea's cross-section (cm²) when it is first seen, and the most it may grow to
TRACHEA_CM2 = (1.0, 8.0)
#: a branch at the split has at least this cross-section (cm²); smaller specks are noise
BRANCH_CM2 = 0.3
#: the trachea is first seen within this distance (mm) of the lungs' midline, near their top
MIDLINE_MM = 20.0
#: the trachea must be followed down over at least this length (mm) before it divides (a gated
#: scan that starts below the carina shows main bronchi, 25-50 mm long: no carina is claimed)
MIN_TRACHEA_MM = 70.0


def _components(hu: np.ndarray, cm2_per_voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """In-plane air components of one slice and their areas (cm²; inf where they touch the
    slice's border: air outside the body)."""
    air = (ndimage.gaussian_filter(hu, 1.0) < LUMEN_HU) & (hu > OUTSIDE_FOV_HU)
    lab, n = ndimage.label(air)
    areas = np.bincount(lab.ravel(), minlength=n + 1) * cm2_per_voxel
    areas[np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))] = np.inf
    areas[0] = 0.0
    return lab, areas


def find_carina(volume: CTVolume, top_z: int, mid_x: float) -> int | None:
    """The slice of the carina: the trachea is followed down from the lungs' top slice ``top_z``
    (first seen as a round air component within :data:`MIDLINE_MM` of column ``mid_x``, from one
    slice to the next by overlap) to the first slice where it parts into two branches.

    Args:
        volume: a chest CT in HU, z up.
        top_z: the highest slice with lung.
        mid_x: the lungs' middle column (voxels).

    Returns:
        the last slice of the undivided trachea, or None where no trachea is followed for
        :data:`MIN_TRACHEA_MM` before it divides (heart-only scans, scans without the chest's top).
    """
    cm2 = float(volume.spacing_mm[1] * volume.spacing_mm[2]) / 100.0
    half = MIDLINE_MM / volume.spacing_mm[2]
    x0, x1 = max(0, int(mid_x - half)), int(mid_x + half) + 1
    prev: np.ndarray | None = None
    first = last = -1
    for z in range(min(top_z, volume.shape[0] - 1), -1, -1):
        lab, areas = _components(volume.hu[z], cm2)
        if prev is None:
            objs = ndimage.find_objects(lab)
            ids = [
                i
                for i in np.unique(lab[:, x0:x1])
                if i > 0
                and TRACHEA_CM2[0] <= areas[i] <= TRACHEA_CM2[1]
                and (lab[objs[i - 1]] == i).mean() > 0.6  # round: a lumen, not lung
            ]
            if ids:
                prev, first = lab == max(ids, key=lambda i: areas[i]), z
                last = z
            elif top_z - z > 40.0 / volume.spacing_mm[0]:
                return None  # no trachea near the lungs' top
            continue
        ids = [i for i in np.unique(lab[prev]) if i > 0 and areas[i] >= BRANCH_CM2]
        if len(ids) >= 2:
            long_enough = (first - last + 1) * volume.spacing_mm[0] >= MIN_TRACHEA_MM
            return last if long_enough else None
        if not ids or areas[ids[0]] > TRACHEA_CM2[1]:
            return None  # lost (merged with a lung, or ended): no carina claimed
        prev, last = lab == ids[0], z
    return None
