"""Time whole-chest phantoms of this calcscore against another checkout, in the same run.

Usage: OMP_NUM_THREADS=1 python scripts/phantom_timing.py --other /path/to/older/calcscore
       [--seeds 0 1] [--anatomy v2] [--repeats 2]

Each timing is one ``make_scans(rng=seed, size="full", anatomy=...)`` (soft and sharp
reconstructions) in a fresh Python process with ``PYTHONPATH`` at one checkout; the checkouts
alternate, so load on a shared machine hits both alike. Prints one line per run and the means.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = (
    "import sys, time\n"
    "from calcscore.phantom import make_scans\n"
    "t = time.perf_counter()\n"
    "out = make_scans(rng=int(sys.argv[1]), size='full', anatomy=sys.argv[2])\n"
    "print(time.perf_counter() - t, out['soft'][0].shape)\n"
)


def time_one(checkout: Path, seed: int, anatomy: str) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    res = subprocess.run(
        [sys.executable, "-c", CHILD, str(seed), anatomy],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=str(checkout),
    )
    secs, shape = res.stdout.strip().split(" ", 1)
    return float(secs), shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="another calcscore checkout (the baseline)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--anatomy", default="v2")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[float]] = {"other": [], "this": []}
    for _ in range(args.repeats):
        for seed in args.seeds:
            for name, path in (("other", Path(args.other)), ("this", ROOT)):
                secs, shape = time_one(path, seed, args.anatomy)
                runs[name].append(secs)
                print(f"{name:5s} seed {seed}: {secs:6.1f} s  {shape}", flush=True)
    for name, vals in runs.items():
        print(f"{name}: mean {sum(vals) / len(vals):.1f} s over {len(vals)} phantoms")


if __name__ == "__main__":
    main()
