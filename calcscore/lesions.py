"""Lesions: connected components, and voxel- to lesion-level annotation (paper section V.H).

calcscore's reference annotations label single voxels, so a noisy voxel next to a calcification
need not be calcium. Clinical tools label whole lesions: every voxel above 130 HU connected to
a clicked voxel. :func:`convert_to_lesion_level` turns a voxel-level label map into such a
lesion-level one by 3D region growing at the calcium threshold from the annotated voxels; a
grown lesion gets the label most of its annotated voxels carry. The paper excludes scans whose
calcium volume grows more than 5 x (noise connects the calcium to large regions) and reports how
much the Agatston score rises in the rest (+85 soft, +155 sharp kernels on average).

The per-lesion table of scores is :func:`calcscore.scoring.lesion_table`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.labels import CAC_LABELS, CALCIUM_LABELS
from calcscore.scoring import (
    CALCIUM_THRESHOLD_HU,
    DEFAULT_CONVENTION,
    AgatstonConvention,
    Scores,
    agatston,
    lesion_table,
)
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

__all__ = [
    "LesionLevelConversion",
    "MAX_VOLUME_RATIO",
    "connectivity_structure",
    "convert_to_lesion_level",
    "grow_to_lesions",
    "label_lesions",
    "lesion_level_study",
    "lesion_table",
    "lesion_votes",
    "VOTE_MAJORITY",
    "vote_arteries",
]

log = logging.getLogger(__name__)

#: Scans whose calcium volume grows more than this factor are excluded (paper section V.H).
MAX_VOLUME_RATIO = 5.0
#: :func:`vote_arteries`: the share of a coronary lesion one artery needs to take all of it (a
#: plain majority flipped near-even lesions at the left main's bifurcation on held-out phantoms)
VOTE_MAJORITY = 2.0 / 3.0
_RANK = {6: 1, 18: 2, 26: 3}


def connectivity_structure(connectivity: int) -> np.ndarray:
    """The 3 x 3 x 3 structuring element of 6-, 18- or 26-connectivity."""
    if connectivity not in _RANK:
        raise ValueError(f"`connectivity` must be 6, 18 or 26, got {connectivity=}")
    return ndimage.generate_binary_structure(3, _RANK[connectivity])


def label_lesions(mask: np.ndarray, *, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Connected components of a 3D boolean mask: (int32 component map with 0 = none, count)."""
    m = np.asarray(mask, bool)
    if m.ndim != 3:
        raise ValueError(f"`mask` must be 3D (z, y, x), got shape {m.shape}")
    components, n = ndimage.label(m, structure=connectivity_structure(connectivity))
    return components, int(n)


def lesion_votes(
    components: np.ndarray,
    n: int,
    labels: np.ndarray,
    where: np.ndarray | None = None,
    *,
    width: int | None = None,
) -> np.ndarray:
    """How many voxels of each lesion carry each label: an (n + 1, ``width``) count array, row k
    for component k of ``components`` (row 0: voxels outside every component), counted over the
    voxels of ``where`` (None: all).

    Args:
        components: a component map (0: none, 1..n), e.g. from :func:`label_lesions`.
        n: the number of components.
        labels: a label map of the same shape (non-negative integers).
        where: the voxels that vote (a boolean mask of the same shape), or None for all.
        width: the columns (labels 0..width - 1); None: the largest voting label + 1.

    Returns:
        the counts; ``argmax(axis=1)`` is each lesion's majority label, the lower on a tie.
    """
    ids = components if where is None else components[where]
    lab = (labels if where is None else labels[where]).astype(np.int64).ravel()
    if width is None:
        width = int(lab.max()) + 1 if lab.size else 1
    flat = np.bincount(ids.ravel().astype(np.int64) * width + lab, minlength=(n + 1) * width)
    return flat.reshape(n + 1, width)


