"""The lesion fill (not in the paper): a lesion the networks labelled in large part is labelled
whole.

A lesion is a 26-connected component of voxels at or above a threshold: 130 HU as Agatston
scoring and the clinical annotation tools draw it (:mod:`calcscore.lesions`), or higher, which
parts a calcification from the blur and noise around it. The networks label voxel by voxel; on
heavy calcification they label the bright core of a plaque and leave much of the rest, and on
heart-only scans whose first or last slice lies near the calcium they leave more. Where the
labelled voxels make up at least ``fraction`` of a coronary lesion, :func:`fill_lesions` gives
the rest of it the label most of them carry. The fraction keeps out what region growing alone
would take (paper section V.H): a label on a few voxels of a large component of noise, bone or
contrast-filled blood labels nothing more. Aortic and valve lesions are left as labelled (on
the validation phantoms the fill cost aortic F1 on sharp kernels). When ``segment`` runs the
safety net, the fill grows only the labels the net kept, and the net then removes what it added
outside its regions (:func:`calcscore.postprocess.fill_within_net`).

The fraction and threshold are chosen on validation phantoms against their reference
(:func:`calcscore.calibration.choose_lesion_fill`), where the blur and noise around a
calcification count against the fill, and on copies of real scans with synthetic lesions
(``[rim] hybrids``): heavy calcification in real anatomy and noise, which the phantoms lack.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.labels import CAC_LABELS
from calcscore.lesions import lesion_votes

#: the labelled shares of a lesion and the lesions' HU thresholds that
#: :func:`calcscore.calibration.choose_lesion_fill` tries
LESION_FILL_GRID = (0.3, 0.5, 0.7)
LESION_FILL_HU_GRID = (130.0, 160.0, 200.0, 250.0)

_S26 = np.ones((3, 3, 3), bool)


def fill_lesions(
    labels: np.ndarray,
    hu: np.ndarray,
    fraction: float | None,
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    fill_labels: tuple[int, ...] = CAC_LABELS,
) -> np.ndarray:
    """Label whole every lesion whose labelled voxels make up at least ``fraction`` of it.

    Args:
        labels: labels 0 (background) to 7 on the scan's grid.
        hu: the scan's HU, the same shape.
        fraction: the share of a lesion's voxels that must carry a label, in (0, 1]; None or
            0 leaves the labels as they are.
        threshold_hu: the HU a lesion's voxels reach (>= the calcium threshold: a higher one
            parts a calcification from the noise and blur around it).
        fill_labels: the labels whose lesions are filled (a lesion is filled when most of its
            labelled voxels carry one of them).

    Returns:
        a new label array: each filled lesion's unlabelled voxels take the label most of its
        labelled voxels carry (the lower label on a tie); labelled voxels keep theirs.
    """
    out = labels.copy()
    if not fraction:
        return out
    if labels.shape != hu.shape:
        raise ValueError(f"labels {labels.shape} and hu {hu.shape} differ in shape")
    # only the box around the labels to fill, with a margin: a lesion that reaches the box's
    # side is larger than the margin beyond its labels and is left as it is
    zyx = np.argwhere(np.isin(labels, fill_labels))
    if not len(zyx):
        return out
    lo = np.maximum(zyx.min(axis=0) - _MARGIN, 0)
    hi = np.minimum(zyx.max(axis=0) + _MARGIN + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out[box] = _fill_box(
        labels[box], hu[box], fraction, threshold_hu, fill_labels, lo, hi, labels.shape
    )
    return out


#: voxels around the labels to fill that :func:`fill_lesions` looks at
_MARGIN = 16


def _fill_box(labels, hu, fraction, threshold_hu, fill_labels, lo, hi, shape) -> np.ndarray:
    """:func:`fill_lesions` within a box (``lo``, ``hi``) of a volume of ``shape``."""
    out = labels.copy()
    comps, n = ndimage.label(hu >= threshold_hu, structure=_S26)
    # lesions that reach a side of the box that is not the volume's own go on outside it
    cut = [comps[(slice(None),) * d + (0,)] for d in range(3) if lo[d] > 0]
    cut += [comps[(slice(None),) * d + (-1,)] for d in range(3) if hi[d] < shape[d]]
    labelled = labels > 0
    voting = labelled & (comps > 0)
    if not voting.any():
        return out
    size = np.bincount(comps.ravel(), minlength=n + 1)
    votes = lesion_votes(comps, n, labels, voting)
    n_labelled = votes.sum(axis=1)
    major = votes.argmax(axis=1)  # the lower label on a tie
    fill = (n_labelled > 0) & (n_labelled >= fraction * size) & np.isin(major, fill_labels)
    fill[0] = False
    for side in cut:
        fill[np.unique(side)] = False
    add = fill[comps] & ~labelled
    out[add] = major[comps[add]].astype(out.dtype)
    return out


__all__ = ["LESION_FILL_GRID", "LESION_FILL_HU_GRID", "fill_lesions"]
