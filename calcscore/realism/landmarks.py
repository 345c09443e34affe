"""Landmark slices that match a phantom's slices to a real scan's by anatomy.

Found from the scan alone:

- ``lung_top``, ``lung_bottom``: the highest and lowest slices with lung;
- ``carina``: where the trachea ends. The trachea is followed down from the highest slice with a
  small round air pocket (:data:`TRACHEA_CM2`) inside the body within :data:`MIDLINE_MM` of the
  lungs' midline, slice by slice, while exactly one such pocket lies within
  :data:`TRACHEA_STEP_MM` of where it was (slices where none is are passed over for up to
  :data:`MAX_GAP_MM`); where two lie within twice that distance, the trachea has split into
  the main bronchi: the last slice with one is the carina's;
- ``diaphragm``: going down from the slice with the most lung, the first whose lung area is
  under half of it (the domes have risen into the lungs' cross-section);
- ``mid_heart``: the slice half-way between the carina (the lungs' top without one) and the
  diaphragm: the heart lies between them, its middle near half-way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.constants import BODY_THRESHOLD_HU
from calcscore.volume import CTVolume

#: the trachea's cross-section (cm2): an adult's is 1.5-3 cm2; a main bronchus' about 1 cm2
TRACHEA_CM2 = (0.8, 6.0)
#: the trachea starts within this distance of the lungs' midline (mm)
MIDLINE_MM = 25.0
#: from slice to slice the trachea moves less than this (mm)
TRACHEA_STEP_MM = 12.0
#: the trachea may be missed (merged with the lungs' outline) over at most this length (mm)
MAX_GAP_MM = 15.0


def _superior_order(z_mm: np.ndarray) -> np.ndarray:
    """Slice indices from the most superior to the most inferior."""
    return np.argsort(-z_mm, kind="stable")


def _air_pockets(hu_slice, body_slice, pixel_mm2, pixel_mm):
    """(centroid (y, x) mm, area cm2) of each enclosed air pocket of one slice."""
    lab, n = ndimage.label(body_slice & (hu_slice < BODY_THRESHOLD_HU))
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(lab), lab, idx) * pixel_mm2 / 100.0
    cents = ndimage.center_of_mass(np.ones_like(lab), lab, idx)
    return [(np.asarray(c) * pixel_mm, a) for c, a in zip(cents, area)]


def find_carina(
    hu: np.ndarray, body: np.ndarray, lungs: np.ndarray, z_mm: np.ndarray, spacing_mm
) -> int | None:
    """The carina's slice (see the module docstring).

    Args:
        hu: the scan (z, y, x) in HU.
        body, lungs: its body and lung masks.
        z_mm: each slice's position along the patient's axis (mm).
        spacing_mm: the voxel spacing (z, y, x).

    Returns:
        the slice index, or None where no trachea is followed.
    """
    xs = np.flatnonzero(lungs.any(axis=(0, 1)))
    if not len(xs):
        return None
    mid_x = (xs[0] + xs[-1]) / 2.0 * spacing_mm[2]
    pixel_mm = np.array(spacing_mm[1:])
    pixel_mm2 = float(np.prod(pixel_mm))
    last, where, gap = None, None, 0.0
    for z in _superior_order(z_mm):
        if not body[z].any():
            continue
        pockets = [
            c
            for c, a in _air_pockets(hu[z], body[z], pixel_mm2, pixel_mm)
            if TRACHEA_CM2[0] <= a <= TRACHEA_CM2[1]
        ]
        if where is None:
            near = [c for c in pockets if abs(c[1] - mid_x) <= MIDLINE_MM]
            close = near
        else:
            near = [c for c in pockets if np.hypot(*(c - where)) <= TRACHEA_STEP_MM]
            close = [c for c in pockets if np.hypot(*(c - where)) <= 2 * TRACHEA_STEP_MM]
        if where is not None and len(close) > 1:
            break  # the trachea splits: the main bronchi
        if len(near) == 1:
            last, where, gap = int(z), near[0], 0.0
        elif where is not None:
            gap += abs(float(z_mm[z] - z_mm[last]))
            if gap > MAX_GAP_MM:  # lost (it merged with the lungs' outline, or ended)
                break
    return last


def find_landmarks(
    volume: CTVolume, body: np.ndarray, lungs: np.ndarray, z_mm: np.ndarray
) -> dict[str, int | None]:
    """The landmark slices of the module docstring.

    Args:
        volume: the scan.
        body, lungs: its body and lung masks.
        z_mm: each slice's position along the patient's axis (mm).

    Returns:
        lung_top, lung_bottom, carina, mid_heart and diaphragm: indices into ``volume``'s
        slices, None where not found.
    """
    lung_area = (lungs & body).sum(axis=(1, 2))
    has_lung = np.flatnonzero(lung_area > 0)
    out: dict[str, int | None] = dict.fromkeys(
        ("lung_top", "lung_bottom", "carina", "mid_heart", "diaphragm")
    )
    if not len(has_lung):
        return out
    order = [int(z) for z in _superior_order(z_mm) if lung_area[z] > 0]
    out["lung_top"], out["lung_bottom"] = order[0], order[-1]
    carina = find_carina(volume.hu, body, lungs, z_mm, volume.spacing_mm)
    out["carina"] = carina
    below = [z for z in order if carina is None or z_mm[z] < z_mm[carina]]
    if not below:
        return out
    # the diaphragm: going down from the lungs' largest slice, the first under half of it
    widest = int(np.argmax(lung_area))
    low = [z for z in below if z_mm[z] < z_mm[widest] and lung_area[z] < 0.5 * lung_area[widest]]
    out["diaphragm"] = low[0] if low else below[-1]
    # mid-heart: half-way between the carina (or the lungs' top) and the diaphragm
    top_z = z_mm[carina if carina is not None else order[0]]
    mid = (top_z + z_mm[out["diaphragm"]]) / 2.0
    out["mid_heart"] = int(below[int(np.argmin(np.abs(z_mm[below] - mid)))])
    return out