def vote_arteries(labels: np.ndarray, *, majority: float = VOTE_MAJORITY) -> np.ndarray:
    """Give a coronary lesion one artery where most of it agrees: each 26-connected component of
    coronary voxels (LAD, LCX, RCA) of which one artery holds at least ``majority`` of the voxels
    takes that artery. A calcification lies in one artery and the networks label voxel by voxel:
    a small minority is their error. A near-even split is left as labelled: it may be a plaque
    that runs from the left main (LAD) into the LCX. Other labels and the CAC voxels stay.

    Args:
        labels: a (z, y, x) label map (values of :class:`calcscore.labels.Label`).
        majority: the share of a lesion's coronary voxels its artery needs (0.5: any majority,
            ties to the lower label value).

    Returns:
        a copy with the lesions voted (``labels`` itself where no lesion changes).
    """
    arteries = np.asarray([int(a) for a in CAC_LABELS])
    coronary = np.isin(labels, arteries)
    if not coronary.any():
        return labels
    # only the box around the coronary voxels: a lesion lies inside it
    box = tuple(
        slice(int(idx[0]), int(idx[-1]) + 1)
        for idx in (np.flatnonzero(coronary.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1)))
    )
    components, n = label_lesions(coronary[box])
    inner = labels[box]
    votes = lesion_votes(components, n, inner, components > 0, width=int(arteries.max()) + 1)
    votes = votes[:, arteries]
    clear = votes.max(axis=1) >= majority * votes.sum(axis=1)
    voted = ((votes > 0).sum(axis=1) > 1) & clear  # mixed lesions with a clear majority
    if not voted.any():
        return labels
    winner = arteries[votes.argmax(axis=1)].astype(labels.dtype)
    out = labels.copy()
    change = voted[components]
    out[box][change] = winner[components[change]]
    return out


def grow_to_lesions(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    connectivity: int = 26,
) -> LabelVolume:
    """Lesion-level label map: 3D region growing at ``threshold_hu`` from the annotated voxels.

    Every connected component (``connectivity``) of voxels >= ``threshold_hu`` that holds at
    least one annotated calcium voxel (label 1-6, itself >= threshold) becomes a lesion with the
    label most of its annotated voxels carry; ties go to the smaller label value (LAD before
    LCX ...). Annotated voxels below the threshold are not calcium and are dropped.

    Args:
        volume: the scan in HU.
        labels: the voxel-level annotation on the grid of ``volume``.
        threshold_hu: the calcium threshold in HU (voxels >= it grow).
        connectivity: 6, 18 or 26 (3D neighbours that connect).

    Returns:
        the lesion-level labels on the grid of ``labels``.
    """
    check_same_geometry(volume, labels)
    above = volume.hu >= threshold_hu
    lab = labels.array
    seeds = above & (lab > 0) & (lab <= max(CALCIUM_LABELS))
    out = np.zeros(labels.shape, np.uint8)
    if not seeds.any():
        return LabelVolume.like(labels, out)
    components, n = label_lesions(above, connectivity=connectivity)
    # each lesion's majority label (the lower on a tie); 0 where no annotated voxel lies in it
    lut = lesion_votes(components, n, lab, seeds).argmax(axis=1).astype(np.uint8)
    return LabelVolume.like(labels, lut[components])


@dataclass(frozen=True, eq=False)
class LesionLevelConversion:
    """The result of :func:`convert_to_lesion_level` for one scan."""

    labels: LabelVolume
    voxel_level_volume_mm3: float
    lesion_level_volume_mm3: float
    volume_ratio: float
    excluded: bool
    scores_voxel_level: Scores
    scores_lesion_level: Scores

    @property
    def cac_agatston_increase(self) -> float:
        return self.scores_lesion_level["CAC"].agatston - self.scores_voxel_level["CAC"].agatston

    @property
    def total_agatston_increase(self) -> float:
        return _total_agatston(self.scores_lesion_level) - _total_agatston(self.scores_voxel_level)


def _total_agatston(scores: Scores) -> float:
    return float(sum(scores[lab.name].agatston for lab in CALCIUM_LABELS))


