"""One scan of ``calcscore score``, and the fresh worker processes that score a long cohort.

:func:`score_scan` reads a scan, checks it, segments it and writes its outputs through staging
(:mod:`calcscore.resume`): nothing half-written is left. :class:`Scorer` runs it scan after scan,
in this process or, for a long cohort, in a worker process that is replaced by a fresh one every
``fresh_every`` scans: a process that scored scan after scan grew by ~70 MB over 100 tiny scans
(native memory: glibc's heap and oneDNN's kernels, see :mod:`calcscore.runtime`), and a fresh
process starts from nothing again (benchmarks/soak_torchrun.py). A scan that kills its worker
(out of memory, a crash in native code) fails alone; the next scan gets a new worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calcscore.constants import FRESH_EVERY  # noqa: F401 - importable from here
from calcscore.errors import CalcscoreError
from calcscore.io import read_volume
from calcscore.resume import remove_partials
from calcscore.scan_outputs import (
    safety_net_summary,
    summary_row,
    write_dicom_outputs,
    write_scan_outputs,
)

if TYPE_CHECKING:
    from calcscore.inference import InferenceOptions, Model

log = logging.getLogger(__name__)

#: summary columns that are not in scores.json: a resumed scan takes them from its provenance
ROW_FROM_PROVENANCE = ("kernel_class", "check_warnings", "heart_coverage", "peak_rss_mb", "rss_mb")


@dataclass(frozen=True)
class ScanInput:
    scan_id: str
    image: Path
    labels: Path | None = None


@dataclass(frozen=True)
class ScanJob:
    """What every scan of one ``score_cohort`` call shares."""

    out: Path
    model: Model
    opts: InferenceOptions
    model_id: dict
    settings: dict
    dicom: bool
    force: bool

    def key(self, scan: ScanInput) -> dict:
        from calcscore.resume import run_key

        settings = {**self.settings, "dicom": self.dicom and is_dicom_input(scan)}
        return run_key(
            model_sha256=self.model_id["sha256"],
            image=scan.image,
            settings=settings,
            reference=scan.labels,
        )


def is_dicom_input(scan: ScanInput) -> bool:
    """A folder of a classic DICOM series, which the SEG and SR outputs can reference."""
    from calcscore.dicom_enhanced import folder_is_multi_frame

    return scan.image.is_dir() and not folder_is_multi_frame(scan.image)


def score_scan(job: ScanJob, s: ScanInput) -> dict:
    """Score one scan into staging, then commit its outputs and provenance; its summary row."""
    from calcscore.checks import ensure_scorable, finite_volume
    from calcscore.inference import segment
    from calcscore.report_cohort import reference_scores
    from calcscore.report_html import write_scan_page
    from calcscore.resume import commit, staging

    t0 = time.perf_counter()
    try:
        volume = read_volume(s.image)
        key = job.key(s)
        checks = ensure_scorable(volume, force=job.force, source=s.image)
        volume = finite_volume(volume)  # forced: NaN/inf as air, said in the report
        seg = segment(volume, job.model, job.opts)
        extra: dict = {
            "safety_net": safety_net_summary(seg),
            "heart_coverage": checks.coverage.to_dict() if checks.coverage else None,
        }
        if s.labels is not None:  # the manifest's reference annotation
            extra["reference"] = reference_scores(
                volume, s.labels, convention=job.settings["convention"]
            )
        with staging(job.out, s.scan_id) as staged:
            report = write_scan_outputs(
                volume,
                seg.labels,
                staged,
                s.scan_id,
                convention=job.settings["convention"],
                overlay=job.settings["overlay"],
                extra=extra,
                not_assessable=checks.not_assessable_reason,
            )
            if not report["assessable"]:
                log.warning("%s: not assessable: %s", s.scan_id, checks.not_assessable_reason)
            if job.settings["report"]:
                write_scan_page(report, volume, seg.labels, staged, checks=checks, model=job.model)
            if key["settings"]["dicom"]:
                write_dicom_outputs(seg.labels, report, s.image, staged, s.scan_id, job.model_id)
            row = summary_row(s.scan_id, report, seconds=time.perf_counter() - t0, checks=checks)
            commit(
                staged,
                job.out,
                s.scan_id,
                {
                    "key": key,
                    "model": {k: job.model_id[k] for k in ("name", "version")},
                    "input": str(s.image.resolve()),
                    "device": job.opts.device,
                    "checks": {k: row[k] for k in ROW_FROM_PROVENANCE},
                    "seconds": row["seconds"],
                },
            )
        row["resumed"] = False
        return row
    except CalcscoreError as exc:
        log.error("%s failed: %s", s.scan_id, exc)
        error = str(exc)
    except Exception as exc:  # report and go on with the rest of the cohort
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        log.error("%s failed: %s", s.scan_id, error)
    return _failed_row(s.scan_id, t0, error)


def _failed_row(scan_id: str, t0: float, error: str) -> dict:
    row = summary_row(scan_id, None, seconds=time.perf_counter() - t0, error=error)
    row["resumed"] = False
    return row


class Scorer:
    """Score scans one after another with :func:`score_scan`; a context manager.

    With ``fresh_every`` 0 every scan is scored in this process. Otherwise in a worker process
    (forked from a fork server, :func:`_worker_context`: no state of this process is copied)
    that loads the model and is replaced by a
    fresh one after ``fresh_every`` scans; the scans are scored in order, one at a time, and the
    worker logs as this process does. A scan whose worker dies gets a failed row and the next one
    a new worker. Either way each scan's ``peak_rss_mb`` is the peak of the process that scored
    it (:func:`calcscore.runtime.reset_peak_rss`), and memory is given back after each scan.

    Args:
        job: what every scan shares; with workers its model is loaded again in each worker
            from ``job.model.source``.
        fresh_every: scans per worker process; 0 for none.
    """

    def __init__(self, job: ScanJob, fresh_every: int = 0) -> None:
        self.job = job
        self.fresh_every = fresh_every
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def __call__(self, scan: ScanInput) -> dict:
        if not self.fresh_every:
            return _score_and_release(self.job, scan)
        if self._pool is None:
            self._pool = self._new_pool()
        t0 = time.perf_counter()
        try:
            return self._pool.submit(_score_in_worker, scan).result()
        except KeyboardInterrupt:  # Ctrl-C: the worker ignores it; stop it now, not after the scan
            self._stop_now(scan)
            raise
        except BrokenProcessPool:
            self._close()
            remove_partials(self.job.out, scan.scan_id)  # a worker killed while writing it
            error = "its worker process died or could not start (out of memory, a crash in "
            error += "native code or an unreadable model; --fresh-process-every 0 scores here)"
            log.error("%s failed: %s", scan.scan_id, error)
            return _failed_row(scan.scan_id, t0, error)

    def _new_pool(self) -> ProcessPoolExecutor:
        import torch

        root = logging.getLogger()
        fmt = next((h.formatter._fmt for h in root.handlers if h.formatter), None)
        spec = {
            "job": {
                f.name: getattr(self.job, f.name) for f in fields(ScanJob) if f.name != "model"
            },
            "model": self.job.model.source,
            "threads": torch.get_num_threads(),
            "log_level": root.getEffectiveLevel(),
            "log_format": fmt,
        }
        return ProcessPoolExecutor(
            1,
            mp_context=_worker_context(),
            initializer=_init_worker,
            initargs=(spec,),
            max_tasks_per_child=self.fresh_every,
        )

    def _stop_now(self, scan: ScanInput) -> None:
        """Kill the worker (scoring ``scan``) and remove what it was writing; a scan it had
        begun to move into place has no provenance yet, so the next run scores it again."""
        if self._pool is not None:
            for proc in list(self._pool._processes.values()):  # no public way to stop a task
                proc.kill()
        self._close()
        remove_partials(self.job.out, scan.scan_id)

    def _close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


#: imported once by the fork server, so that a fresh worker starts in a fraction of a second
_PRELOAD = [
    "calcscore.scan_job",
    "calcscore.inference",
    "calcscore.checks",
    "calcscore.report_html",
]


def _worker_context() -> multiprocessing.context.BaseContext:
    """A fork server where there is one (Linux, macOS): it imports torch and calcscore once, and
    each worker is forked from it, clean (no thread or kernel of this process); else spawn."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def _score_and_release(job: ScanJob, scan: ScanInput) -> dict:
    from calcscore.runtime import release_memory, reset_peak_rss

    reset_peak_rss()
    try:
        return score_scan(job, scan)
    finally:
        release_memory()  # flat memory over a long cohort (benchmarks/soak_torchrun.py)


_WORKER_JOB: ScanJob | None = None


def _init_worker(spec: dict[str, Any]) -> None:
    """A worker process's start: logging as in its parent, the parent's threads, the model."""
    import torch

    from calcscore.inference import Model
    from calcscore.runtime import steady_memory

    global _WORKER_JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (Scorer)
    logging.basicConfig(level=spec["log_level"], format=spec["log_format"])
    torch.set_num_threads(spec["threads"])
    steady_memory()
    opts: InferenceOptions = spec["job"]["opts"]
    _WORKER_JOB = ScanJob(model=Model.load(spec["model"], device=opts.device), **spec["job"])
    log.info("worker process %d started (model %s)", os.getpid(), spec["model"])


def _score_in_worker(scan: ScanInput) -> dict:
    assert _WORKER_JOB is not None, "the worker was not initialised"
    return _score_and_release(_WORKER_JOB, scan)
