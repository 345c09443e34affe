"""Calcium scores from a CT scan and a voxel label map: Agatston, volume and mass.

Every score is computed per label (LAD, LCX, RCA, TAC, AV, MV), for CAC (= LAD + LCX + RCA,
the sum of the three arteries' lesions) and summarised per subject as a risk category.

The calcium of a label is every voxel that carries the label *and* lies above the calcium
threshold (130 HU by default). Lesions are connected components of that mask, one label at a
time, so a calcification that touches two vessels counts once per vessel.

How an Agatston score is computed differs between tools; :class:`AgatstonConvention` holds the
choices, with named presets (see :data:`CONVENTIONS`):

``"lessmann2018"`` (default)
    The authors' convention (Lessmann et al., IEEE TMI 2018; their published code): 3D lesions
    of 26-connected voxels >= 130 HU, lesions under 1.5 mm^3 dropped; for each axial slice of a
    lesion, area x density factor of that slice's maximum HU; the sum x slice spacing / 3 mm.
``"agatston1990"``
    Agatston et al., J Am Coll Cardiol 1990;15:827-32 (electron-beam CT, contiguous 3 mm
    slices): lesions are 2D per slice, voxels > 130 HU, at least 1 mm^2; we use 8-connected
    pixels (the paper does not say; 8 is what most tools use, see van Ooijen et al., Eur Radiol
    2005;15:102-10) and slice thickness / 3 mm for the normalisation (1 on the original
    contiguous 3 mm slices).
``"clinical"``
    What clinical workstations do (e.g. the syngo Calcium Scoring operating instructions:
    density factor 1 from 130 HU inclusive, per-slice lesion areas, an "equivalent" score for
    overlapping or non-3 mm slices): 2D 8-connected lesions per slice, >= 130 HU, at least
    1 mm^2, slice spacing / 3 mm.

The density factor is 1 for a maximum of 130-199 HU, 2 for 200-299, 3 for 300-399 and 4 for
400 HU or more (Agatston 1990), whatever the threshold.

Mass (mg hydroxyapatite) = calibration factor x (mean HU - water HU) x volume
(McCollough et al., Radiology 2007;243:527-38, with water at 0 HU); see
:class:`MassCalibration`. Without a calibration the mass is ``nan``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.errors import InputError
from calcscore.labels import CAC_LABELS, CALCIUM_LABELS, Label
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

#: The slice thickness (mm) the Agatston score was defined on.
AGATSTON_REFERENCE_THICKNESS_MM = 3.0
#: Lower bounds (HU) of density factors 1, 2, 3 and 4.
DENSITY_FACTOR_BOUNDS_HU = (130.0, 200.0, 300.0, 400.0)
#: Risk categories from the total CAC Agatston score: name -> inclusive upper bound.
RISK_CATEGORY_UPPER_BOUNDS: dict[str, float] = {
    "I": 10.0,
    "II": 100.0,
    "III": 1000.0,
    "IV": math.inf,
}
RISK_CATEGORIES: tuple[str, ...] = tuple(RISK_CATEGORY_UPPER_BOUNDS)
#: Names of the per-label entries of :class:`Scores`, in report order.
SCORE_NAMES: tuple[str, ...] = tuple(lab.name for lab in CALCIUM_LABELS) + ("CAC",)

_CONNECTIVITY_RANK_3D = {6: 1, 18: 2, 26: 3}
_CONNECTIVITY_RANK_2D = {4: 1, 8: 2}


# ----------------------------------------------------------------------------------- convention
@dataclass(frozen=True, kw_only=True)
class AgatstonConvention:
    """How lesions are found and an Agatston score is computed. See the module docstring.

    Attributes:
        name: a short name for reports.
        threshold_hu: calcium threshold in HU.
        inclusive: ``True`` counts voxels >= ``threshold_hu``; ``False`` counts > ``threshold_hu``.
        lesions: ``"3d"`` for 3D connected components, ``"2d"`` for components within each
            axial slice.
        connectivity: 6, 18 or 26 for 3D lesions; 4 or 8 for 2D lesions.
        min_volume_mm3: 3D lesions smaller than this are dropped from every score (3D only).
        min_area_mm2: for 2D lesions, components smaller than this are dropped from every
            score; for 3D lesions, a slice of a lesion smaller than this adds no Agatston score
            (its voxels still count in volume and mass).
        normalisation: multiply the summed area x factor by ``"spacing"`` (slice spacing / 3 mm),
            ``"thickness"`` (slice thickness / 3 mm, from ``CTVolume.meta``) or ``"none"``.
    """

    name: str = "custom"
    threshold_hu: float = CALCIUM_THRESHOLD_HU
    inclusive: bool = True
    lesions: Literal["3d", "2d"] = "3d"
    connectivity: int = 26
    min_volume_mm3: float = 1.5
    min_area_mm2: float = 0.0
    normalisation: Literal["spacing", "thickness", "none"] = "spacing"

    def __post_init__(self) -> None:
        if self.lesions not in ("3d", "2d"):
            raise ValueError(f"`lesions` must be '3d' or '2d', got {self.lesions=}")
        valid = _CONNECTIVITY_RANK_3D if self.lesions == "3d" else _CONNECTIVITY_RANK_2D
        if self.connectivity not in valid:
            raise ValueError(
                f"`connectivity` for {self.lesions} lesions must be one of "
                f"{sorted(valid)}, got {self.connectivity=}"
            )
        if self.normalisation not in ("spacing", "thickness", "none"):
            raise ValueError(
                f"`normalisation` must be 'spacing', 'thickness' or 'none', got {self.normalisation=}"
            )
        if not (np.isfinite(self.threshold_hu)):
            raise ValueError(f"`threshold_hu` must be finite, got {self.threshold_hu=}")
        if self.min_volume_mm3 < 0 or self.min_area_mm2 < 0:
            raise ValueError(
                f"minimum sizes must be >= 0, got {self.min_volume_mm3=}, {self.min_area_mm2=}"
            )
        if self.lesions == "2d" and self.min_volume_mm3 > 0:
            raise ValueError(
                f"2D lesions have no volume criterion; set min_volume_mm3=0 "
                f"(got {self.min_volume_mm3=}) and use min_area_mm2"
            )

    @classmethod
    def preset(cls, name: str) -> AgatstonConvention:
        """A named convention: one of :data:`CONVENTIONS`."""
        try:
            return CONVENTIONS[name.strip().lower()]
        except KeyError:
            raise ValueError(
                f"unknown Agatston convention {name!r}; known: {', '.join(CONVENTIONS)}"
            ) from None

    def with_options(self, **changes: Any) -> AgatstonConvention:
        """A copy with some options changed (named ``"custom"`` unless ``name`` is given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)

    def calcium_mask(self, hu: np.ndarray) -> np.ndarray:
        return hu >= self.threshold_hu if self.inclusive else hu > self.threshold_hu

    def structure(self) -> np.ndarray:
        """The ``scipy.ndimage.label`` structuring element (3 x 3 x 3) of this convention."""
        if self.lesions == "3d":
            return ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK_3D[self.connectivity])
        s = np.zeros((3, 3, 3), bool)
        s[1] = ndimage.generate_binary_structure(2, _CONNECTIVITY_RANK_2D[self.connectivity])
        return s

    def normalisation_factor(self, volume: CTVolume) -> float:
        """The factor the summed area x density factor is multiplied by."""
        if self.normalisation == "none":
            return 1.0
        if self.normalisation == "spacing":
            return volume.spacing_mm[0] / AGATSTON_REFERENCE_THICKNESS_MM
        thickness = volume.meta.slice_thickness_mm
        if thickness is None or not thickness > 0:
            raise InputError(
                None,
                "the Agatston convention normalises by slice thickness, but the scan "
                "carries no slice thickness",
                "set CTMeta.slice_thickness_mm, or use a convention with normalisation='spacing'",
            )
        return float(thickness) / AGATSTON_REFERENCE_THICKNESS_MM


