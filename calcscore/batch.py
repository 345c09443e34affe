"""Scoring scans and cohorts end to end: read, segment, score, write (``calcscore score``).

For each scan ``<scan_id>`` the output folder receives ``<scan_id>_labels.nii.gz`` (on the
scan's own grid), ``<scan_id>_scores.json`` (the shape of ``calcscore agatston --json``),
``<scan_id>_lesions.csv``, ``<scan_id>_overlay.png`` and ``<scan_id>_report.html`` (with
``pdf``, ``<scan_id>_report.pdf``); the cohort gets ``cohort_summary.csv`` and
``cohort_report.html`` (:mod:`calcscore.report_html`, :mod:`calcscore.report_cohort`). A scan
that fails is reported in the summary and the others go on.

Under ``torchrun`` (environment variables ``RANK`` and ``WORLD_SIZE``) every process scores
its share of the scans (scan i goes to rank i mod world size) on its own GPU (``LOCAL_RANK``),
and rank 0 merges the per-rank summaries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.errors import CalcscoreError, InputError
from calcscore.io import (
    ITK_SUFFIXES,
    atomic_path,
    read_volume,
    strip_suffix,
    suffix_of,
    write_labels,
)
from calcscore.labels import CALCIUM_LABELS
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)

SUMMARY = "cohort_summary.csv"


@dataclass(frozen=True)
class ScanInput:
    scan_id: str
    image: Path
    labels: Path | None = None


def resolve_inputs(inputs: list[str | Path]) -> list[ScanInput]:
    """Image files, DICOM series folders and manifest CSVs -> one :class:`ScanInput` per scan."""
    from calcscore.manifest import read_manifest

    out: list[ScanInput] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise InputError(p, "no such file or folder", "check the path")
        if p.is_file() and p.suffix.lower() == ".csv":
            df = read_manifest(p)
            for row in df.itertuples(index=False):
                lab = getattr(row, "labels", None)
                out.append(
                    ScanInput(
                        str(row.scan_id),
                        Path(row.image),
                        Path(lab) if isinstance(lab, str) and lab else None,
                    )
                )
        elif p.is_dir():
            out.append(ScanInput(p.name, p))
        elif suffix_of(p) in ITK_SUFFIXES:
            out.append(ScanInput(strip_suffix(p), p))
        else:
            raise InputError(
                p,
                "is not an image file, a DICOM folder or a manifest CSV",
                "pass .nii.gz/.mha/.nrrd files, DICOM folders or a manifest .csv",
            )
    seen: dict[str, Path] = {}
    for s in out:
        if s.scan_id in seen:
            raise InputError(
                s.image,
                f"has the same scan id {s.scan_id!r} as {seen[s.scan_id]}",
                "give the inputs distinct names or use a manifest with unique scan ids",
            )
        seen[s.scan_id] = s.image
    return out


def output_paths(out_dir: Path, scan_id: str) -> dict[str, Path]:
    return {
        "labels": out_dir / f"{scan_id}_labels.nii.gz",
        "scores": out_dir / f"{scan_id}_scores.json",
        "lesions": out_dir / f"{scan_id}_lesions.csv",
        "overlay": out_dir / f"{scan_id}_overlay.png",
    }


def write_scan_outputs(
    volume: CTVolume,
    labels: LabelVolume,
    out_dir: Path,
    scan_id: str,
    *,
    convention: str = "lessmann2018",
    overlay: bool = True,
    extra: dict | None = None,
) -> dict:
    """Write the four per-scan outputs; returns the scores dict (with ``extra``'s keys added,
    e.g. what the safety net did)."""
    from calcscore.scoring import lesion_table, score_report
    from calcscore.viz import save_overlay_png

    paths = output_paths(out_dir, scan_id)
    write_labels(labels, paths["labels"])
    report = score_report(volume, labels, scan=scan_id, convention=convention)
    report.update(extra or {})
    with atomic_path(paths["scores"]) as tmp:
        (tmp / paths["scores"].name).write_text(json.dumps(report, indent=2))
    table = lesion_table(volume, labels, convention=convention)
    with atomic_path(paths["lesions"]) as tmp:
        table.to_csv(tmp / paths["lesions"].name, index=False)
    if overlay:
        save_overlay_png(volume, labels, paths["overlay"], title=f"{scan_id}: calcscore labels")
    return report


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
        "heart_top_slice": r.heart_top_z,
        "bone_mm3": round(r.bone_mm3, 1),
    }


def summary_row(
    scan_id: str, report: dict | None, *, seconds: float, error: str | None = None, checks=None
) -> dict:
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
    row["seconds"] = round(seconds, 2)
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


def _dist_info() -> tuple[int, int, int]:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def score_cohort(
    inputs: list[str | Path],
    out_dir: str | Path,
    *,
    model_path: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    convention: str = "lessmann2018",
    overlay: bool = True,
    progress: bool = True,
    force: bool = False,
    cnn2_threshold: float | None = None,
    rim_fill: bool | None = None,
    safety_net: bool | None = None,
    report: bool = True,
    pdf: bool = False,
) -> pd.DataFrame:
    """Score every scan of ``inputs`` into ``out_dir``; returns the cohort summary.

    Every scan first goes through :func:`calcscore.checks.ensure_scorable`: a contrast-enhanced
    scan is refused (reported as failed) unless ``force``; warnings (thick slices, no heart,
    non-HU values, metal) and the kernel class go into the summary. ``precision``: "auto" (bf16 where
    the device has native bf16, see :func:`calcscore.runtime.bf16_supported`), "bf16" or "fp32".
    ``cnn2_threshold``: one CNN2 threshold for all labels instead of the model's own;
    ``rim_fill``: False for the paper's nearest-neighbour mapping back to the scan's grid
    (None: the model's choice, see :func:`calcscore.inference.fill_rim`); ``safety_net``: False
    to keep labels outside their anatomical regions (None: the model's choice, see
    :mod:`calcscore.regions`). ``report``: write each scan's ``<scan>_report.html`` and the
    cohort's ``cohort_report.html``; ``pdf``: print the scan pages to PDF too (needs Chromium,
    checked before any scan is scored; implies ``report``)."""
    from tqdm.auto import tqdm

    from calcscore.checks import ensure_scorable
    from calcscore.inference import InferenceOptions, Model, segment
    from calcscore.report_cohort import reference_scores
    from calcscore.report_html import write_scan_page
    from calcscore.report_pdf import find_pdf_engine
    from calcscore.runtime import resolve_device, resolve_precision

    scans = resolve_inputs(inputs)
    out = Path(out_dir)
    inputs_resolved = {s.image.resolve() for s in scans}
    for s in scans:
        for p in output_paths(out, s.scan_id).values():
            if p.resolve() in inputs_resolved:
                raise InputError(
                    p, "is an input and would be overwritten", "choose another --out folder"
                )
    chromium = find_pdf_engine() if pdf else None
    report = report or pdf
    out.mkdir(parents=True, exist_ok=True)
    rank, world, local = _dist_info()
    device = str(resolve_device(device, local_rank=local))  # one GPU per process under torchrun
    model = Model.load(model_path, device=device)
    opts = InferenceOptions(
        device=device,
        bf16=resolve_precision(precision, device),
        channels_last=True,
        cnn2_threshold=cnn2_threshold,
        rim_fill=rim_fill,
        safety_net=safety_net,
    )
    mine = scans[rank::world]
    rows = []
    for s in tqdm(
        mine,
        desc=f"scoring (rank {rank})" if world > 1 else "scoring",
        unit="scan",
        disable=not progress,
    ):
        t0 = time.perf_counter()
        try:
            volume = read_volume(s.image)
            checks = ensure_scorable(volume, force=force, source=s.image)
            seg = segment(volume, model, opts)
            extra = {"safety_net": safety_net_summary(seg)}
            if s.labels is not None:  # the manifest's reference annotation
                extra["reference"] = reference_scores(volume, s.labels, convention=convention)
            scores = write_scan_outputs(
                volume,
                seg.labels,
                out,
                s.scan_id,
                convention=convention,
                overlay=overlay,
                extra=extra,
            )
            if report:
                write_scan_page(scores, volume, seg.labels, out, checks=checks, model=model)
            rows.append(
                summary_row(s.scan_id, scores, seconds=time.perf_counter() - t0, checks=checks)
            )
        except CalcscoreError as exc:
            log.error("%s failed: %s", s.scan_id, exc)
            rows.append(
                summary_row(s.scan_id, None, seconds=time.perf_counter() - t0, error=str(exc))
            )
        except Exception as exc:  # report and go on with the rest of the cohort
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            log.error("%s failed: %s", s.scan_id, msg)
            rows.append(summary_row(s.scan_id, None, seconds=time.perf_counter() - t0, error=msg))
    frame = pd.DataFrame(rows, columns=list(summary_row("x", None, seconds=0).keys()))
    if chromium is not None:
        _print_pdfs(frame, out, chromium)
    if world == 1:
        write_csv(frame, out / SUMMARY)
        _cohort_page(frame, out, report)
        return frame
    write_csv(frame, out / f"cohort_summary.rank{rank}.csv")
    _barrier()
    if rank == 0:
        parts = [pd.read_csv(out / f"cohort_summary.rank{r}.csv") for r in range(world)]
        merged = pd.concat(parts, ignore_index=True)
        order = {s.scan_id: i for i, s in enumerate(scans)}
        merged = merged.sort_values("scan_id", key=lambda c: c.map(order)).reset_index(drop=True)
        write_csv(merged, out / SUMMARY)
        _cohort_page(merged, out, report)
        for r in range(world):
            (out / f"cohort_summary.rank{r}.csv").unlink(missing_ok=True)
        return merged
    return frame


def _print_pdfs(frame: pd.DataFrame, out: Path, chromium) -> None:
    """<scan>_report.pdf of every scan of ``frame`` that was scored (one Chromium for all)."""
    from calcscore.report_pdf import html_to_pdf

    ids = frame.loc[frame["status"] == "ok", "scan_id"]
    html_to_pdf(
        [(out / f"{i}_report.html", out / f"{i}_report.pdf") for i in ids], chromium=chromium
    )


def _cohort_page(frame: pd.DataFrame, out: Path, report: bool) -> None:
    if report:
        from calcscore.report_cohort import write_cohort_report

        write_cohort_report(frame, out)


def _barrier() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp / path.name, index=False)
