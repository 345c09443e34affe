"""Detection agreement between a reference and a predicted label map (paper Tables II, IV, V).

The label maps are compared as they are (no HU threshold: the reference annotations and the
network output label candidate voxels >= 130 HU only).

Voxel level, per label and for CAC: the true-positive (TP), false-positive (FP) and
false-negative (FN) calcium volumes in mm^3,

- sensitivity = TP / (TP + FN), the fraction of the reference calcium volume found (``nan``
  when the reference has none),
- FP volume (mm^3), always defined,
- F1 = 2 TP / (2 TP + FP + FN) (``nan`` when neither map has any calcium of the label).

A voxel is a TP of a label when both maps give it that label. CAC pools LAD, LCX and RCA: a
LAD voxel that the prediction calls LCX is a TP of CAC but an FN of LAD and an FP of LCX.

Lesion level (orCaScore, Wolterink et al., Med Phys 2016): lesions are 6-connected components
of a label's voxels in each map; a reference lesion is a TP when the prediction gives any of
its voxels the same label (else an FN); a predicted lesion that touches no reference voxel of
its label is an FP.

Over scans, :func:`summarise` reports both the mean of the per-scan metrics (the paper's
"average per scan") and the metrics of the pooled volumes. Raw counts travel beside every ratio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.labels import CAC_LABELS, CALCIUM_LABELS, Label
from calcscore.lesions import connectivity_structure
from calcscore.scoring import DEFAULT_CONVENTION, AgatstonConvention, agatston, risk_category
from calcscore.stats import BootstrapResult, KappaResult, bootstrap_ci, risk_category_agreement
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

log = logging.getLogger(__name__)

#: The label groups reported: each label, and CAC.
METRIC_GROUPS: dict[str, tuple[Label, ...]] = {lab.name: (lab,) for lab in CALCIUM_LABELS} | {
    "CAC": CAC_LABELS
}
#: Lesion connectivity of the orCaScore lesion counts.
ORCASCORE_CONNECTIVITY = 6

AGREEMENT_COLUMNS = (
    "label",
    "ref_volume_mm3",
    "pred_volume_mm3",
    "tp_volume_mm3",
    "fp_volume_mm3",
    "fn_volume_mm3",
    "sensitivity",
    "precision",
    "f1",
    "ref_lesions",
    "pred_lesions",
    "tp_lesions",
    "fn_lesions",
    "fp_lesions",
)
_N = max(CALCIUM_LABELS) + 1  # labels 0..6


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _volume_metrics(tp: float, fp: float, fn: float) -> dict[str, float]:
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _sparse_pairs(reference: LabelVolume, prediction: LabelVolume):
    """Flat indices of voxels labelled in either map, with both maps' labels there."""
    check_same_geometry(reference, prediction, names=("reference", "prediction"))
    ref, pred = reference.array, prediction.array
    for name, arr in (("reference", ref), ("prediction", pred)):
        if arr.size and arr.max() >= _N:
            raise ValueError(
                f"the {name} label map holds value {int(arr.max())}; calcium labels are 0-6"
            )
    idx = np.flatnonzero(np.logical_or(ref, pred))
    return idx, ref.ravel()[idx].astype(np.int64), pred.ravel()[idx].astype(np.int64)


def _confusion_counts(ref_vals: np.ndarray, pred_vals: np.ndarray) -> np.ndarray:
    return np.bincount(ref_vals * _N + pred_vals, minlength=_N * _N).reshape(_N, _N)


def label_confusion(reference: LabelVolume, prediction: LabelVolume) -> pd.DataFrame:
    """Calcium volume (mm^3) by reference label (rows) and predicted label (columns).

    Rows and columns are background, LAD, LCX, RCA, TAC, AV, MV; the background/background
    cell is 0 (it is not calcium in either map). Summing the frames of many scans gives the
    cohort's confusion between vessels.
    """
    _, ref_vals, pred_vals = _sparse_pairs(reference, prediction)
    counts = _confusion_counts(ref_vals, pred_vals).astype(float) * reference.voxel_volume_mm3
    names = [Label(i).name for i in range(_N)]
    return pd.DataFrame(
        counts, index=pd.Index(names, name="reference"), columns=pd.Index(names, name="prediction")
    )


