"""`calcscore score` resumes: it skips scans already scored by the same model and settings (their
<scan>_provenance.json), scores again what changed, and a run killed half way leaves no partial
output. Scans are 16 x 80 x 80 crops of a small phantom (about 1 s each with the small model)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from calcscore.batch import SUMMARY, score_cohort
from calcscore.cli import main
from calcscore.io import write_dicom_series, write_volume
from calcscore.phantom import make_scan
from calcscore.volume import CTVolume

SCORE_COLUMNS = ["scan_id", "status", "CAC_agatston", "TAC_agatston", "risk_category"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[Path]:
    """Six distinct scans (slabs of one phantom), the first as a DICOM folder."""
    root = tmp_path_factory.mktemp("cohort")
    vol, _, _ = make_scan(rng=11, size="small")
    paths = []
    for i in range(6):
        z = 4 + 8 * i
        slab = CTVolume(
            vol.hu[z : z + 16, 24:104, 24:104].copy(),
            vol.spacing_mm,
            vol.origin_mm,
            vol.direction,
            meta=vol.meta,
        )
        if i == 0:
            paths.append(write_dicom_series(slab, root / "s1"))
        else:
            paths.append(write_volume(slab, root / f"s{i + 1}.nii.gz"))
    return paths


def _outputs(out: Path) -> dict[str, int]:
    """Every visible file of the output folder -> its modification time (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")}


def _run(inputs, out, model_dir, **kw) -> pd.DataFrame:
    kw.setdefault("report", False)
    kw.setdefault("force", True)  # slabs of a phantom: too small to hold the heart (issue 29)
    return score_cohort(
        inputs, out, model_path=model_dir, device="cpu", precision="fp32", progress=False, **kw
    )


def test_a_second_run_skips_and_keeps_the_summary(tmp_path, cohort, model_dir, caplog):
    out = tmp_path / "out"
    first = _run(cohort[:2], out, model_dir, overlay=False, report=True)
    assert not first["resumed"].any() and (first["status"] == "ok").all()
    record = json.loads((out / "s2_provenance.json").read_text())
    assert set(record["outputs"]) == {
        "s2_labels.nii.gz",
        "s2_scores.json",
        "s2_lesions.csv",
        "s2_report.html",
    }
    for name, rec in record["outputs"].items():
        assert rec["bytes"] == (out / name).stat().st_size
    assert record["key"]["settings"]["overlay"] is False and record["model"]["version"]
    before = _outputs(out)
    with caplog.at_level(logging.INFO, logger="calcscore.batch"):
        second = _run(cohort[:2], out, model_dir, overlay=False, report=True)
    assert second["resumed"].all()
    assert "s1: skipped, already scored" in caplog.text and "s2: skipped" in caplog.text
    changed = {k for k, v in _outputs(out).items() if before.get(k) != v}
    assert changed == {SUMMARY, "cohort_report.html"}  # no scan output was written again
    assert 'href="s2_report.html"' in (out / "cohort_report.html").read_text()
    # the summary of the resumed run is the first one's, read back from the scans' files
    pd.testing.assert_frame_equal(
        second.drop(columns="resumed"), first.drop(columns="resumed"), check_dtype=False
    )
    on_disk = pd.read_csv(out / SUMMARY)
    assert list(on_disk["scan_id"]) == ["s1", "s2"] and on_disk["resumed"].all()
    # --overwrite scores both again, through the command line
    assert (
        main(["score", "--force", *map(str, cohort[:2]), "--out", str(out), "--model", str(model_dir),
              "--device", "cpu", "--precision", "fp32", "--no-overlay", "--overwrite",
              "--no-report"])
        == 0
    )  # fmt: skip
    assert all(_outputs(out)[f"s{i}_scores.json"] > before[f"s{i}_scores.json"] for i in (1, 2))


@pytest.mark.slow
def test_what_changed_is_scored_again(tmp_path, cohort, model_dir, caplog):
    out = tmp_path / "out"
    scans = cohort[1:3]  # s2, s3
    _run(scans, out, model_dir, overlay=True)
    assert (out / "s2_overlay.png").is_file()
    caplog.set_level(logging.INFO, logger="calcscore.batch")

    def rescored(**kw) -> list[bool]:
        caplog.clear()
        summary = _run(scans, out, model_dir, **kw)
        return list(~summary["resumed"].astype(bool))

    # a setting that changes the outputs: every scan again; the overlay it no longer writes goes
    assert rescored(overlay=False) == [True, True]
    assert "made with another overlay" in caplog.text
    assert not (out / "s2_overlay.png").exists() and not (out / "s3_overlay.png").exists()
    assert rescored(overlay=False, cnn2_threshold=0.3) == [True, True]
    assert "made with another cnn2_threshold" in caplog.text
    assert rescored(overlay=False, cnn2_threshold=0.3) == [False, False]
    # one output deleted, one changed: that scan alone
    (out / "s3_lesions.csv").unlink()
    assert rescored(overlay=False, cnn2_threshold=0.3) == [False, True]
    assert "s3_lesions.csv is missing" in caplog.text
    with (out / "s2_scores.json").open("a") as f:
        f.write(" ")
    assert rescored(overlay=False, cnn2_threshold=0.3) == [True, False]
    assert "s2_scores.json changed since" in caplog.text
    # the input rewritten (a newer file under the same name)
    st = scans[1].stat()
    os.utime(scans[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert rescored(overlay=False, cnn2_threshold=0.3) == [False, True]
    assert "made with another input_sha256" in caplog.text


def test_an_error_between_outputs_leaves_nothing_and_the_next_run_scores(
    tmp_path, cohort, model_dir, monkeypatch
):
    from calcscore import scoring

    out = tmp_path / "out"

    original = scoring.lesion_table

    def failing(*a, **kw):  # labels.nii.gz and scores.json are written by now
        raise RuntimeError("killed between outputs")

    monkeypatch.setattr(scoring, "lesion_table", failing)
    summary = _run(cohort[1:3], out, model_dir, overlay=False)
    assert list(summary["status"]) == ["failed", "failed"]
    assert set(os.listdir(out)) == {SUMMARY}  # no partial output, no staging folder
    monkeypatch.setattr(scoring, "lesion_table", original)
    summary = _run(cohort[1:3], out, model_dir, overlay=False)
    assert (summary["status"] == "ok").all() and not summary["resumed"].any()
    assert (out / "s3_provenance.json").is_file()


@pytest.mark.slow
def test_a_cohort_killed_after_scan_3_resumes_at_scan_4(tmp_path, cohort, model_dir):
    """SIGKILL (no clean-up can run) once scan 3 is complete; the next run scores scans 4-6 and
    its summary lists all six."""
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "calcscore.cli", "-v", "score", "--force", *map(str, cohort), "--out",
        str(out), "--model", str(model_dir), "--device", "cpu", "--precision", "fp32",
        "--no-overlay",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 300
    while not (out / "s3_provenance.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before scan 3"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name.removesuffix("_provenance.json") for p in out.glob("*_provenance.json")}
    assert done == {"s1", "s2", "s3"}
    visible = _outputs(out)
    assert all(name.split("_")[0] in done for name in visible)  # nothing of scans 4-6
    assert SUMMARY not in visible
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3 scans scored, 0 failed, 3 skipped" in r.stdout
    for s in ("s1", "s2", "s3"):
        assert f"{s}: skipped, already scored" in r.stderr
    after = _outputs(out)
    assert all(after[name] == t for name, t in visible.items())  # scans 1-3 untouched
    summary = pd.read_csv(out / SUMMARY)
    assert list(summary["scan_id"]) == [f"s{i}" for i in range(1, 7)]
    assert list(summary["resumed"]) == [True] * 3 + [False] * 3
    assert (summary["status"] == "ok").all()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # staging removed


@pytest.mark.slow
def test_torchrun_resumes_each_ranks_share(tmp_path, cohort, model_dir):
    """Under torchrun (2 processes) the scans already scored are skipped on whichever rank
    they fall, a staging folder left by a killed run is removed, and rank 0's summary lists
    every scan."""
    out = tmp_path / "out"
    scans = cohort[:4]
    _run([scans[0], scans[3]], out, model_dir, overlay=False)  # s1 -> rank 0, s4 -> rank 1
    (out / ".s2.partial-killed").mkdir()
    (out / ".s2.partial-killed" / "s2_labels.nii.gz").write_bytes(b"half")
    before = _outputs(out)
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run(
        [
            str(torchrun), "--nproc_per_node", "2", "--master_port", "29531", "-m",
            "calcscore.cli", "score", "--force", *map(str, scans), "--out", str(out), "--model",
            str(model_dir), "--device", "cpu", "--precision", "fp32", "--no-overlay",
            "--no-report",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    summary = pd.read_csv(out / SUMMARY)
    assert list(summary["scan_id"]) == ["s1", "s2", "s3", "s4"]
    assert list(summary["resumed"]) == [True, False, False, True]
    after = _outputs(out)
    assert all(after[k] == v for k, v in before.items() if k != SUMMARY)
    assert all((out / f"s{i}_provenance.json").is_file() for i in range(1, 5))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_provenance_is_as_readable_as_the_outputs(tmp_path, cohort, model_dir):
    out = tmp_path / "out"
    _run(cohort[1:2], out, model_dir, overlay=False)
    mode = (out / "s2_provenance.json").stat().st_mode & 0o777
    assert mode == (out / "s2_scores.json").stat().st_mode & 0o777


@pytest.mark.slow
def test_pdfs_are_printed_for_scans_scored_now_or_missing_theirs(tmp_path, cohort, model_dir):
    """--pdf prints after the scans' outputs are complete: a resumed run prints only the PDFs
    that are missing (a run killed before its PDFs), and leaves the others alone."""
    from calcscore.errors import MissingDependencyError
    from calcscore.report_pdf import find_pdf_engine

    try:
        find_pdf_engine()
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    out = tmp_path / "out"
    _run(cohort[1:3], out, model_dir, overlay=False, pdf=True)
    pdfs = {s: out / f"{s}_report.pdf" for s in ("s2", "s3")}
    assert all(p.read_bytes()[:5] == b"%PDF-" for p in pdfs.values())
    before = {s: p.stat().st_mtime_ns for s, p in pdfs.items()}
    pdfs["s3"].unlink()
    summary = _run(cohort[1:3], out, model_dir, overlay=False, pdf=True)
    assert summary["resumed"].all()
    assert pdfs["s2"].stat().st_mtime_ns == before["s2"] and pdfs["s3"].is_file()
