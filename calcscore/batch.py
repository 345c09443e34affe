"""Scoring scans and cohorts end to end: read, segment, score, write (``calcscore score``).

For each scan ``<scan_id>`` the output folder receives ``<scan_id>_labels.nii.gz`` (on the
scan's own grid), ``<scan_id>_scores.json`` (the shape of ``calcscore agatston --json``),
``<scan_id>_lesions.csv`` and ``<scan_id>_overlay.png``; the cohort gets ``cohort_summary.csv``.
A scan that fails is reported in the summary and the others go on.

Under ``torchrun`` (environment variables ``RANK`` and ``WORLD_SIZE``) every process scores
its share of the scans (scan i goes to rank i mod world size) on its own GPU (``LOCAL_RANK``),
and rank 0 merges the per-rank summaries.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.errors import CalcscoreError, InputError
from calcscore.io import (
    ITK_SUFFIXES,
    _is_dicom_file,
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
        elif _is_dicom_file(p):
            raise InputError(
                p,
                "is a single 2D DICOM image, not a volume",
                "pass the folder that holds the whole series",
            )
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
    not_assessable: str | None = None,
) -> dict:
    """Write the four per-scan outputs, all or none (one temporary folder, moved when all are
    written); returns the scores dict (with ``extra``'s keys added, e.g. what the safety net did).

    ``not_assessable``: why the scan's categories must not be read (see
    :mod:`calcscore.assessment`); None for an assessable scan."""
    from calcscore.assessment import mark_assessable, mark_not_assessable
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
                save_overlay_png(
                    volume,
                    labels,
                    tmp / paths["overlay"].name,
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
    :mod:`calcscore.regions`)."""
    from tqdm.auto import tqdm

    from calcscore.inference import InferenceOptions, Model
    from calcscore.runtime import (
        release_memory,
        reset_peak_rss,
        resolve_device,
        resolve_precision,
        rss_mb,
    )

    scans = resolve_inputs(inputs)
    out = Path(out_dir)
    _prepare_out(scans, out)
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
    write = {"convention": convention, "overlay": overlay}
    rows = []
    for s in tqdm(
        mine,
        desc=f"scoring (rank {rank})" if world > 1 else "scoring",
        unit="scan",
        disable=not progress,
    ):
        reset_peak_rss()
        try:
            rows.append(_score_scan(s, out, model, opts, force=force, **write))
        except Exception as exc:  # report and go on with the rest of the cohort
            rows.append(_failed_row(s, exc))
        finally:
            release_memory()  # flat memory over a long cohort (benchmarks/soak_torchrun.py)
            if rows and rows[-1]["scan_id"] == s.scan_id:
                rows[-1]["rss_mb"] = rss_mb()  # what the scan left behind
    frame = pd.DataFrame(rows, columns=list(summary_row("x", None, seconds=0).keys()))
    return _write_summary(frame, out, scans, rank, world)


def _prepare_out(scans: list[ScanInput], out: Path) -> None:
    """Refuse an output folder that would overwrite an input or cannot be written; create it."""
    inputs_resolved = {s.image.resolve() for s in scans}
    for s in scans:
        for p in output_paths(out, s.scan_id).values():
            if p.resolve() in inputs_resolved:
                raise InputError(
                    p, "is an input and would be overwritten", "choose another --out folder"
                )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".calcscore-probe-")
        probe.close()
    except OSError as exc:
        raise InputError(
            out,
            f"cannot be written ({exc.strerror or type(exc).__name__})",
            "choose a writable --out folder",
        ) from None


def _write_summary(
    frame: pd.DataFrame, out: Path, scans: list[ScanInput], rank: int, world: int
) -> pd.DataFrame:
    """Write this process's summary; under torchrun rank 0 merges every rank's, in input order."""
    if world == 1:
        write_csv(frame, out / SUMMARY)
        return frame
    write_csv(frame, out / f"cohort_summary.rank{rank}.csv")
    _barrier()
    if rank == 0:
        parts = [pd.read_csv(out / f"cohort_summary.rank{r}.csv") for r in range(world)]
        merged = pd.concat(parts, ignore_index=True)
        order = {s.scan_id: i for i, s in enumerate(scans)}
        merged = merged.sort_values("scan_id", key=lambda c: c.map(order)).reset_index(drop=True)
        write_csv(merged, out / SUMMARY)
        for r in range(world):
            (out / f"cohort_summary.rank{r}.csv").unlink(missing_ok=True)
        return merged
    return frame


def _score_scan(s: ScanInput, out: Path, model, opts, *, force: bool, **write) -> dict:
    """Read, check, segment and write one scan; its summary row."""
    from calcscore.checks import ensure_scorable, finite_volume
    from calcscore.inference import segment

    t0 = time.perf_counter()
    volume = read_volume(s.image)
    checks = ensure_scorable(volume, force=force, source=s.image)
    volume = finite_volume(volume)  # forced: NaN/inf as air, said in the report
    seg = segment(volume, model, opts)
    report = write_scan_outputs(
        volume,
        seg.labels,
        out,
        s.scan_id,
        extra={
            "safety_net": safety_net_summary(seg),
            "heart_coverage": checks.coverage.to_dict() if checks.coverage else None,
        },
        not_assessable=checks.not_assessable_reason,
        **write,
    )
    if not report["assessable"]:
        log.warning("%s: not assessable: %s", s.scan_id, checks.not_assessable_reason)
    row = summary_row(s.scan_id, report, seconds=time.perf_counter() - t0, checks=checks)
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _failed_row(s: ScanInput, exc: Exception) -> dict:
    """The summary row of a scan that failed, its one line logged."""
    if isinstance(exc, CalcscoreError):
        msg = str(exc)
    else:
        msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    log.error("%s failed: %s", s.scan_id, msg)
    return summary_row(s.scan_id, None, seconds=0.0, error=msg)


def _barrier() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp / path.name, index=False)
    except OSError as exc:
        raise _write_error(path.parent, exc) from None