def detection_agreement(
    reference: LabelVolume,
    prediction: LabelVolume,
    *,
    lesion_connectivity: int = ORCASCORE_CONNECTIVITY,
) -> pd.DataFrame:
    """Voxel- and lesion-level agreement of one scan: one row per label and CAC.

    Columns: ``label``, ``ref_volume_mm3``, ``pred_volume_mm3``, ``tp_volume_mm3``,
    ``fp_volume_mm3``, ``fn_volume_mm3``, ``sensitivity``, ``precision``, ``f1`` (``nan`` where
    undefined), and the lesion counts ``ref_lesions``, ``pred_lesions``, ``tp_lesions``,
    ``fn_lesions``, ``fp_lesions``.

    Args:
        reference: the reference labels.
        prediction: the predicted labels on the same grid.
        lesion_connectivity: 6, 18 or 26: the connectivity of a lesion (orCaScore's 6); a
            lesion is a TP when it overlaps a lesion of the same label group in the other map.

    Returns:
        a DataFrame with one row per label and CAC and the columns above (volumes in mm³).
    """
    idx, ref_vals, pred_vals = _sparse_pairs(reference, prediction)
    counts = _confusion_counts(ref_vals, pred_vals)
    vox_mm3 = reference.voxel_volume_mm3
    coords = (
        np.stack(np.unravel_index(idx, reference.shape), axis=1)
        if idx.size
        else np.zeros((0, 3), int)
    )
    structure = connectivity_structure(lesion_connectivity)
    rows = []
    for name, group in METRIC_GROUPS.items():
        g = np.asarray(group, int)
        tp = counts[np.ix_(g, g)].sum() * vox_mm3
        ref_total = counts[g, :].sum() * vox_mm3
        pred_total = counts[:, g].sum() * vox_mm3
        fn, fp = ref_total - tp, pred_total - tp
        row = {
            "label": name,
            "ref_volume_mm3": ref_total,
            "pred_volume_mm3": pred_total,
            "tp_volume_mm3": tp,
            "fp_volume_mm3": fp,
            "fn_volume_mm3": fn,
        }
        row.update(_volume_metrics(tp, fp, fn))
        in_ref, in_pred = np.isin(ref_vals, g), np.isin(pred_vals, g)
        row.update(
            _lesion_counts(
                reference.array, prediction.array, g, coords[in_ref | in_pred], structure
            )
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))


def _lesion_counts(
    ref: np.ndarray, pred: np.ndarray, group: np.ndarray, coords: np.ndarray, structure: np.ndarray
) -> dict[str, int]:
    if coords.shape[0] == 0:
        return {
            "ref_lesions": 0,
            "pred_lesions": 0,
            "tp_lesions": 0,
            "fn_lesions": 0,
            "fp_lesions": 0,
        }
    lo, hi = coords.min(axis=0), coords.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    ref_m, pred_m = np.isin(ref[box], group), np.isin(pred[box], group)
    ref_c, n_ref = ndimage.label(ref_m, structure=structure)
    pred_c, n_pred = ndimage.label(pred_m, structure=structure)
    hit_ref = np.unique(ref_c[ref_m & pred_m])
    hit_pred = np.unique(pred_c[ref_m & pred_m])
    tp = int(hit_ref.size)
    return {
        "ref_lesions": int(n_ref),
        "pred_lesions": int(n_pred),
        "tp_lesions": tp,
        "fn_lesions": int(n_ref) - tp,
        "fp_lesions": int(n_pred) - int(hit_pred.size),
    }


