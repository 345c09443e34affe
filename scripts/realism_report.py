"""Measure whole-chest phantoms and real chest CTs the same way (calcscore.realism) and write the
table and figures of docs/realism.md.

Each real scan is paired with phantoms of one kernel (``NAME=PATH:KERNEL``); every phantom's
slices are averaged to the real scan's slice thickness. Writes ``OUT/realism_table.csv`` (one
column per phantom and real scan, the rows of :meth:`RealismReport.scalars`),
``OUT/realism_distances.csv`` (:func:`calcscore.realism.compare` per pair) and, for the first
seed, ``OUT/realism_{slices,histograms,profiles}.png``.

    python scripts/realism_report.py OUT "real b=PATH_B:soft" "real l=PATH_L:sharp" --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from calcscore.phantom import GENERATOR_VERSION, make_scans
from calcscore.realism import (
    compare,
    histograms_figure,
    load_real_scan,
    match_slices,
    measure_scan,
    profiles_figure,
    slices_figure,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("real", nargs="+", help="NAME=PATH:KERNEL (kernel of the phantoms beside it)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for spec in args.real:
        name, rest = spec.split("=", 1)
        path, kernel = rest.rsplit(":", 1)
        pairs.append((name, load_real_scan(path), kernel))
    thickness = {k: v.spacing_mm[0] for _, v, k in pairs}
    scans, reports = {}, {}
    for seed in args.seeds:
        for kernel, (volume, _, _) in make_scans(rng=seed, kernels=tuple(thickness)).items():
            name = f"phantom {kernel} s{seed}"
            scans[name] = match_slices(volume, thickness[kernel])
            reports[name] = measure_scan(scans[name], name=name)
    for name, volume, _ in pairs:
        scans[name], reports[name] = volume, measure_scan(volume, name=name)
    table = pd.DataFrame({n: r.scalars() for n, r in reports.items()})
    table.to_csv(args.out / "realism_table.csv")
    rows = []
    for real_name, _, kernel in pairs:
        for seed in args.seeds:
            d = compare(reports[f"phantom {kernel} s{seed}"], reports[real_name])["distance"]
            rows.append(d.rename(f"phantom {kernel} s{seed} vs {real_name}"))
    pd.concat(rows, axis=1).to_csv(args.out / "realism_distances.csv")
    first = [f"phantom {k} s{args.seeds[0]}" for _, _, k in pairs]
    order = [n for pair in zip(first, [p[0] for p in pairs]) for n in pair]
    figs = {
        "slices": slices_figure([(n, scans[n], reports[n]) for n in order]),
        "histograms": histograms_figure([reports[n] for n in order]),
        "profiles": profiles_figure([reports[n] for n in order]),
    }
    for key, fig in figs.items():
        fig.savefig(args.out / f"realism_{key}.png", dpi=60)
    print(f"generator {GENERATOR_VERSION}; wrote {args.out}")


if __name__ == "__main__":
    main()
