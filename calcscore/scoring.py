"""Calcium scores from a CT scan and a voxel label map: Agatston, volume and mass.

Every score is computed per label (LAD, LCX, RCA, TAC, AV, MV), for CAC (= LAD + LCX + RCA,
the sum of the three arteries' lesions) and summarised per subject as a risk category.

The calcium of a label is every voxel that carries the label *and* lies above the calcium
threshold (130 HU by default). Lesions are connected components of that mask, one label at a
time, so a calcification that touches two vessels counts once per vessel.

How an Agatston score is computed differs between tools: :class:`AgatstonConvention` holds
the choices, with named presets (:data:`CONVENTIONS`; see :mod:`calcscore.conventions`). Risk
categories are in :mod:`calcscore.risk`.

Mass (mg hydroxyapatite) = calibration factor x (mean HU - water HU) x volume
(McCollough et al., Radiology 2007;243:527-38, with water at 0 HU); see
:class:`MassCalibration`. Without a calibration the mass is ``nan``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU  # noqa: F401 - importable from here
from calcscore.conventions import (  # noqa: F401 - the conventions belong to this API
    AGATSTON_REFERENCE_THICKNESS_MM,
    CONVENTIONS,
    DEFAULT_CONVENTION,
    DENSITY_FACTOR_BOUNDS_HU,
    AgatstonConvention,
    as_convention,
    density_factor,
)
from calcscore.labels import CAC_LABELS, CALCIUM_LABELS, Label
from calcscore.mass import MassCalibration, as_calibration
from calcscore.risk import (  # noqa: F401 - the risk categories belong to this API
    RISK_CATEGORIES,
    RISK_CATEGORY_UPPER_BOUNDS,
    risk_categories,
    risk_category,
)
from calcscore.standards import (  # noqa: F401 - the report standards belong to this API
    CAC_DRS_CATEGORIES,
    CacDrs,
    cac_drs,
    cac_drs_category,
    ordinal_score,
    report_standards,
)
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

log = logging.getLogger(__name__)

#: Names of the per-label entries of :class:`Scores`, in report order.
SCORE_NAMES: tuple[str, ...] = tuple(lab.name for lab in CALCIUM_LABELS) + ("CAC",)


# ---------------------------------------------------------------------------------- lesions
LESION_COLUMNS = (
    "lesion",
    "label",
    "n_voxels",
    "volume_mm3",
    "max_hu",
    "mean_hu",
    "agatston",
    "mass_mg",
    "centroid_x_mm",
    "centroid_y_mm",
    "centroid_z_mm",
    "first_slice",
    "last_slice",
)


def lesion_table(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    calibration: MassCalibration | float | None = None,
) -> pd.DataFrame:
    """One row per calcified lesion that the convention keeps.

    Args:
        volume: the scan in HU.
        labels: its calcium labels (0 background, 1-6 LAD ... MV), on the grid of ``volume``.
        convention: an :class:`AgatstonConvention` or a preset name (:data:`CONVENTIONS`).
        calibration: a :class:`MassCalibration`, a factor in mgHA/cm^3 per HU (water at 0 HU),
            or None (every ``mass_mg`` is nan).

    Returns:
        a DataFrame with columns ``lesion`` (1..n), ``label`` (name, e.g. "LAD"), ``n_voxels``,
        ``volume_mm3``, ``max_hu``, ``mean_hu``, ``agatston``, ``mass_mg`` (nan without
        calibration), ``centroid_x_mm``, ``centroid_y_mm``, ``centroid_z_mm`` (patient LPS),
        ``first_slice`` and ``last_slice`` (array index k).
    """
    conv = as_convention(convention)
    cal = as_calibration(calibration)
    check_same_geometry(volume, labels)
    norm = conv.normalisation_factor(volume)
    hu = volume.hu
    lab = labels.array
    if lab.size and lab.max() > max(CALCIUM_LABELS):
        raise ValueError(
            f"the label map holds value {int(lab.max())}; calcium labels are 0 (background) "
            f"to {max(CALCIUM_LABELS)} ({', '.join(f'{x.value} {x.name}' for x in CALCIUM_LABELS)})"
        )
    boxes = ndimage.find_objects(lab, max_label=max(CALCIUM_LABELS))
    parts = []
    for label in CALCIUM_LABELS:
        box = boxes[label - 1]
        if box is None:
            continue
        mask = (lab[box] == label) & conv.calcium_mask(hu[box])
        if not mask.any():
            continue
        parts.append(_measure_lesions(mask, hu[box], box, label, volume, conv, norm, cal))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=_COLUMN_DTYPES[c]) for c in LESION_COLUMNS})
    table = pd.concat(parts, ignore_index=True)
    table.insert(0, "lesion", np.arange(1, len(table) + 1))
    return table[list(LESION_COLUMNS)]


_COLUMN_DTYPES = {c: float for c in LESION_COLUMNS} | {
    "lesion": int,
    "label": object,
    "n_voxels": int,
    "first_slice": int,
    "last_slice": int,
}


def _measure_lesions(
    mask: np.ndarray,
    hu: np.ndarray,
    box: tuple[slice, ...],
    label: Label,
    volume: CTVolume,
    conv: AgatstonConvention,
    norm: float,
    cal: MassCalibration | None,
) -> pd.DataFrame:
    """Measure the lesions of one label inside its bounding box ``box``."""
    components, n = ndimage.label(mask, structure=conv.structure())
    idx = np.flatnonzero(components)
    comp = components.ravel()[idx] - 1  # 0-based lesion index
    values = hu.ravel()[idx].astype(np.float64)
    z, y, x = np.unravel_index(idx, mask.shape)
    _, dy, dx = volume.spacing_mm
    pixel_area_mm2 = dy * dx
    n_vox = np.bincount(comp, minlength=n)
    sum_hu = np.bincount(comp, weights=values, minlength=n)
    centroid = (
        np.stack([np.bincount(comp, weights=c, minlength=n) for c in (z, y, x)], axis=1)
        / n_vox[:, None]
    )

    # Per (lesion, slice): area and maximum HU. Sorting by (lesion, slice) groups both levels.
    nz = mask.shape[0]
    key = comp.astype(np.int64) * nz + z
    order = np.argsort(key, kind="stable")
    skey = key[order]
    starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
    slice_max = np.maximum.reduceat(values[order], starts)
    slice_area = np.diff(np.r_[starts, skey.size]) * pixel_area_mm2
    slice_lesion, slice_z = np.divmod(skey[starts], nz)
    lesion_starts = np.flatnonzero(
        np.r_[True, slice_lesion[1:] != slice_lesion[:-1]]
    )  # one per lesion
    max_hu = np.maximum.reduceat(slice_max, lesion_starts)
    first = slice_z[lesion_starts]
    last = np.maximum.reduceat(slice_z, lesion_starts)
    slice_score = slice_area * density_factor(slice_max)
    if conv.lesions == "3d":
        slice_score = np.where(slice_area >= conv.min_area_mm2, slice_score, 0.0)
    agatston = np.bincount(slice_lesion, weights=slice_score, minlength=n) * norm

    volume_mm3 = n_vox * volume.voxel_volume_mm3
    keep = volume_mm3 >= conv.min_volume_mm3
    if conv.lesions == "2d":
        keep &= n_vox * pixel_area_mm2 >= conv.min_area_mm2
    mean_hu = sum_hu / n_vox
    mass = cal.mass_mg(mean_hu, volume_mm3) if cal is not None else np.full(n, np.nan)
    offset = np.array([s.start for s in box], float)
    physical = volume.index_to_physical(centroid + offset)
    table = pd.DataFrame(
        {
            "label": label.name,
            "n_voxels": n_vox,
            "volume_mm3": volume_mm3,
            "max_hu": max_hu,
            "mean_hu": mean_hu,
            "agatston": agatston,
            "mass_mg": mass,
            "centroid_x_mm": physical[:, 2],  # index_to_physical returns LPS (z, y, x)
            "centroid_y_mm": physical[:, 1],
            "centroid_z_mm": physical[:, 0],
            "first_slice": first + box[0].start,
            "last_slice": last + box[0].start,
        }
    )
    dropped = int((~keep).sum())
    if dropped:
        log.debug("%s: dropped %d of %d lesions below the minimum size", label.name, dropped, n)
    return table[keep].sort_values(["first_slice", "centroid_y_mm", "centroid_x_mm"], kind="stable")


# ---------------------------------------------------------------------------------- scores
@dataclass(frozen=True)
class LabelScore:
    """The scores of one label (or of CAC)."""

    agatston: float
    volume_mm3: float
    mass_mg: float
    n_lesions: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "agatston": _json_float(self.agatston),
            "volume_mm3": _json_float(self.volume_mm3),
            "mass_mg": _json_float(self.mass_mg),
            "n_lesions": int(self.n_lesions),
        }


@dataclass(frozen=True, eq=False)
class Scores:
    """Scores of one scan: ``scores["LAD"]`` ... ``scores["MV"]``, ``scores["CAC"]``.

    ``lesions`` is the :func:`lesion_table` the scores were summed from.
    """

    labels: Mapping[str, LabelScore]
    convention: AgatstonConvention
    calibration: MassCalibration | None = None
    lesions: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def __getitem__(self, name: str | Label) -> LabelScore:
        key = name.name if isinstance(name, Label) else str(name).upper()
        try:
            return self.labels[key]
        except KeyError:
            raise KeyError(f"no score named {name!r}; names: {', '.join(self.labels)}") from None

    @property
    def cac_agatston(self) -> float:
        return self.labels["CAC"].agatston

    @property
    def risk_category(self) -> str:
        """Risk category I-IV of the total CAC Agatston score."""
        return risk_category(self.cac_agatston)

    def to_frame(self) -> pd.DataFrame:
        """One row per label and CAC: agatston, volume_mm3, mass_mg, n_lesions."""
        rows = {
            k: {
                "agatston": s.agatston,
                "volume_mm3": s.volume_mm3,
                "mass_mg": s.mass_mg,
                "n_lesions": s.n_lesions,
            }
            for k, s in self.labels.items()
        }
        df = pd.DataFrame.from_dict(rows, orient="index")
        df.index.name = "label"
        return df

    def to_dict(self, scan: str | None) -> dict[str, Any]:
        """The JSON shape of ``calcscore agatston --json`` (``nan`` becomes ``None``)."""
        return {
            "scan": scan,
            "labels": {k: s.to_dict() for k, s in self.labels.items()},
            "risk_category": self.risk_category,
        }


def _json_float(v: float) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def agatston(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    calibration: MassCalibration | float | None = None,
) -> Scores:
    """Agatston, volume (mm^3) and mass (mg) scores per label and for CAC.

    Args:
        volume: the scan in HU.
        labels: its calcium labels, on the grid of ``volume``.
        convention: an :class:`AgatstonConvention` or a preset name (``"lessmann2018"``,
            ``"agatston1990"``, ``"clinical"``).
        calibration: a :class:`MassCalibration` or a factor in mgHA/cm^3 per HU (water at
            0 HU); without it every ``mass_mg`` is nan.

    Returns:
        the :class:`Scores` of every label and of CAC, with the lesion table they were summed
        from.
    """
    conv = as_convention(convention)
    cal = as_calibration(calibration)
    table = lesion_table(volume, labels, convention=conv, calibration=cal)
    return scores_from_lesions(table, convention=conv, calibration=cal)


def scores_from_lesions(
    table: pd.DataFrame,
    *,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    calibration: MassCalibration | None = None,
) -> Scores:
    """Sum a :func:`lesion_table` into per-label and CAC :class:`Scores`.

    Args:
        table: a :func:`lesion_table`.
        convention: the convention the table was measured with (an :class:`AgatstonConvention`
            or a preset name).
        calibration: the mass calibration the table was measured with; None makes every
            ``mass_mg`` nan.

    Returns:
        the :class:`Scores` (a label without lesions scores 0).
    """
    conv = as_convention(convention)
    sums = table.groupby("label")[["agatston", "volume_mm3", "mass_mg"]].sum(min_count=1)
    counts = table.groupby("label").size()
    no_mass = math.nan if calibration is None else 0.0
    out: dict[str, LabelScore] = {}
    for label in CALCIUM_LABELS:
        name = label.name
        if name in sums.index:
            row = sums.loc[name]
            out[name] = LabelScore(
                float(row["agatston"]),
                float(row["volume_mm3"]),
                float(row["mass_mg"]) if calibration is not None else math.nan,
                int(counts[name]),
            )
        else:
            out[name] = LabelScore(0.0, 0.0, no_mass, 0)
    cac = [out[lab.name] for lab in CAC_LABELS]
    out["CAC"] = LabelScore(
        sum(s.agatston for s in cac),
        sum(s.volume_mm3 for s in cac),
        sum(s.mass_mg for s in cac),
        sum(s.n_lesions for s in cac),
    )
    return Scores(labels=out, convention=conv, calibration=calibration, lesions=table)


def score_report(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    scan: str | None,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    calibration: MassCalibration | float | None = None,
) -> dict[str, Any]:
    """The dict written as ``<scan>_scores.json`` and printed by ``calcscore agatston --json``.

    Args:
        volume: the scan in HU.
        labels: its calcium labels, on the grid of ``volume``.
        scan: the scan's name (the dict's ``"scan"``), or None.
        convention: an :class:`AgatstonConvention` or a preset name (:data:`CONVENTIONS`).
        calibration: a :class:`MassCalibration`, a factor in mgHA/cm^3 per HU, or None.

    Returns:
        ``{"scan": ..., "labels": {"LAD": {"agatston", "volume_mm3", "mass_mg", "n_lesions"},
        ..., "CAC": {...}}, "risk_category": "I" | "II" | "III" | "IV", "cac_drs": {...},
        "ordinal_score": {...}, "beside_cac": {...}}`` (the last three:
        :mod:`calcscore.standards`); undefined numbers are None.
    """
    conv = as_convention(convention)
    scores = agatston(volume, labels, convention=conv, calibration=calibration)
    report = scores.to_dict(scan)
    per_label = {name: s.agatston for name, s in scores.labels.items()}
    report.update(
        report_standards(
            volume,
            labels,
            per_label,
            threshold_hu=conv.threshold_hu,
            min_volume_mm3=conv.min_volume_mm3,
        )
    )
    return report
