"""What a build measures with a trained model: CNN2's thresholds and the rim margin (chosen on
validation participants) and the held-out test figures (pooled over scans, per label group,
soft and sharp separately, with :func:`calcscore.metrics.evaluate`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from calcscore.calibration import (
    choose_lesion_fill,
    choose_rim_sigmas,
    choose_thresholds,
    collect_cnn2_scores,
)
from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.inference import InferenceOptions, Model, rim_threshold_hu, segment
from calcscore.metrics import ScanCase, evaluate
from calcscore.pipeline.cohort import cohort_scans
from calcscore.volume import CTVolume

log = logging.getLogger(__name__)

POOLED = ("sensitivity_pooled", "fp_volume_mm3_mean", "f1_pooled")
VARIANTS = ("cases", "cnn1_alone", "cnn2_at_0.5", "without_rim_fill")


def finite(x: float) -> float | None:
    """``x`` as a float, or None (JSON null) where it is undefined (NaN, e.g. no reference calcium)."""
    return float(x) if np.isfinite(x) else None


def figures(summary: pd.DataFrame, groups: Sequence[str], keys: Sequence[str] = POOLED) -> dict:
    """Figures of the label groups present in a summary.

    Args:
        summary: a calcscore.metrics ``Evaluation.summary``.
        groups: label groups ("CAC", "TAC", ...).
        keys: its columns to keep.

    Returns:
        ``{group: {key: value}}``, undefined values as None.
    """
    return {g: {k: finite(summary.loc[g, k]) for k in keys} for g in groups if g in summary.index}


def all_calcium(confusion: pd.DataFrame, n_scans: int) -> dict[str, float | None]:
    """Sensitivity and mean FP volume of 'any calcium label' (the paper's CNN1-alone figures),
    from a summed label confusion in mm^3 (reference rows, prediction columns, background first)."""
    c = confusion.to_numpy()
    tp, fn, fp = c[1:, 1:].sum(), c[1:, 0].sum(), c[0, 1:].sum()
    return {
        "sensitivity_pooled": finite(tp / (tp + fn)) if tp + fn else None,
        "fp_volume_mm3_mean": float(fp / max(n_scans, 1)),
    }


def _segment_cases(model: Model, scans, device: str) -> tuple[dict, list[float]]:
    """Segment every scan once and label it four ways.

    Args:
        model: the model.
        scans: :class:`calcscore.phantom.CohortScan` objects.
        device: where inference runs.

    Returns:
        ``({variant: {kernel: [ScanCase]}}, seconds per scan)``; the variants: the model as
        is, CNN1 alone, CNN2 at 0.5, without the rim fill.
    """
    cases: dict = {v: {"soft": [], "sharp": []} for v in VARIANTS}
    seconds = []
    for cs in scans:
        t = time.perf_counter()
        seg = segment(cs.volume, model, InferenceOptions(device=device, channels_last=True))
        seconds.append(time.perf_counter() - t)
        labels = {
            "cases": seg.labels,
            "cnn1_alone": seg.cnn1_labels(cs.volume),
            "cnn2_at_0.5": seg.labels_at(cs.volume, 0.5),
            "without_rim_fill": seg.labels_at(cs.volume, model.cnn2_thresholds, rim_fill=False),
        }
        for v in VARIANTS:
            cases[v][cs.kernel].append(ScanCase(cs.scan_id, cs.labels, labels[v], cs.volume))
    return cases, seconds


def _kernel_figures(cases: dict, kernel: str, groups: Sequence[str]) -> dict[str, Any]:
    """The figures of one kernel.

    Args:
        cases: from :func:`_segment_cases`.
        kernel: "soft" or "sharp".
        groups: label groups of the comparisons.

    Returns:
        Per label, CNN1 alone, CNN2 at 0.5, without the rim fill, the label confusion and the
        risk-category agreement.
    """
    ev = evaluate(cases["cases"][kernel])
    n = len(cases["cases"][kernel])
    res: dict[str, Any] = {
        "n_scans": n,
        "report": ev.report(),
        "label_confusion_mm3": ev.label_confusion.round(1).values.tolist(),
    }
    ev1 = evaluate(cases["cnn1_alone"][kernel])
    res["cnn1_alone"] = {
        **figures(ev1.summary, ("CAC", "TAC")),
        "all_calcium": all_calcium(ev1.label_confusion, n),
    }
    res["cnn2_at_0.5"] = figures(evaluate(cases["cnn2_at_0.5"][kernel]).summary, groups)
    res["without_rim_fill"] = figures(evaluate(cases["without_rim_fill"][kernel]).summary, groups)
    res["all_calcium"] = all_calcium(ev.label_confusion, n)
    res.update(
        figures(
            ev.summary,
            ev.summary.index,
            POOLED + ("sensitivity_mean", "f1_mean", "ref_volume_mm3_mean"),
        )
    )
    agreement = ev.risk_agreement()
    if agreement is not None:
        table, kappa = agreement
        res.update(
            kappa=finite(kappa.kappa),
            category_agreement=finite(kappa.agreement),
            risk_confusion=table.astype(int).values.tolist(),
        )
    return res


def evaluate_model(
    model: Model,
    indices: Sequence[int],
    *,
    seed: int,
    size: str,
    device: str,
    groups: Sequence[str] = ("CAC", "TAC", "AV", "MV"),
    workers: int = 1,
    anatomy: str = "v2",
) -> dict[str, Any]:
    """The model's figures on held-out participants, soft and sharp separately.

    Args:
        model: the model to measure.
        indices: the participants (never trained on).
        seed: the cohort's seed.
        size: their scans' size.
        device: where inference runs.
        groups: label groups of the CNN2-at-0.5 and no-rim-fill comparisons.
        workers: processes that generate the phantoms.
        anatomy: the phantoms' anatomy, "v2" or "v1".

    Returns:
        ``{"soft": {...}, "sharp": {...}, "inference_seconds_mean", "n_participants"}``.
    """
    scans = cohort_scans(indices, seed=seed, size=size, workers=workers, anatomy=anatomy)
    cases, seconds = _segment_cases(model, scans, device)
    out: dict[str, Any] = {
        "inference_seconds_mean": float(np.mean(seconds)),
        "n_participants": len(indices),
    }
    for kernel in ("soft", "sharp"):
        if cases["cases"][kernel]:
            out[kernel] = _kernel_figures(cases, kernel, groups)
    return out


def calibrate(
    model: Model, val_scans: list, *, n_scans: int, device: str, precision: str
) -> dict[str, Any]:
    """CNN2's thresholds per label group, chosen on validation scans (calcscore.calibration).

    Args:
        model: the model; the thresholds are set on it.
        val_scans: cached validation scans.
        n_scans: the first N of them (0: all).
        device: where CNN1 and CNN2 run.
        precision: "fp32" or "bf16".

    Returns:
        The model.json keys ``cnn2_thresholds`` and ``cnn2_calibration``.
    """
    scans = val_scans[:n_scans] if n_scans else val_scans
    t = time.perf_counter()
    data = collect_cnn2_scores(model.cnn1, model.cnn2, scans, device=device, precision=precision)
    thresholds, table = choose_thresholds(data)
    model.cnn2_thresholds = thresholds
    return {
        "cnn2_thresholds": thresholds,
        "cnn2_calibration": {
            "scans": [s.scan_id for s in scans],
            "table": table.reset_index().to_dict(orient="records"),
            "seconds": time.perf_counter() - t,
        },
    }


def choose_rim(
    model: Model,
    val_ids: Sequence[str],
    *,
    n_participants: int,
    seed: int,
    groups: Callable[[list[int]], dict[str, list[int]]],
    device: str,
    workers: int = 1,
    anatomy: str = "v2",
    insert_fraction: float = 0.0,
    lesion_fill: bool = False,
    hybrids: Sequence[tuple[str, CTVolume, np.ndarray]] = (),
) -> dict[str, Any]:
    """The rim fill's noise margin chosen on validation participants (calcscore.calibration),
    and the lesion fill's share after it where ``lesion_fill`` asks, on them and ``hybrids``.

    Args:
        model: the model (its thresholds set); the margin is set on it.
        val_ids: the validation participants ("P0002", ...).
        n_participants: how many of them (0: all).
        seed: the cohort's seed.
        groups: participant numbers grouped by their scan size, as the phantoms stage made
            them (:func:`calcscore.pipeline.stages.by_size`).
        device: where inference runs.
        workers: processes that generate the phantoms.
        anatomy: the phantoms' anatomy, "v2" or "v1".
        insert_fraction: the cohort's share of calcium-insert test objects.
        lesion_fill: choose the lesion fill's share too (:func:`choose_lesion_fill`).
        hybrids: (name, volume, reference labels) of more validation scans for the lesion fill
            alone (:func:`calcscore.pipeline.hybrids.validation_hybrids`), segmented with the
            margin chosen.

    Returns:
        The model.json keys ``rim_fill``, ``rim_sigmas`` and ``rim_choice``; with
        ``lesion_fill`` also ``lesion_fill`` and ``lesion_fill_hu`` (the share and the lesions'
        HU threshold, or None) and ``lesion_fill_choice``.
    """
    ids = sorted(val_ids)[:n_participants] if n_participants else sorted(val_ids)
    t = time.perf_counter()
    cases = []
    for size, part in groups([int(i[1:]) for i in ids]).items():
        for cs in cohort_scans(
            part,
            seed=seed,
            size=size,
            workers=workers,
            anatomy=anatomy,
            insert_fraction=insert_fraction,
        ):
            seg = segment(
                cs.volume,
                model,
                InferenceOptions(device=device, channels_last=True, rim_fill=False),
            )
            cases.append((cs.volume, cs.labels, seg))
    best, table = choose_rim_sigmas(cases)
    model.rim_fill = best is not None
    model.rim_sigmas = best
    out = {
        "rim_fill": best is not None,
        "rim_sigmas": best,
        "rim_choice": {
            "participants": ids,
            "table": table.to_dict(orient="records"),
            "seconds": time.perf_counter() - t,
        },
    }
    if lesion_fill:
        labelled = []  # each scan's labels as the chosen rim fill and the safety net leave them
        for vol, ref, seg in cases:
            seg.rim_min_hu = None if best is None else rim_threshold_hu(vol, best)
            lab = seg.labels_at(vol, model.cnn2_thresholds, rim_fill=best is not None).labels
            labelled.append((vol.hu, ref.labels, lab, seg.regions))
        for _, vol, reference in hybrids:  # the margin chosen and the net, the fill left out
            seg = segment(
                vol, model, InferenceOptions(device=device, channels_last=True, lesion_fill=0)
            )
            labelled.append((vol.hu, reference, seg.labels.labels, seg.regions))
        best_fill, fill_table = choose_lesion_fill(labelled)
        model.lesion_fill, model.lesion_fill_hu = best_fill or (None, CALCIUM_THRESHOLD_HU)
        out["lesion_fill"], out["lesion_fill_hu"] = best_fill or (None, None)
        out["lesion_fill_choice"] = {
            "participants": ids + [name for name, _, _ in hybrids],
            "table": fill_table.to_dict("records"),
        }
    return out
