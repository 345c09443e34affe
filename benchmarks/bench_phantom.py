"""Time the phantom generator: one full-size (512 x 512 x ~200) scan per scanner profile.

Run on one core: ``OMP_NUM_THREADS=1 python benchmarks/bench_phantom.py [--repeat 1] [--seed 0]``.
Prints a table (seconds per scan, shape, spacing) and checks the 10 s target for ~200 slices.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from calcscore.phantom import SCANNERS, make_scan, make_scans  # noqa: E402

TARGET_S = 10.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scanners", default=",".join(SCANNERS), help="comma-separated profile keys")
    args = ap.parse_args(argv)
    rows = []
    for key in args.scanners.split(","):
        for kernel in ("soft", "sharp"):
            times = []
            for r in range(args.repeat):
                t0 = time.perf_counter()
                vol, lab, info = make_scan(rng=args.seed + r, kernel=kernel, scanner=key)
                times.append(time.perf_counter() - t0)
            rows.append(
                (key, kernel, vol.shape, vol.spacing_mm, info.slice_thickness_mm, min(times))
            )
    # both kernels of one subject in one call (shared anatomy)
    t0 = time.perf_counter()
    pair = make_scans(rng=args.seed, kernels=("soft", "sharp"), scanner="siemens_sensation16")
    t_pair = time.perf_counter() - t0
    for size in ("medium", "small"):
        t0 = time.perf_counter()
        vol, _, _ = make_scan(rng=args.seed, size=size)
        rows.append(
            (
                f"({size})",
                "soft",
                vol.shape,
                vol.spacing_mm,
                vol.meta.slice_thickness_mm,
                time.perf_counter() - t0,
            )
        )
    print(
        f"{'scanner':<22} {'kernel':<6} {'shape (z, y, x)':<18} {'spacing mm (z, y, x)':<22} "
        f"{'thick':>5} {'s/scan':>7} {'s/100 slices':>12}"
    )
    for key, kernel, shape, sp, thick, t in rows:
        sh = "x".join(str(n) for n in shape)
        spc = ", ".join(f"{v:.2f}" for v in sp)
        print(
            f"{key:<22} {kernel:<6} {sh:<18} {spc:<22} {thick:>5.2f} {t:>7.2f} {100 * t / shape[0]:>12.2f}"
        )
    shape = pair["soft"][0].shape
    print(
        f"{'siemens_sensation16':<22} {'both':<6} {'x'.join(map(str, shape)):<18} "
        f"{'(soft + sharp, one call)':<22} {'':>5} {t_pair:>7.2f}"
    )
    ok = [t for _, _, shape, _, _, t in rows if 180 <= shape[0] <= 220 and shape[1] == 512]
    if ok:
        print(
            f"512 x 512 x 180-220 scans: max {max(ok):.2f} s, target < {TARGET_S:.0f} s: "
            f"{'met' if max(ok) < TARGET_S else 'MISSED'}"
        )
    per200 = np.median([200 * t / shape[0] for _, _, shape, _, _, t in rows if shape[1] == 512])
    print(f"median time scaled to 512 x 512 x 200: {per200:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
