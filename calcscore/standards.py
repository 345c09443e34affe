"""Reporting standards for coronary calcium: CAC-DRS and the ordinal score.

Both are re-exported by :mod:`calcscore.scoring` and written into ``<scan>_scores.json`` and
``cohort_summary.csv`` by ``calcscore score``.

**CAC-DRS** (Hecht et al., J Cardiovasc Comput Tomogr 2018;12:185-91, SCCT/STR): the Agatston
category A0 (score 0), A1 (1-99), A2 (100-299) or A3 (>= 300) with the modifier N, the number of
coronary arteries with calcium, written "A2/N3"; A0 is written without N. The published N counts
four vessels (left main, LAD, LCx, RCA; N1-N4). calcscore's labels fold the left main into the LAD
(:class:`calcscore.labels.Label`), so here N counts LAD (with the left main), LCX and RCA: 0-3.
A score between 0 and 1 (possible with non-3 mm slices) is A1, and scores are not rounded: 99.6
is A1, 100 is A2, 299.9 is A2, 300 is A3. An artery "has calcium" when its Agatston score is
above 0, so A0 holds exactly when N is 0.

**Ordinal score** (Shemesh et al., Radiology 2010;257:541-8): each of the left main, LAD, LCx
and RCA graded 0 (no calcium), 1 mild (calcium along less than one third of the artery's length),
2 moderate (one third to two thirds) or 3 severe (more than two thirds); total 0-12. Readers
grade by eye along a vessel they can follow; a label map holds only the calcium, not the artery,
so calcscore measures the extent as follows (:func:`ordinal_score`):

- the artery's calcium is split into lesions (26-connected voxels >= the calcium threshold that
  carry the artery's label, at least ``min_volume_mm3``);
- each lesion's length is its extent along its own principal axis (voxel centres projected on
  the first principal axis of the voxel coordinates in mm, plus one voxel's extent along that
  axis): the length of vessel it covers if it lies along the vessel, as plaques mostly do;
- the artery's calcified length is the sum over its lesions (lesions do not overlap);
- the fraction is that length over a nominal artery length (:data:`NOMINAL_ARTERY_LENGTH_MM`,
  or ``artery_length_mm``); grade 1 below 1/3, 2 from 1/3 to 2/3 inclusive, 3 above 2/3; an
  artery with Agatston 0 is grade 0, any other at least 1.

The left main is part of the LAD here, so the total is 0-9, not 0-12.

Limits, stated plainly: the nominal lengths are not the patient's (arteries differ by tens of
millimetres between people, and a short scan may not cover an artery's whole course); a lesion
that curves along the vessel is measured by its chord, so it comes out shorter; a ring of calcium
around the vessel is measured across the vessel; and the gaps between lesions count as free of
calcium, where a reader may call spotty calcium spread along the whole artery severe. The grade
is a reproducible estimate of the published visual grade, not the same measurement.

The default nominal lengths are those of calcscore's phantom arteries (:mod:`calcscore.phantom`,
arc length of the centrelines, 40 subjects): LAD with left main 156 +- 13 mm, LCX 55 +- 9 mm,
RCA 171 +- 13 mm, rounded to 155, 55 and 170 mm. For patient scans pass your own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.labels import CAC_LABELS, Label
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

#: CAC-DRS Agatston categories: name -> lower bound (inclusive) of the score.
CAC_DRS_LOWER_BOUNDS: dict[str, float] = {"A0": 0.0, "A1": 0.0, "A2": 100.0, "A3": 300.0}
CAC_DRS_CATEGORIES: tuple[str, ...] = tuple(CAC_DRS_LOWER_BOUNDS)
#: The arteries N counts (the LAD label includes the left main).
CAC_DRS_VESSELS: tuple[str, ...] = tuple(lab.name for lab in CAC_LABELS)
CAC_DRS_NOTE = (
    "calcscore's LAD label includes the left main coronary artery, so N counts LAD (with the "
    "left main), LCX and RCA (0-3); the published N counts left main, LAD, LCx and RCA (1-4)"
)
#: Nominal course length (mm) of each artery for the ordinal score (see the module docstring).
NOMINAL_ARTERY_LENGTH_MM: dict[str, float] = {"LAD": 155.0, "LCX": 55.0, "RCA": 170.0}
ORDINAL_GRADES: dict[int, str] = {0: "none", 1: "mild", 2: "moderate", 3: "severe"}
ORDINAL_MAX = 3 * len(CAC_LABELS)
ORDINAL_NOTE = (
    "left main folded into the LAD: total 0-9 (published 0-12); extent = summed lesion length "
    "along each lesion's principal axis over a nominal artery length"
)
#: Lengths are compared with the 1/3 and 2/3 bounds to within this (mm), against rounding.
_LENGTH_TOL_MM = 1e-6


# ---------------------------------------------------------------------------------- CAC-DRS
def cac_drs_category(cac_agatston: float) -> str:
    """CAC-DRS Agatston category: A0 (0), A1 (> 0 and < 100), A2 (100-299.x), A3 (>= 300)."""
    score = float(cac_agatston)
    if not math.isfinite(score) or score < 0:
        raise ValueError(f"`cac_agatston` must be a finite score >= 0, got {cac_agatston!r}")
    if score == 0:
        return "A0"
    if score < CAC_DRS_LOWER_BOUNDS["A2"]:
        return "A1"
    return "A2" if score < CAC_DRS_LOWER_BOUNDS["A3"] else "A3"


@dataclass(frozen=True)
class CacDrs:
    """A CAC-DRS result: ``category`` (A0-A3), ``n_vessels`` (0-3) and the arteries counted."""

    category: str
    n_vessels: int
    vessels: tuple[str, ...]

    @property
    def label(self) -> str:
        """ "A0", or "A2/N3" and the like."""
        return self.category if self.category == "A0" else f"{self.category}/N{self.n_vessels}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "agatston_category": self.category,
            "n_vessels": self.n_vessels,
            "calcified_vessels": list(self.vessels),
            "vessels_counted": list(CAC_DRS_VESSELS),
            "note": CAC_DRS_NOTE,
        }


def cac_drs(artery_agatston: Mapping[str, float]) -> CacDrs:
    """CAC-DRS from the Agatston score of each artery (``{"LAD": ..., "LCX": ..., "RCA": ...}``;
    the category is of their sum)."""
    missing = [v for v in CAC_DRS_VESSELS if v not in artery_agatston]
    if missing:
        raise ValueError(f"`artery_agatston` needs {', '.join(missing)}")
    scores = {v: float(artery_agatston[v]) for v in CAC_DRS_VESSELS}
    category = cac_drs_category(sum(scores.values()))
    vessels = tuple(v for v, s in scores.items() if s > 0)
    return CacDrs(category, len(vessels), vessels)


# ---------------------------------------------------------------------------------- ordinal
def ordinal_grade(calcified_length_mm: float, artery_length_mm: float) -> int:
    """Shemesh grade 1-3 of a calcified artery from its calcified and its full length: 1 below
    one third, 2 from one third to two thirds (inclusive), 3 above two thirds."""
    if not artery_length_mm > 0:
        raise ValueError(f"`artery_length_mm` must be > 0, got {artery_length_mm=}")
    if calcified_length_mm < artery_length_mm / 3 - _LENGTH_TOL_MM:
        return 1
    return 2 if calcified_length_mm <= 2 * artery_length_mm / 3 + _LENGTH_TOL_MM else 3


def lesion_lengths_mm(
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float],
    *,
    min_volume_mm3: float = 0.0,
) -> list[float]:
    """Length of each 26-connected lesion along its first principal axis (see the module
    docstring).

    Args:
        mask: the voxels of one artery's calcium.
        spacing_mm: the voxel spacing (z, y, x).
        min_volume_mm3: lesions under this are left out.

    Returns:
        the lengths in mm.
    """
    spacing = np.asarray(spacing_mm, float)
    comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return []
    voxel_mm3 = float(np.prod(spacing))
    lengths = []
    for k, box in enumerate(ndimage.find_objects(comps), start=1):
        idx = np.argwhere(comps[box] == k)
        if idx.shape[0] * voxel_mm3 < min_volume_mm3:
            continue
        pts = idx * spacing
        centred = pts - pts.mean(axis=0)
        _, vecs = np.linalg.eigh(centred.T @ centred)
        axis = vecs[:, -1]  # largest eigenvalue; for a single voxel any axis (the last one)
        proj = centred @ axis
        lengths.append(float(proj.max() - proj.min() + np.abs(axis) @ spacing))
    return lengths


def ordinal_score(
    volume: CTVolume,
    labels: LabelVolume,
    artery_agatston: Mapping[str, float],
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    min_volume_mm3: float = 1.5,
    artery_length_mm: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The Shemesh ordinal score of a scan.

    Args:
        volume: the scan.
        labels: its label map.
        artery_agatston: Agatston per artery; it decides which arteries are calcified
            (Agatston > 0, as for CAC-DRS). The extent of those comes from the label map by
            the rule of the module docstring.
        threshold_hu: the calcium threshold.
        min_volume_mm3: lesions under this are left out of the lengths.
        artery_length_mm: the nominal length of each artery (None: :data:`NOMINAL_ARTERY_LENGTH_MM`).

    Returns:
        ``{"total", "max", "arteries": {"LAD": {"grade", "extent", "calcified_length_mm",
        "artery_length_mm", "fraction"}, ...}, "note"}``.
    """
    check_same_geometry(volume, labels)
    nominal = {**NOMINAL_ARTERY_LENGTH_MM, **(artery_length_mm or {})}
    calcium = volume.hu >= threshold_hu
    arteries = {}
    for lab in CAC_LABELS:
        name = lab.name
        length = float(nominal[name])
        if float(artery_agatston[name]) > 0:
            mask = (labels.array == int(lab)) & calcium
            covered = sum(lesion_lengths_mm(mask, volume.spacing_mm, min_volume_mm3=min_volume_mm3))
            grade = ordinal_grade(covered, length)
        else:
            covered, grade = 0.0, 0
        arteries[name] = {
            "grade": grade,
            "extent": ORDINAL_GRADES[grade],
            "calcified_length_mm": round(covered, 2),
            "artery_length_mm": length,
            "fraction": round(covered / length, 4),
        }
    return {
        "total": sum(a["grade"] for a in arteries.values()),
        "max": ORDINAL_MAX,
        "arteries": arteries,
        "note": ORDINAL_NOTE,
    }