def summarise(per_scan: pd.DataFrame) -> pd.DataFrame:
    """Summarise per-scan agreement rows (``scan_id``, ``label`` + :data:`AGREEMENT_COLUMNS`).

    One row per label: ``n_scans``, ``n_scans_with_reference``; per-scan means
    ``ref_volume_mm3_mean``, ``sensitivity_mean``, ``fp_volume_mm3_mean``, ``f1_mean`` (scans
    where a metric is ``nan`` are left out of its mean); pooled volumes ``tp_volume_mm3``,
    ``fp_volume_mm3``, ``fn_volume_mm3`` and their ``sensitivity_pooled``, ``f1_pooled``; pooled
    lesion counts and ``lesion_sensitivity`` = TP / (TP + FN) lesions.
    """
    rows = []
    for name in [n for n in METRIC_GROUPS if n in set(per_scan["label"])]:
        d = per_scan[per_scan["label"] == name]
        tp, fp, fn = (
            float(d[c].sum()) for c in ("tp_volume_mm3", "fp_volume_mm3", "fn_volume_mm3")
        )
        pooled = _volume_metrics(tp, fp, fn)
        tpl, fnl, fpl = (int(d[c].sum()) for c in ("tp_lesions", "fn_lesions", "fp_lesions"))
        rows.append(
            {
                "label": name,
                "n_scans": len(d),
                "n_scans_with_reference": int((d["ref_volume_mm3"] > 0).sum()),
                "ref_volume_mm3_mean": float(d["ref_volume_mm3"].mean()),
                "sensitivity_mean": _nanmean(d["sensitivity"]),
                "fp_volume_mm3_mean": float(d["fp_volume_mm3"].mean()),
                "f1_mean": _nanmean(d["f1"]),
                "tp_volume_mm3": tp,
                "fp_volume_mm3": fp,
                "fn_volume_mm3": fn,
                "sensitivity_pooled": pooled["sensitivity"],
                "f1_pooled": pooled["f1"],
                "tp_lesions": tpl,
                "fn_lesions": fnl,
                "fp_lesions": fpl,
                "lesion_sensitivity": _ratio(tpl, tpl + fnl),
            }
        )
    return pd.DataFrame(rows).set_index("label") if rows else pd.DataFrame()


def mean_with_ci(
    per_scan: pd.DataFrame,
    *,
    label: str = "CAC",
    metric: str = "f1",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
) -> BootstrapResult:
    """Mean over scans of one per-scan metric (``nan`` scans left out) with a bootstrap CI over scans.

    E.g. the paper's "average F1 score per scan for CAC of 0.87 (95 % CI 0.85-0.90)".

    Args:
        per_scan: per-scan agreement rows (``Evaluation.per_scan``) with ``label`` and ``metric``.
        label: the row label to average, e.g. "CAC" or "LAD".
        metric: the column, e.g. "f1" or "sensitivity".
        n_resamples: bootstrap resamples of the scans.
        confidence: the CI's coverage, e.g. 0.95.
        rng: a generator or seed for the resampling.

    Returns:
        a :class:`calcscore.stats.BootstrapResult` (all ``nan`` when no scan has a value).
    """
    if metric not in per_scan.columns:
        raise ValueError(f"`metric` must be a column of the per-scan table, got {metric=}")
    values = per_scan.loc[per_scan["label"] == label, metric].to_numpy(float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, n_resamples, confidence)
    return bootstrap_ci(np.mean, values, n_resamples=n_resamples, confidence=confidence, rng=rng)


def _nanmean(values: pd.Series) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


