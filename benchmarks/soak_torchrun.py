"""Load and soak: a cohort of tiny phantoms scored by ``torchrun --nproc-per-node 2`` on the CPU.

    .venv/bin/python benchmarks/soak_torchrun.py [--scans 200] [--nproc 2] [--shape 16 48 48]
        [--model DIR | --tiny-model] [--work DIR] [--port 29541] [--every 20]

Writes ``--scans`` phantoms (``calcscore.phantom.make_scan(size="small", shape=...)``: 40 x 62 x
62 mm by default, so small that no whole heart is in them: they are scored with ``--force`` and
come out "not assessable", which runs every stage of ``calcscore score``) and a manifest, runs
``torchrun --nproc-per-node N -m calcscore.cli score MANIFEST --device cpu --no-overlay --force``
and checks what came back:

- every scan is in ``cohort_summary.csv`` exactly once, scored (``status`` ok);
- every scan has exactly its three outputs (labels, scores, lesions) and there is nothing else:
  no file lost or doubled, no temporary folder, no per-rank summary left behind;
- memory is flat: each rank's peak RSS while scoring a scan (``peak_rss_mb`` in the summary,
  Linux VmHWM reset per scan) and its RSS after it (``rss_mb``), the median of its first 10 scans
  against that of its last 10 (scan i is scored by rank i mod N), which are the same images: the
  manifest ends with the first 10 x N images again (when ``--scans`` allows it).

Prints a table of the peak RSS every ``--every`` scans per rank and a verdict; exits 1 when a scan
is lost or doubled or a rank's memory grows by more than ``--max-growth-mb`` (default 50 MB)
from its first scans to its last. ``--tiny-model`` scores with a small random model instead of the
shipped one (for the test that runs this at 6 scans).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

OUTPUTS = ("_labels.nii.gz", "_scores.json", "_lesions.csv")
#: per-scan files that may be there besides (provenance for resuming, the report page)
EXTRAS = ("_provenance.json", "_report.html", "_report.pdf", "_overlay.png")
COHORT_EXTRAS = {"cohort_report.html"}
WINDOW = 10  # scans at the start and the end of each rank compared for flat memory


def make_cohort(work: Path, n: int, shape: tuple[int, int, int], repeat: int = 0) -> Path:
    """Write tiny phantoms and a manifest of ``n`` scans under ``work``; returns the manifest.

    The last ``repeat`` scans of the manifest are the first ``repeat`` images again, in the same
    order (their own scan ids): so each rank's first and last scans hold the same images, and a
    difference in their memory is growth, not content (a scan's peak depends on its candidates).
    """
    from calcscore.io import write_volume
    from calcscore.phantom import make_scan

    scans = work / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        j = i - (n - repeat) if i >= n - repeat else i
        path = scans / f"soak{j:04d}.nii.gz"
        if not path.is_file():
            vol, _, _ = make_scan(rng=10_000 + j, size="small", shape=shape)
            write_volume(vol, path)
        rows.append({"scan_id": f"soak{i:04d}", "image": str(path)})
    manifest = work / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def tiny_model(folder: Path) -> Path:
    """A small random model (its labels do not matter for a soak)."""
    import torch

    from calcscore.networks import build_network
    from calcscore.training import get_config, save_model

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    c1 = get_config("workshop", "cnn1", width=4, head_width=8)
    c2 = get_config("workshop", "cnn2", width_scale=0.25, dense_width=8)
    save_model(build_network("cnn1", c1.network_params()), c1, folder / "cnn1.pt")
    save_model(build_network("cnn2", c2.network_params()), c2, folder / "cnn2.pt")
    return folder


def run_torchrun(
    manifest: Path,
    out: Path,
    *,
    nproc: int,
    port: int,
    model: Path | None,
    fresh_every: int | None = None,
) -> float:
    """Score ``manifest`` into ``out`` under torchrun; returns the wall time (s)."""
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun), "--nproc-per-node", str(nproc), "--master-port", str(port)]
    cmd += ["-m", "calcscore.cli", "score", str(manifest), "--out", str(out)]
    cmd += ["--device", "cpu", "--no-overlay", "--force"]
    if model is not None:
        cmd += ["--model", str(model)]
    if fresh_every is not None:
        cmd += ["--fresh-process-every", str(fresh_every)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-3000:])
        raise SystemExit(f"torchrun exited with {r.returncode}")
    return seconds


def audit(manifest: Path, out: Path, nproc: int) -> dict:
    """What came back: lost, doubled and stray files, and the peak RSS per rank."""
    expected = list(pd.read_csv(manifest, dtype={"scan_id": str})["scan_id"])
    summary = pd.read_csv(out / "cohort_summary.csv", dtype={"scan_id": str})
    ids = list(summary["scan_id"])
    doubled = sorted({s for s in ids if ids.count(s) > 1})
    lost = sorted(set(expected) - set(ids))
    not_ok = list(summary.loc[summary["status"] != "ok", "scan_id"])
    wanted = {f"{s}{suffix}" for s in expected for suffix in OUTPUTS} | {"cohort_summary.csv"}
    allowed = wanted | {f"{s}{suffix}" for s in expected for suffix in EXTRAS} | COHORT_EXTRAS
    present = [p.name for p in out.iterdir()]
    missing_files = sorted(wanted - set(present))
    stray = sorted(set(present) - allowed)
    index = {s: i for i, s in enumerate(expected)}
    summary["rank"] = [index.get(s, -1) % nproc for s in summary["scan_id"]]
    summary["n"] = summary.groupby("rank").cumcount() + 1
    return {
        "summary": summary,
        "expected": len(expected),
        "scored": int((summary["status"] == "ok").sum()),
        "doubled": doubled,
        "lost": lost,
        "not_ok": not_ok,
        "missing_files": missing_files,
        "stray": stray,
    }


def report(result: dict, seconds: float, every: int, max_growth_mb: float) -> bool:
    s = result["summary"]
    print(
        f"scans: {result['expected']} expected, {result['scored']} scored, "
        f"{len(result['lost'])} lost, {len(result['doubled'])} doubled, "
        f"{len(result['not_ok'])} not ok; files: {len(result['missing_files'])} missing, "
        f"{len(result['stray'])} stray"
    )
    print(
        f"wall time {seconds:.0f} s, {result['expected'] / seconds:.2f} scans/s; "
        f"median {s['seconds'].median():.2f} s per scan and rank"
    )
    ok = not (result["lost"] or result["doubled"] or result["not_ok"])
    ok = ok and not (result["missing_files"] or result["stray"])
    print("\nmemory (MB) of each rank's process: the peak while scoring its n-th scan, and the RSS")
    print(
        f"after it; flat: the median of its last {WINDOW} scans within {max_growth_mb:g} MB of its first {WINDOW}"
    )
    rows = []
    for rank, g in s.groupby("rank"):
        g = g.reset_index(drop=True)
        picks = sorted({0, len(g) - 1, *range(every - 1, len(g), every)})
        for k in picks:
            rows.append(
                {
                    "rank": rank,
                    "scan n": int(g.loc[k, "n"]),
                    "scan_id": g.loc[k, "scan_id"],
                    "peak_rss_mb": g.loc[k, "peak_rss_mb"],
                    "rss_after_mb": g.loc[k, "rss_mb"],
                }
            )
        for col in ("peak_rss_mb", "rss_mb"):
            first = float(g[col].head(WINDOW).median())
            last = float(g[col].tail(WINDOW).median())
            print(
                f"rank {rank} {col}: first scan {g[col].iloc[0]:.0f}, last {g[col].iloc[-1]:.0f}; "
                f"median of first {WINDOW} {first:.0f}, of last {WINDOW} {last:.0f} "
                f"({last - first:+.0f})"
            )
            ok = ok and last - first <= max_growth_mb
    print(pd.DataFrame(rows).to_string(index=False))
    print("\nverdict:", "PASS" if ok else "FAIL")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=200)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--shape", type=int, nargs=3, default=(16, 48, 48))
    ap.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    ap.add_argument("--tiny-model", action="store_true", help="a small random model")
    ap.add_argument("--work", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--port", type=int, default=29541)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--max-growth-mb", type=float, default=50.0)
    ap.add_argument(
        "--fresh-every",
        type=int,
        default=None,
        help="passed as --fresh-process-every (default: the command's own)",
    )
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="calcscore-soak-") as tmp:
        work = args.work or Path(tmp)
        t0 = time.perf_counter()
        repeat = WINDOW * args.nproc  # each rank's last WINDOW scans: its first WINDOW's images
        if args.scans < 2 * repeat or (args.scans - repeat) % args.nproc:
            repeat = 0  # too few scans, or ranks would not meet the same images
        manifest = make_cohort(work, args.scans, tuple(args.shape), repeat)
        print(
            f"{args.scans} phantoms {tuple(args.shape)} written in {time.perf_counter() - t0:.0f} s"
        )
        model = tiny_model(work / "model") if args.tiny_model else args.model
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        seconds = run_torchrun(
            manifest,
            out,
            nproc=args.nproc,
            port=args.port,
            model=model,
            fresh_every=args.fresh_every,
        )
        result = audit(manifest, out, args.nproc)
        return 0 if report(result, seconds, args.every, args.max_growth_mb) else 1


if __name__ == "__main__":
    sys.exit(main())
