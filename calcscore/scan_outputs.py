"""What one scored scan leaves in the output folder of ``calcscore score``, and its row of the
cohort summary.

:func:`write_scan_outputs` writes ``<scan_id>_labels.nii.gz``, ``<scan_id>_scores.json``,
``<scan_id>_lesions.csv`` and ``<scan_id>_overlay.png``, all or none; :func:`write_dicom_outputs`
the DICOM SEG and SR of a DICOM input; :func:`summary_row` the scan's row of
``cohort_summary.csv`` (written by :func:`write_csv`). Used by :mod:`calcscore.batch` (which
re-exports these names) and :mod:`calcscore.demo`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.errors import InputError
from calcscore.io import atomic_path, write_labels
from calcscore.labels import CALCIUM_LABELS
from calcscore.volume import CTVolume, LabelVolume


def output_paths(out_dir: Path, scan_id: str) -> dict[str, Path]:
    return {
        "labels": out_dir / f"{scan_id}_labels.nii.gz",
        "scores": out_dir / f"{scan_id}_scores.json",
        "lesions": out_dir / f"{scan_id}_lesions.csv",
        "overlay": out_dir / f"{scan_id}_overlay.png",
    }


def dicom_output_paths(out_dir: Path, scan_id: str) -> dict[str, Path]:
    return {"seg": out_dir / f"{scan_id}_seg.dcm", "sr": out_dir / f"{scan_id}_sr.dcm"}


def write_dicom_outputs(
    labels: LabelVolume,
    report: dict,
    source_series: Path,
    out_dir: Path,
    scan_id: str,
    model_id: dict | None = None,
) -> dict[str, Path]:
    """``<scan>_seg.dcm`` (one segment per label present) and ``<scan>_sr.dcm`` (every score of
    ``report``, referencing the SEG) for a scan read from the DICOM folder ``source_series``.

    Args:
        labels: the scan's calcium labels, on the grid of the source series.
        report: the scan's scores dict (:func:`calcscore.scoring.score_report`).
        source_series: the DICOM folder the scan was read from (the SEG and SR reference it).
        out_dir: the folder to write into.
        scan_id: names the files.
        model_id: the model's identity (:func:`calcscore.bundle.model_identity`), recorded in
            both objects; None records none.

    Returns:
        the paths written, ``{"seg": ..., "sr": ...}``.
    """
    from calcscore.dicom_out import write_seg, write_sr

    paths = dicom_output_paths(out_dir, scan_id)
    write_seg(labels, source_series, paths["seg"], model=model_id)
    write_sr(
        report,
        source_series,
        paths["sr"],
        seg_path=paths["seg"],
        scan_id=scan_id,
        model=model_id,
        named_scores=sr_named_scores(report),
    )
    return paths


def sr_named_scores(report: dict) -> dict[str, str | float]:
    """The scores of a scores.json beyond each label's Agatston, volume and mass, for the SR
    (:func:`calcscore.dicom_out.write_sr` writes every one it is given): a category as text,
    a number as a number."""
    named: dict[str, str | float] = {}
    if report.get("risk_category"):
        named["Risk category"] = str(report["risk_category"])
    if (report.get("cac_drs") or {}).get("label"):
        named["CAC-DRS"] = str(report["cac_drs"]["label"])
    if (report.get("ordinal_score") or {}).get("total") is not None:
        named["Ordinal score"] = float(report["ordinal_score"]["total"])
    return named


def write_scan_outputs(
    volume: CTVolume,
    labels: LabelVolume,
    out_dir: Path,
    scan_id: str,
    *,
    convention: str = "lessmann2018",
    overlay: bool = True,
    extra: dict | None = None,
    not_assessable: str | None = None,
) -> dict:
    """Write the four per-scan outputs, all or none (one temporary folder, moved when all are
    written).

    Args:
        volume: the scan in HU.
        labels: its calcium labels, on the grid of ``volume``.
        out_dir: the folder to write into.
        scan_id: names the files and the scores.
        convention: the Agatston convention (a :data:`calcscore.scoring.CONVENTIONS` name).
        overlay: also write ``<scan_id>_overlay.png``.
        extra: keys added to the scores dict (e.g. what the safety net did).
        not_assessable: why the scan's categories must not be read (see
            :mod:`calcscore.assessment`); None for an assessable scan.

    Returns:
        the scores dict written as ``<scan_id>_scores.json`` (with ``extra``'s keys added).
    """
    from calcscore.assessment import mark_assessable, mark_not_assessable
    from calcscore.orientation import orientation_of
    from calcscore.scoring import lesion_table, score_report
    from calcscore.viz import save_overlay_png

    paths = output_paths(out_dir, scan_id)
    report = score_report(volume, labels, scan=scan_id, convention=convention)
    if not_assessable:
        mark_not_assessable(report, not_assessable)
    else:
        mark_assessable(report)
    report.update(extra or {})
    table = lesion_table(volume, labels, convention=convention)
    try:
        with atomic_path(paths["scores"]) as tmp:
            write_labels(labels, tmp / paths["labels"].name)
            (tmp / paths["scores"].name).write_text(json.dumps(report, indent=2))
            table.to_csv(tmp / paths["lesions"].name, index=False)
            if overlay:
                orient = orientation_of(volume.direction)  # shown as radiologists read it,
                n = volume.shape[0]  # titled with the scan's own slice numbers
                save_overlay_png(
                    orient.apply(volume),
                    orient.apply(labels),
                    tmp / paths["overlay"].name,
                    numbers=[orient.own_slice(k, n) for k in range(n)],
                    title=f"{scan_id}: calcscore labels",
                )
    except OSError as exc:
        raise _write_error(out_dir, exc) from None
    return report


def _write_error(out_dir: Path, exc: OSError) -> InputError:
    """One line for an output that could not be written (a full disk, no permission ...)."""
    why = exc.strerror or type(exc).__name__
    return InputError(
        out_dir,
        f"could not be written ({why}); nothing half-written was left",
        "free disk space or choose a writable --out folder, then run again",
    )


def safety_net_summary(seg) -> dict:
    """What the safety net of a :class:`calcscore.inference.Segmentation` did, for scores.json."""
    r = seg.regions
    if r is None:
        return {"applied": False, "reason": "switched off"}
    if not r.found:
        return {"applied": False, "reason": r.reason}
    return {
        "applied": True,
        "removed_voxels": seg.safety_net_removed,
        "lung_volume_ml": round(r.lung_volume_ml, 1),
        "heart_top_slice": _own_slice(seg, r.heart_top_z),
        "bone_mm3": round(r.bone_mm3, 1),
    }


def _own_slice(seg, z: int | None) -> int | None:
    """Slice ``z`` of the standard layout the networks saw, numbered as the scan's own."""
    return None if z is None else seg.orientation.own_slice(z, seg.labels.shape[0])


def summary_row(
    scan_id: str, report: dict | None, *, seconds: float, error: str | None = None, checks=None
) -> dict:
    """The scan's row of ``cohort_summary.csv``.

    Args:
        scan_id: the scan.
        report: its scores dict, None for a scan that failed.
        seconds: how long the scan took.
        error: why it failed, None when it was scored.
        checks: its :class:`calcscore.checks.CheckReport` (kernel class, warnings, heart
            coverage), None when there is none.

    Returns:
        the row: scores per label, categories, checks, time and memory, error.
    """
    row: dict = {"scan_id": scan_id, "status": "ok" if error is None else "failed"}
    for name in [lab.name for lab in CALCIUM_LABELS] + ["CAC"]:
        d = (report or {}).get("labels", {}).get(name, {})
        row[f"{name}_agatston"] = d.get("agatston", np.nan) if report else np.nan
        row[f"{name}_volume_mm3"] = d.get("volume_mm3", np.nan) if report else np.nan
    row["risk_category"] = (report or {}).get("risk_category")
    row.update(_standards_columns(report))
    row["kernel_class"] = checks.kernel.kernel_class if checks is not None else None
    row["check_warnings"] = (
        "; ".join(f.code for f in checks.findings if f.severity != "info") if checks else None
    )
    row["heart_coverage"] = (
        checks.coverage.status if checks is not None and checks.coverage is not None else None
    )
    row["assessable"] = (report or {}).get("assessable")
    row["not_assessable_reason"] = (report or {}).get("not_assessable_reason")
    row["seconds"] = round(seconds, 2)
    from calcscore.runtime import peak_rss_mb, rss_mb

    row["peak_rss_mb"] = peak_rss_mb()  # this scan's peak (Linux), see calcscore.runtime
    row["rss_mb"] = rss_mb()
    row["error"] = error
    return row


def _standards_columns(report: dict | None) -> dict:
    """CAC-DRS, ordinal score and, where the manifest gave reference labels, the reference's."""
    r = report or {}
    ref = r.get("reference") or {}
    return {
        "cac_drs": (r.get("cac_drs") or {}).get("label"),
        "ordinal_score": (r.get("ordinal_score") or {}).get("total"),
        "ref_CAC_agatston": ref.get("CAC_agatston", np.nan),
        "ref_risk_category": ref.get("risk_category"),
        "ref_cac_drs": ref.get("cac_drs"),
    }


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp / path.name, index=False)
    except OSError as exc:
        raise _write_error(path.parent, exc) from None
