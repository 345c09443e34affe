"""The load-and-soak benchmark (benchmarks/soak_torchrun.py) at a small count: under torchrun with
two processes every scan is scored once, nothing is lost or doubled, and its audit catches a
lost file and a doubled scan."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "soak_torchrun.py"


def _bench():
    spec = importlib.util.spec_from_file_location("soak_torchrun", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    """A TCP port nobody listens on now (another test run beside this one may use a fixed one)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_six_scans_under_torchrun_are_scored_once_and_none_is_lost(tmp_path):
    r = subprocess.run(
        [sys.executable, str(BENCH), "--scans", "6", "--tiny-model", "--every", "2"]
        + ["--work", str(tmp_path), "--port", str(_free_port())],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "6 expected, 6 scored, 0 lost, 0 doubled, 0 not ok" in r.stdout
    assert "0 missing, 0 stray" in r.stdout and "verdict: PASS" in r.stdout
    out = tmp_path / "out"
    summary = pd.read_csv(out / "cohort_summary.csv", dtype={"scan_id": str})
    ids = [f"soak{i:04d}" for i in range(6)]
    assert list(summary["scan_id"]) == ids  # merged in input order, each once
    assert (summary["peak_rss_mb"] > 50).all()  # a Python process with torch: tens of MB at least
    for s in ids:
        assert json.loads((out / f"{s}_scores.json").read_text())["scan"] == s
    assert not list(out.glob("cohort_summary.rank*.csv"))

    # the audit is not a rubber stamp: a lost output and a doubled row are caught
    bench = _bench()
    (out / "soak0003_lesions.csv").unlink()
    doubled = pd.concat([summary, summary.iloc[[1]]], ignore_index=True)
    doubled.to_csv(out / "cohort_summary.csv", index=False)
    result = bench.audit(tmp_path / "manifest.csv", out, 2)
    assert result["missing_files"] == ["soak0003_lesions.csv"]
    assert result["doubled"] == ["soak0001"] and result["lost"] == []