def report_standards(
    volume: CTVolume,
    labels: LabelVolume,
    label_agatston: Mapping[str, float],
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    min_volume_mm3: float = 1.5,
) -> dict[str, Any]:
    """The keys ``calcscore score`` adds to a scan's scores.

    Args:
        volume: the scan.
        labels: its label map.
        label_agatston: Agatston per label name (LAD, LCX, RCA, TAC, AV, MV).
        threshold_hu: the calcium threshold.
        min_volume_mm3: lesions under this are left out of the ordinal score's lengths.

    Returns:
        ``cac_drs``, ``ordinal_score`` and ``beside_cac`` (the thoracic aorta and valves,
        reported beside CAC and never part of it).
    """
    arteries = {v: label_agatston[v] for v in CAC_DRS_VESSELS}
    return {
        "cac_drs": cac_drs(arteries).to_dict(),
        "ordinal_score": ordinal_score(
            volume,
            labels,
            arteries,
            threshold_hu=threshold_hu,
            min_volume_mm3=min_volume_mm3,
        ),
        "beside_cac": {
            "labels": [lab.name for lab in (Label.TAC, Label.AV, Label.MV)],
            "note": "thoracic aorta (TAC), aortic valve (AV) and mitral valve (MV) calcium are "
            "scored on their own (see labels) and are not part of CAC, CAC-DRS or the ordinal score",
        },
    }