def convert_to_lesion_level(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    connectivity: int = 26,
    max_volume_ratio: float = MAX_VOLUME_RATIO,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
) -> LesionLevelConversion:
    """Grow a voxel-level annotation into a lesion-level one and compare their scores.

    ``volume_ratio`` is the grown calcium volume over the annotated calcium volume (voxels >=
    ``threshold_hu``, all labels), ``nan`` when nothing is annotated; the scan is ``excluded``
    when the ratio exceeds ``max_volume_ratio``. Both label maps are scored with ``convention``.

    Args:
        volume, labels, threshold_hu, connectivity: as for :func:`grow_to_lesions`.
        max_volume_ratio: exclude the scan when the volume grows by more than this factor
            (the paper's 5).
        convention: the Agatston convention (or its name) both label maps are scored with.

    Returns:
        a :class:`LesionLevelConversion`: the grown labels, both volumes in mm³, their ratio,
        the exclusion and both sets of scores.
    """
    grown = grow_to_lesions(volume, labels, threshold_hu=threshold_hu, connectivity=connectivity)
    above = volume.hu >= threshold_hu
    lab = labels.array
    n_voxel = int(np.count_nonzero(above & (lab > 0) & (lab <= max(CALCIUM_LABELS))))
    n_grown = int(np.count_nonzero(grown.array))
    vox_mm3 = volume.voxel_volume_mm3
    ratio = n_grown / n_voxel if n_voxel else math.nan
    excluded = bool(ratio > max_volume_ratio)
    if excluded:
        log.info(
            "lesion-level volume is %.1f x the voxel-level volume (> %.1f): scan excluded",
            ratio,
            max_volume_ratio,
        )
    return LesionLevelConversion(
        labels=grown,
        voxel_level_volume_mm3=n_voxel * vox_mm3,
        lesion_level_volume_mm3=n_grown * vox_mm3,
        volume_ratio=ratio,
        excluded=excluded,
        scores_voxel_level=agatston(volume, labels, convention=convention),
        scores_lesion_level=agatston(volume, grown, convention=convention),
    )


def lesion_level_study(
    cases: Iterable[tuple[str, CTVolume, LabelVolume]],
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    connectivity: int = 26,
    max_volume_ratio: float = MAX_VOLUME_RATIO,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
) -> pd.DataFrame:
    """Section V.H over many scans: one row per ``(scan_id, volume, labels)`` case.

    Columns: ``scan_id``, ``voxel_level_volume_mm3``, ``lesion_level_volume_mm3``,
    ``volume_ratio``, ``excluded``, CAC and total (all six labels) Agatston scores at both
    levels and their increase. Average ``cac_agatston_increase`` over the rows that are not
    ``excluded`` to reproduce the paper's figure.

    Args:
        cases: ``(scan_id, volume, labels)`` of each scan, the labels voxel-level.
        threshold_hu, connectivity, max_volume_ratio, convention: as for
            :func:`convert_to_lesion_level`.

    Returns:
        a DataFrame with one row per case and the columns above.
    """
    rows = []
    for scan_id, volume, labels in cases:
        c = convert_to_lesion_level(
            volume,
            labels,
            threshold_hu=threshold_hu,
            connectivity=connectivity,
            max_volume_ratio=max_volume_ratio,
            convention=convention,
        )
        rows.append(
            {
                "scan_id": scan_id,
                "voxel_level_volume_mm3": c.voxel_level_volume_mm3,
                "lesion_level_volume_mm3": c.lesion_level_volume_mm3,
                "volume_ratio": c.volume_ratio,
                "excluded": c.excluded,
                "cac_agatston_voxel_level": c.scores_voxel_level["CAC"].agatston,
                "cac_agatston_lesion_level": c.scores_lesion_level["CAC"].agatston,
                "cac_agatston_increase": c.cac_agatston_increase,
                "total_agatston_voxel_level": _total_agatston(c.scores_voxel_level),
                "total_agatston_lesion_level": _total_agatston(c.scores_lesion_level),
                "total_agatston_increase": c.total_agatston_increase,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "scan_id",
            "voxel_level_volume_mm3",
            "lesion_level_volume_mm3",
            "volume_ratio",
            "excluded",
            "cac_agatston_voxel_level",
            "cac_agatston_lesion_level",
            "cac_agatston_increase",
            "total_agatston_voxel_level",
            "total_agatston_lesion_level",
            "total_agatston_increase",
        ],
    )