# ---------------------------------------------------------------------------------- cohort
@dataclass(frozen=True)
class ScanCase:
    """One scan to evaluate: reference and predicted label maps, and the CT for Agatston scores."""

    scan_id: str
    reference: LabelVolume
    prediction: LabelVolume
    image: CTVolume | None = None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The result of :func:`evaluate`.

    ``per_scan``: one row per scan and label (agreement columns, plus ``ref_agatston`` and
    ``pred_agatston`` when images were given). ``summary``: :func:`summarise` of it.
    ``risk``: one row per scan with ``ref_cac_agatston``, ``pred_cac_agatston``,
    ``ref_category``, ``pred_category`` (empty without images). ``label_confusion``: summed
    :func:`label_confusion` in mm^3.
    """

    per_scan: pd.DataFrame
    summary: pd.DataFrame
    risk: pd.DataFrame
    label_confusion: pd.DataFrame

    def risk_agreement(self) -> tuple[pd.DataFrame, KappaResult] | None:
        """Table III: risk-category confusion (reference rows) and linear kappa; None without images."""
        if self.risk.empty:
            return None
        return risk_category_agreement(
            self.risk["ref_cac_agatston"], self.risk["pred_cac_agatston"]
        )

    def report(self) -> str:
        """A plain-text summary laid out like the paper's Tables II-V and III."""
        n_scans = self.per_scan["scan_id"].nunique()
        lines = [
            f"Detection agreement, {n_scans} scans (mean per scan; pooled over scans in brackets)",
            f"{'label':<6} {'ref volume mm3':>15} {'sensitivity %':>18} {'FP volume mm3':>14} {'F1':>14}",
        ]
        for name, r in self.summary.iterrows():
            sens = f"{_pct(r['sensitivity_mean'])} ({_pct(r['sensitivity_pooled'])})"
            f1 = f"{_num(r['f1_mean'])} ({_num(r['f1_pooled'])})"
            lines.append(
                f"{name:<6} {r['ref_volume_mm3_mean']:15.1f} {sens:>18} "
                f"{r['fp_volume_mm3_mean']:14.1f} {f1:>14}"
            )
        agreement = self.risk_agreement()
        if agreement is None:
            lines.append("Risk categories: not computed (no CT images to compute Agatston scores)")
            return "\n".join(lines)
        table, kappa = agreement
        lines += [
            "",
            f"Risk categories from CAC Agatston (reference rows, prediction columns), {kappa.n} scans",
            "ref\\pred " + " ".join(f"{c:>5}" for c in table.columns),
        ]
        for cat, row in table.iterrows():
            lines.append(f"{cat:<9} " + " ".join(f"{int(v):5d}" for v in row))
        lines.append(
            f"linearly weighted kappa {_num(kappa.kappa)} (95 % CI {_num(kappa.ci_low)}-"
            f"{_num(kappa.ci_high)}); agreement {_pct(kappa.agreement)} %"
        )
        return "\n".join(lines)


def _pct(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{100 * v:.1f}"


def _num(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.2f}"


def evaluate(
    cases: Iterable[ScanCase],
    *,
    convention: AgatstonConvention | str = DEFAULT_CONVENTION,
    lesion_connectivity: int = ORCASCORE_CONNECTIVITY,
) -> Evaluation:
    """Agreement of every case, summarised; Agatston scores and risk categories where images exist.

    Args:
        cases: the scans (:class:`ScanCase`); at least one.
        convention: the Agatston convention (or its name) for cases with an image.
        lesion_connectivity: as for :func:`detection_agreement`.

    Returns:
        an :class:`Evaluation`: per-scan rows, their summary, risk categories and the summed
        label confusion in mm³.
    """
    frames, risk_rows = [], []
    confusion = None
    for case in cases:
        rows = detection_agreement(
            case.reference, case.prediction, lesion_connectivity=lesion_connectivity
        )
        rows.insert(0, "scan_id", case.scan_id)
        if case.image is not None:
            ref_s = agatston(case.image, case.reference, convention=convention)
            pred_s = agatston(case.image, case.prediction, convention=convention)
            rows["ref_agatston"] = [ref_s[n].agatston for n in rows["label"]]
            rows["pred_agatston"] = [pred_s[n].agatston for n in rows["label"]]
            risk_rows.append(
                {
                    "scan_id": case.scan_id,
                    "ref_cac_agatston": ref_s["CAC"].agatston,
                    "pred_cac_agatston": pred_s["CAC"].agatston,
                    "ref_category": risk_category(ref_s["CAC"].agatston),
                    "pred_category": risk_category(pred_s["CAC"].agatston),
                }
            )
        else:
            rows["ref_agatston"] = math.nan
            rows["pred_agatston"] = math.nan
        frames.append(rows)
        cm = label_confusion(case.reference, case.prediction)
        confusion = cm if confusion is None else confusion + cm
        log.info("evaluated %s", case.scan_id)
    if not frames:
        raise ValueError("no scans to evaluate")
    per_scan = pd.concat(frames, ignore_index=True)
    risk = pd.DataFrame(
        risk_rows,
        columns=[
            "scan_id",
            "ref_cac_agatston",
            "pred_cac_agatston",
            "ref_category",
            "pred_category",
        ],
    )
    return Evaluation(
        per_scan=per_scan, summary=summarise(per_scan), risk=risk, label_confusion=confusion
    )


__all__ = [
    "AGREEMENT_COLUMNS",
    "Evaluation",
    "METRIC_GROUPS",
    "ScanCase",
    "detection_agreement",
    "evaluate",
    "label_confusion",
    "mean_with_ci",
    "summarise",
]