CONVENTIONS: dict[str, AgatstonConvention] = {
    "lessmann2018": AgatstonConvention(name="lessmann2018"),
    "agatston1990": AgatstonConvention(
        name="agatston1990",
        inclusive=False,
        lesions="2d",
        connectivity=8,
        min_volume_mm3=0.0,
        min_area_mm2=1.0,
        normalisation="thickness",
    ),
    "clinical": AgatstonConvention(
        name="clinical",
        lesions="2d",
        connectivity=8,
        min_volume_mm3=0.0,
        min_area_mm2=1.0,
        normalisation="spacing",
    ),
}
DEFAULT_CONVENTION = "lessmann2018"


def density_factor(max_hu: np.ndarray | float) -> np.ndarray:
    """Agatston density factor (1-4) of a maximum HU; 0 below 130 HU."""
    return np.searchsorted(
        np.asarray(DENSITY_FACTOR_BOUNDS_HU), np.asarray(max_hu, float), side="right"
    )


def _as_convention(convention: AgatstonConvention | str) -> AgatstonConvention:
    if isinstance(convention, AgatstonConvention):
        return convention
    return AgatstonConvention.preset(str(convention))


# ---------------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class MassCalibration:
    """Linear HU -> mg hydroxyapatite (HA) per cm^3 calibration.

    density (mgHA/cm^3) = ``factor_mg_per_cm3_per_hu`` x (HU - ``water_hu``), so a lesion's mass
    is factor x (mean HU - water HU) x volume. With ``water_hu=0`` this is the standard mass
    score (McCollough et al. 2007) with a given calibration factor.

    :meth:`from_inserts` measures both points, so the line passes through the measured water
    value: on the real QRM scan in ``shared/data`` water reads 29 HU, and the three large inserts
    come out 10-12 % heavy with the measured zero point but 20-29 % heavy with water at 0 HU.
    """

    factor_mg_per_cm3_per_hu: float
    water_hu: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.factor_mg_per_cm3_per_hu) and self.factor_mg_per_cm3_per_hu > 0):
            raise ValueError(
                f"`factor_mg_per_cm3_per_hu` must be > 0, got {self.factor_mg_per_cm3_per_hu=}"
            )
        if not np.isfinite(self.water_hu):
            raise ValueError(f"`water_hu` must be finite, got {self.water_hu=}")

    @classmethod
    def from_inserts(
        cls,
        volume: CTVolume,
        insert_mask: np.ndarray,
        water_mask: np.ndarray,
        *,
        insert_density_mg_per_cm3: float = 200.0,
    ) -> MassCalibration:
        """Measure the calibration from an insert of known HA density and a water insert.

        ``insert_mask`` and ``water_mask`` are boolean arrays on the grid of ``volume`` (keep
        them away from the inserts' edges to avoid partial volume). The factor is
        ``insert_density_mg_per_cm3 / (mean HU of insert - mean HU of water)``.
        """
        insert_hu = _masked_mean_hu(volume, insert_mask, "insert_mask")
        water_hu = _masked_mean_hu(volume, water_mask, "water_mask")
        if not insert_hu > water_hu:
            raise ValueError(
                f"the calibration insert ({insert_hu:.1f} HU) must be denser than water "
                f"({water_hu:.1f} HU); check the masks"
            )
        factor = insert_density_mg_per_cm3 / (insert_hu - water_hu)
        log.info(
            "mass calibration: insert %.1f HU, water %.1f HU -> %.4g mg/cm3 per HU",
            insert_hu,
            water_hu,
            factor,
        )
        return cls(factor_mg_per_cm3_per_hu=factor, water_hu=water_hu)

    def mass_mg(self, mean_hu: np.ndarray | float, volume_mm3: np.ndarray | float) -> np.ndarray:
        return (
            self.factor_mg_per_cm3_per_hu
            * (np.asarray(mean_hu, float) - self.water_hu)
            * np.asarray(volume_mm3, float)
            / 1000.0
        )


