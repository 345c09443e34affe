"""Scoring a long cohort in fresh worker processes (calcscore.scan_job.Scorer,
``calcscore score --fresh-process-every N``): the same outputs as in one process, a new worker
every N scans, and a worker that cannot run fails its scan alone, in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calcscore.io import read_labels, write_volume
from calcscore.phantom import make_scan

pytestmark = pytest.mark.slow  # each worker process imports torch (~2 s)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three small phantoms with calcium (the shipped model labels some of it)."""
    root = tmp_path_factory.mktemp("fresh")
    rows = []
    for i in range(3):
        vol, _, _ = make_scan(rng=300 + i, size="small")
        rows.append({"scan_id": f"s{i}", "image": str(write_volume(vol, root / f"s{i}.nii.gz"))})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def _score(manifest: Path, out: Path, every: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "calcscore.cli", "-v", "score", str(manifest), "--out", str(out)]
    cmd += ["--device", "cpu", "--no-overlay", "--no-report", "--force"]
    cmd += ["--fresh-process-every", str(every)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_workers_give_the_same_outputs_and_are_replaced(cohort, tmp_path):
    here = _score(cohort, tmp_path / "here", 0)
    fresh = _score(cohort, tmp_path / "fresh", 2)
    assert here.returncode == 0 and fresh.returncode == 0, here.stderr[-2000:] + fresh.stderr
    started = re.findall(r"worker process (\d+) started", fresh.stderr)
    assert len(started) == 2 and len(set(started)) == 2  # scans 1-2, then a fresh one for 3
    assert "worker process" not in here.stderr
    a = pd.read_csv(tmp_path / "here" / "cohort_summary.csv")
    b = pd.read_csv(tmp_path / "fresh" / "cohort_summary.csv")
    assert list(b["status"]) == ["ok"] * 3
    cols = ["scan_id", "CAC_agatston", "TAC_agatston", "assessable", "not_assessable_reason"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    labelled = 0
    for i in range(3):
        la = read_labels(tmp_path / "here" / f"s{i}_labels.nii.gz").array
        lb = read_labels(tmp_path / "fresh" / f"s{i}_labels.nii.gz").array
        np.testing.assert_array_equal(la, lb)
        labelled += int((la > 0).sum())
    assert labelled > 0  # the comparison compared labels, not empty volumes
    assert (b["peak_rss_mb"] > 0).all()  # measured in the worker that scored each scan


def _job(out: Path, source: str | None = None):
    """A ScanJob of the shipped model, scoring with --force into ``out`` (created); ``source``:
    where a worker loads the model from, instead of the shipped model's folder."""
    from calcscore.bundle import model_identity
    from calcscore.inference import InferenceOptions, Model
    from calcscore.scan_job import ScanJob

    model = Model.load(None)
    identity = model_identity(model.source)
    if source is not None:
        model = Model(model.cnn1, model.cnn2, model.info, source)
    out.mkdir()
    settings = {"convention": "lessmann2018", "overlay": False, "report": False}
    return ScanJob(out, model, InferenceOptions(), identity, settings, False, True)


def test_a_worker_that_cannot_start_fails_its_scans_alone(cohort, tmp_path):
    """A model that the worker cannot load (removed after the parent loaded it): every scan gets
    a failed row that says so, each with a new worker, and no output is left half-written."""
    from calcscore.batch import resolve_inputs
    from calcscore.scan_job import Scorer

    job = _job(tmp_path / "out", source=str(tmp_path / "gone"))
    scans = resolve_inputs([cohort])[:2]
    with Scorer(job, fresh_every=1) as score:
        rows = [score(s) for s in scans]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("worker process died or could not start" in r["error"] for r in rows)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_worker_killed_mid_scan_fails_that_scan_alone(cohort, tmp_path):
    """SIGKILL to the worker while it scores the first scan (as the kernel's OOM killer would):
    that scan fails in one line, its staging folder goes, and the next scan gets a new worker."""
    import os
    import signal
    import threading
    import time

    from calcscore.batch import resolve_inputs
    from calcscore.scan_job import Scorer

    out = tmp_path / "out"
    job = _job(out)
    scans = resolve_inputs([cohort])[:2]
    (out / ".s0.partial-test").mkdir()  # what a worker killed while writing s0 leaves

    def kill_the_worker(score: Scorer) -> None:
        while not (score._pool is not None and score._pool._processes):
            time.sleep(0.01)
        time.sleep(0.3)
        for pid in list(score._pool._processes):
            os.kill(pid, signal.SIGKILL)

    with Scorer(job, fresh_every=5) as score:
        killer = threading.Thread(target=kill_the_worker, args=(score,))
        killer.start()
        first = score(scans[0])
        killer.join()
        second = score(scans[1])
    assert first["status"] == "failed" and "worker process died" in first["error"]
    assert second["status"] == "ok"
    assert sorted(p.name for p in out.iterdir()) == [
        f"s1{s}" for s in ("_labels.nii.gz", "_lesions.csv", "_provenance.json", "_scores.json")
    ]


def test_ctrl_c_stops_the_workers_and_leaves_nothing_half_written(cohort, tmp_path):
    """A real SIGINT to the whole process group (as Ctrl-C in a terminal) while workers score:
    exit 130 with the one-line message, the scans already written complete, nothing stray, and
    no process left behind."""
    import os
    import signal
    import time

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "calcscore.cli", "score", str(cohort), "--out", str(out)]
    cmd += ["--device", "cpu", "--no-overlay", "--no-report", "--force"]
    with subprocess.Popen(
        [*cmd, "--fresh-process-every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal's Ctrl-C finds it: a test run started in the background inherits
        # SIGINT ignored, and so would the command
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        deadline = time.monotonic() + 300
        while not list(out.glob("*_provenance.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted (Ctrl-C)" in err and "Traceback" not in err
    done = {p.name.removesuffix("_provenance.json") for p in out.glob("*_provenance.json")}
    assert 1 <= len(done) < 3
    names = {p.name for p in out.iterdir()}
    assert names == {
        f"{i}{s}"
        for i in done
        for s in ("_labels.nii.gz", "_scores.json", "_lesions.csv", "_provenance.json")
    }
    time.sleep(1)
    assert _live_in_group(proc.pid) == []  # no worker or fork server left running


def _live_in_group(pgid: int) -> list[str]:
    """Processes of group ``pgid`` that are not zombies (Linux /proc; a zombie whose parent has
    gone waits for init to reap it), as "pid state"."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(f"{stat.parent.name} {fields[0]}")
    return live
