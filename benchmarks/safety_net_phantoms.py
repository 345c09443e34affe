"""The anatomical safety net on held-out phantoms: a model's figures with and without it.

    .venv/bin/python benchmarks/safety_net_phantoms.py [--model DIR] [--medium 120-129]
        [--full 146-147] [--gated 120-125] [--anatomy v1|v2] [--seed 2018] [--out figures.json]

The phantoms are the shipped model's test participants (P0120..P0129, heart-region scans) and
the whole-chest comparison participants (P0146..P0147), never used to train or tune it; ``--gated``
adds ECG-gated heart-only scans (3 mm slices, 0.4 mm pixels, a 205 mm field of view) of the
participants given. The
model runs once per scan; the labels without the net come from the same run
(:meth:`calcscore.inference.Segmentation.labels_at`), so the table compares like with like.
Prints pooled voxel F1 per label and the risk-category kappa, soft and sharp, and the ratio of
the F1s (with / without).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from calcscore.inference import InferenceOptions, Model, resolve_precision, segment
from calcscore.metrics import ScanCase, evaluate
from calcscore.pipeline.cohort import cohort_scans

GROUPS = ("CAC", "LAD", "LCX", "RCA", "TAC", "AV", "MV")


def _range(text: str) -> range:
    a, _, b = text.partition("-")
    return range(int(a), int(b or a) + 1)


def pooled(cases: list[ScanCase]) -> dict:
    ev = evaluate(cases)
    s = ev.summary
    out = {
        g: {
            "f1": float(s.loc[g, "f1_pooled"]),
            "sensitivity": float(s.loc[g, "sensitivity_pooled"]),
            "fp_mm3": float(s.loc[g, "fp_volume_mm3_mean"]),
        }
        for g in GROUPS
        if g in s.index
    }
    agreement = ev.risk_agreement()
    out["kappa"] = None if agreement is None else float(agreement[1].kappa)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--medium", default="120-129")
    ap.add_argument("--full", default="146-147")
    ap.add_argument("--gated", default="")
    ap.add_argument(
        "--anatomy",
        default="v1",
        choices=("v1", "v2"),
        help="v1: the shipped model's own test phantoms (the README's table); v2: realistic",
    )
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    model = Model.load(args.model)
    opts = InferenceOptions(
        bf16=resolve_precision("auto", "cpu"), channels_last=True, safety_net=True
    )
    result: dict = {}
    for size, ids in (("medium", args.medium), ("full", args.full), ("gated", args.gated)):
        if not ids:
            continue
        t = time.perf_counter()
        cases: dict = {}
        for cs in cohort_scans(_range(ids), seed=args.seed, size=size, anatomy=args.anatomy):
            seg = segment(cs.volume, model, opts)
            off = seg.labels_at(
                cs.volume, model.cnn2_thresholds, rim_fill=model.rim_fill, safety_net=False
            )
            for tag, labels in (("on", seg.labels), ("off", off)):
                cases.setdefault((cs.kernel, tag), []).append(
                    ScanCase(cs.scan_id, cs.labels, labels, cs.volume)
                )
        for (kernel, tag), lst in sorted(cases.items()):
            result[f"{size} P{ids} {kernel} net {tag}"] = pooled(lst)
        print(f"{size}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print(f"{'cohort':<34}" + "".join(f"{g:>7}" for g in GROUPS) + f"{'kappa':>7}")
    for name, r in result.items():
        print(
            f"{name:<34}"
            + "".join(f"{r[g]['f1']:>7.3f}" if g in r else f"{'-':>7}" for g in GROUPS)
            + (f"{r['kappa']:>7.2f}" if r["kappa"] is not None else f"{'-':>7}")
        )
    for name in [n for n in result if n.endswith("net on")]:
        on, off = result[name], result[name[:-2] + "off"]
        print(
            f"{name[:-7]:<34}F1 ratio on/off: "
            + ", ".join(
                f"{g} {on[g]['f1'] / off[g]['f1']:.3f}"
                for g in GROUPS
                if g in on and off[g]["f1"] > 0
            )
        )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
