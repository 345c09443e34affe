"""Scoring scans and cohorts end to end: read, segment, score, write (``calcscore score``).

For each scan ``<scan_id>`` the output folder receives ``<scan_id>_labels.nii.gz`` (on the
scan's own grid), ``<scan_id>_scores.json`` (the shape of ``calcscore agatston --json``),
``<scan_id>_lesions.csv``, ``<scan_id>_overlay.png`` and ``<scan_id>_report.html`` (with
``pdf``, ``<scan_id>_report.pdf``), with ``dicom`` and a DICOM input ``<scan_id>_seg.dcm`` and
``<scan_id>_sr.dcm``, and last ``<scan_id>_provenance.json`` (:mod:`calcscore.resume`: the
outputs are complete; a later run skips the scan when the model and settings are the same); the
cohort gets ``cohort_summary.csv``, with a row for every scan, skipped ones included, and
``cohort_report.html`` (:mod:`calcscore.report_html`, :mod:`calcscore.report_cohort`). A scan
that fails is reported in the summary and the others go on.

Under ``torchrun`` (environment variables ``RANK`` and ``WORLD_SIZE``) every process scores
its share of the scans (scan i goes to rank i mod world size) on its own GPU (``LOCAL_RANK``),
and rank 0 merges the per-rank summaries.

What a scan leaves in the output folder is written by :mod:`calcscore.scan_outputs` (its names
are importable from here as before).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from calcscore.errors import InputError, optional_import
from calcscore.io import ITK_SUFFIXES, _is_dicom_file, strip_suffix, suffix_of
from calcscore.scan_job import (  # noqa: F401 - importable from here as before
    FRESH_EVERY,
    ROW_FROM_PROVENANCE,
    ScanInput,
    ScanJob,
    Scorer,
    is_dicom_input,
)
from calcscore.scan_outputs import (  # noqa: F401 - importable from here as before
    dicom_output_paths,
    output_paths,
    safety_net_summary,
    sr_named_scores,
    summary_row,
    write_csv,
    write_dicom_outputs,
    write_scan_outputs,
)

if TYPE_CHECKING:
    from calcscore.inference import InferenceOptions

log = logging.getLogger(__name__)

SUMMARY = "cohort_summary.csv"


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
    lesion_fill: bool | None = None,
    artery_vote: bool = True,
    report: bool = True,
    pdf: bool = False,
    dicom: bool = False,
    overwrite: bool = False,
    fresh_every: int | None = None,
) -> pd.DataFrame:
    """Score every scan of ``inputs`` into ``out_dir``.

    Every scan first goes through :func:`calcscore.checks.ensure_scorable`: a contrast-enhanced
    scan is refused (reported as failed) unless ``force``; warnings (thick slices, no heart,
    non-HU values, metal) and the kernel class go into the summary. A scan whose outputs are
    complete and were made by the same model and settings (:mod:`calcscore.resume`) is skipped
    unless ``overwrite``.

    Args:
        inputs: image files, DICOM series folders and manifest CSVs (:func:`resolve_inputs`).
        out_dir: the output folder (created).
        model_path: the model bundle; None for the default model.
        device: "auto", "cpu", "cuda" ... (under torchrun each process takes its ``LOCAL_RANK``
            GPU).
        precision: "auto" (bf16 where the device has native bf16, see
            :func:`calcscore.runtime.bf16_supported`), "bf16" or "fp32".
        convention: the Agatston convention (a :data:`calcscore.scoring.CONVENTIONS` name).
        overlay: write each scan's ``<scan>_overlay.png``.
        progress: show a progress bar.
        force: score refused scans too (as not assessable).
        cnn2_threshold: one CNN2 threshold for all labels instead of the model's own.
        rim_fill: False for the paper's nearest-neighbour mapping back to the scan's grid (None:
            the model's choice, see :func:`calcscore.inference.fill_rim`).
        safety_net: False to keep labels outside their anatomical regions (None: the model's
            choice, see :mod:`calcscore.regions`).
        lesion_fill: False to leave lesions the networks labelled in part as they are (None:
            the model's choice, see :mod:`calcscore.lesion_fill`).
        artery_vote: False to leave coronary lesions with more than one artery as the networks
            labelled them (:func:`calcscore.lesions.vote_arteries`).
        report: write each scan's ``<scan>_report.html`` and the cohort's
            ``cohort_report.html``.
        pdf: print the scan pages to PDF too (needs Chromium, checked before any scan is
            scored; implies ``report``).
        dicom: also write ``<scan>_seg.dcm`` and ``<scan>_sr.dcm`` for DICOM inputs
            (:mod:`calcscore.dicom_out`).
        overwrite: score scans again that are already scored with this model and settings.
        fresh_every: score in a worker process replaced by a fresh one after this many scans,
            for flat memory over a long cohort (:class:`calcscore.scan_job.Scorer`); 0 never;
            None: every :data:`~calcscore.scan_job.FRESH_EVERY` scans when this process has more
            than that to score, else in this process.

    Returns:
        the cohort summary, one row per scan (under torchrun, rank 0 gets every rank's rows);
        its column ``resumed`` is True for the scans skipped as already scored.
    """
    from tqdm.auto import tqdm

    from calcscore.bundle import model_identity
    from calcscore.inference import InferenceOptions, Model
    from calcscore.report_pdf import find_pdf_engine
    from calcscore.runtime import resolve_device, resolve_precision, steady_memory

    scans = resolve_inputs(inputs)
    if dicom:  # before any scan: a missing highdicom would fail every DICOM scan at its end
        optional_import("highdicom", "--dicom (DICOM SEG and SR)", "dicom")
    out = Path(out_dir)
    _refuse_outputs_over_inputs(scans, out)
    chromium = find_pdf_engine() if pdf else None
    report = report or pdf
    _prepare_out(out)
    rank, world, local = _dist_info()
    if dicom and rank == 0:
        _warn_not_dicom(scans)
    steady_memory()  # before any kernel is built: flat memory over a long cohort
    device = str(resolve_device(device, local_rank=local))  # one GPU per process under torchrun
    model = Model.load(model_path, device=device)
    opts = InferenceOptions(
        device=device,
        bf16=resolve_precision(precision, device),
        channels_last=True,
        cnn2_threshold=cnn2_threshold,
        rim_fill=rim_fill,
        safety_net=safety_net,
        lesion_fill=0.0 if lesion_fill is False else None,
        artery_vote=artery_vote,
    )
    settings = dict(convention=convention, overlay=overlay, cnn2_threshold=cnn2_threshold)
    settings |= dict(rim_fill=rim_fill, safety_net=safety_net, precision=_precision(opts))
    settings["lesion_fill"] = lesion_fill
    settings["artery_vote"] = artery_vote
    settings["report"] = report
    job = ScanJob(out, model, opts, model_identity(model.source), settings, dicom, force)
    mine = scans[rank::world]
    if fresh_every is None:
        fresh_every = FRESH_EVERY if len(mine) > FRESH_EVERY else 0
    rows = []
    with Scorer(job, fresh_every) as score:
        for s in tqdm(
            mine,
            desc=f"scoring (rank {rank})" if world > 1 else "scoring",
            unit="scan",
            disable=not progress,
        ):
            done = None if overwrite else _resumed_row(job, s)
            rows.append(done if done is not None else score(s))
    frame = pd.DataFrame(rows, columns=[*summary_row("x", None, seconds=0).keys(), "resumed"])
    if chromium is not None:
        _print_pdfs(frame, out, chromium)
    return _write_summary(frame, out, scans, rank, world, report)


def _prepare_out(out: Path) -> None:
    """Create the output folder, and refuse it in one line when it cannot be written."""
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
    frame: pd.DataFrame, out: Path, scans: list[ScanInput], rank: int, world: int, report: bool
) -> pd.DataFrame:
    """Write ``cohort_summary.csv`` (and with ``report`` the cohort page); under torchrun rank 0
    merges every rank's rows (in input order) and returns them, the others their own."""
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
    """<scan>_report.pdf of every scan of ``frame`` scored now, and of those skipped as already
    scored that have none (a run killed before its PDFs), with one Chromium for all. The PDF is
    printed from the report page after the scan's outputs are complete, so it is not one of the
    outputs its provenance lists; each is written atomically."""
    from calcscore.report_pdf import html_to_pdf

    ok = frame[frame["status"] == "ok"]
    resumed = ok["resumed"].fillna(False).astype(bool)
    ids = [
        i
        for i, r in zip(ok["scan_id"], resumed)
        if not r or not (out / f"{i}_report.pdf").is_file()
    ]
    html_to_pdf(
        [(out / f"{i}_report.html", out / f"{i}_report.pdf") for i in ids], chromium=chromium
    )


def _cohort_page(frame: pd.DataFrame, out: Path, report: bool) -> None:
    if report:
        from calcscore.report_cohort import write_cohort_report

        write_cohort_report(frame, out)


def _precision(opts: InferenceOptions) -> str:
    return "bf16" if opts.bf16 else "fp32"


def _refuse_outputs_over_inputs(scans: list[ScanInput], out: Path) -> None:
    from calcscore.resume import provenance_path

    inputs_resolved = {s.image.resolve() for s in scans}
    for s in scans:
        paths = [*output_paths(out, s.scan_id).values(), provenance_path(out, s.scan_id)]
        paths += list(dicom_output_paths(out, s.scan_id).values())
        for p in paths:
            if p.resolve() in inputs_resolved:
                raise InputError(
                    p, "is an input and would be overwritten", "choose another --out folder"
                )


def _warn_not_dicom(scans: list[ScanInput]) -> None:
    other = [s.image.name for s in scans if not is_dicom_input(s)]
    if other:
        names = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
        log.warning(
            "--dicom: %s %s not a folder of a single-frame DICOM series, so no SEG or SR for "
            "%s (they reference its slices); the other outputs are written",
            names,
            "is" if len(other) == 1 else "are",
            "it" if len(other) == 1 else "them",
        )


def _resumed_row(job: ScanJob, scan: ScanInput) -> dict | None:
    """The summary row of a scan already scored with this model and settings (from its
    scores.json and provenance), None when it must be scored (the reason is logged)."""
    from calcscore.resume import read_provenance, why_not_complete

    if not scan.image.exists():
        return None
    reason = why_not_complete(job.out, scan.scan_id, job.key(scan))
    if reason is not None:
        log.info("%s: scoring (%s)", scan.scan_id, reason)
        return None
    record = read_provenance(job.out, scan.scan_id) or {}
    report = json.loads(output_paths(job.out, scan.scan_id)["scores"].read_text())
    row = summary_row(scan.scan_id, report, seconds=float(record.get("seconds", 0.0)))
    row.update(record.get("checks", {}))
    row["resumed"] = True
    log.info("%s: skipped, already scored with the same model and settings", scan.scan_id)
    return row


def _barrier() -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()