def _masked_mean_hu(volume: CTVolume, mask: np.ndarray, name: str) -> float:
    m = np.asarray(mask, bool)
    if m.shape != volume.shape:
        raise ValueError(
            f"`{name}` must have the shape of the volume {volume.shape}, got {m.shape}"
        )
    if not m.any():
        raise ValueError(f"`{name}` selects no voxel")
    return float(volume.hu[m].mean(dtype=np.float64))


def _as_calibration(calibration: MassCalibration | float | None) -> MassCalibration | None:
    if calibration is None or isinstance(calibration, MassCalibration):
        return calibration
    return MassCalibration(float(calibration))


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

    Columns: ``lesion`` (1..n), ``label`` (name, e.g. "LAD"), ``n_voxels``, ``volume_mm3``,
    ``max_hu``, ``mean_hu``, ``agatston``, ``mass_mg`` (nan without calibration),
    ``centroid_x_mm``, ``centroid_y_mm``, ``centroid_z_mm`` (patient LPS), ``first_slice`` and
    ``last_slice`` (array index k). A float ``calibration`` is a factor in mgHA/cm^3 per HU.
    """
    conv = _as_convention(convention)
    cal = _as_calibration(calibration)
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

    ``labels`` must share the grid of ``volume``. ``convention`` is an
    :class:`AgatstonConvention` or a preset name (``"lessmann2018"``, ``"agatston1990"``,
    ``"clinical"``). ``calibration`` is a :class:`MassCalibration` or a factor in mgHA/cm^3 per
    HU (water at 0 HU); without it every ``mass_mg`` is nan.
    """
    conv = _as_convention(convention)
    cal = _as_calibration(calibration)
    table = lesion_table(volume, labels, convention=conv, calibration=cal)
    return scores_from_lesions(table, convention=conv, calibration=cal)


def scores_from_lesions(
    table: pd.DataFrame,
    *,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    calibration: MassCalibration | None = None,
) -> Scores:
    """Sum a :func:`lesion_table` into per-label and CAC :class:`Scores`."""
    conv = _as_convention(convention)
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

    ``{"scan": ..., "labels": {"LAD": {"agatston", "volume_mm3", "mass_mg", "n_lesions"}, ...,
    "CAC": {...}}, "risk_category": "I" | "II" | "III" | "IV", "cac_drs": {...},
    "ordinal_score": {...}, "beside_cac": {...}}`` (the last three: :mod:`calcscore.standards`);
    undefined numbers are None.
    """
    conv = _as_convention(convention)
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


# ---------------------------------------------------------------------------------- risk
def risk_category(cac_agatston: float) -> str:
    """Risk category of a total CAC Agatston score: I 0-10, II 11-100, III 101-1000, IV > 1000.

    Upper bounds are inclusive (10 is I, 10.5 is II).
    """
    score = float(cac_agatston)
    if not math.isfinite(score) or score < 0:
        raise ValueError(f"`cac_agatston` must be a finite score >= 0, got {cac_agatston!r}")
    return next(name for name, upper in RISK_CATEGORY_UPPER_BOUNDS.items() if score <= upper)


def risk_categories(cac_agatston: np.ndarray | pd.Series | list[float]) -> np.ndarray:
    """:func:`risk_category` of each score, as an array of strings."""
    return np.array(
        [risk_category(s) for s in np.asarray(cac_agatston, float).ravel()], dtype=object
    )
