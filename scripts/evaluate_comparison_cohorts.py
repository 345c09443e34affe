"""Score a model on the comparison cohorts the README's second table reports, and write the
figures as JSON (the files under ``scripts/experiments/*_on_comparison_scans*.json``).

The cohorts are synthetic participants that took no part in training, validation or any choice
of the shipped model (its training cohort is P0000..P0119 and its test set P0120..P0129):

* ``fresh``: P0148..P0157, heart-region (medium) scans;
* ``heart``: P0136..P0145, heart-region (medium) scans;
* ``whole``: P0146..P0147, whole-chest (full) scans.

Each is reported soft and sharp, and again without the scans that ``calcscore check`` flags for
metal (the paper left scans with severe metal artefacts out). Pooled voxel figures per label.

    python scripts/evaluate_comparison_cohorts.py calcscore/models/default out.json heart,whole
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from calcscore.checks import check_scan
from calcscore.inference import InferenceOptions, Model, segment
from calcscore.metrics import ScanCase, evaluate
from calcscore.pipeline.cohort import cohort_scans
from calcscore.pipeline.evaluation import figures as _figures
from calcscore.pipeline.evaluation import finite as _finite

COHORTS = {
    "fresh": ("fresh_P0148_P0157", range(148, 158), "medium"),
    "heart": ("heart_region_P0136_P0145", range(136, 146), "medium"),
    "whole": ("whole_chest_P0146_P0147", range(146, 148), "full"),
}
LABELS = ("CAC", "TAC", "AV", "MV")


def figures(cases: list[ScanCase]) -> dict:
    """Pooled sensitivity, F1 and mean FP volume per label, and the risk-category kappa."""
    ev = evaluate(cases)
    out: dict = {"n_scans": len(cases), **_figures(ev.summary, LABELS)}
    agreement = ev.risk_agreement()
    if agreement is not None:
        out["kappa"] = _finite(agreement[1].kappa)
    return out


def score_cohort(
    model: Model, key: str, *, seed: int, device: str, workers: int
) -> tuple[str, dict]:
    name, ids, size = COHORTS[key]
    t = time.perf_counter()
    cases: dict[str, list[ScanCase]] = {"soft": [], "sharp": []}
    metal: list[str] = []
    for cs in cohort_scans(ids, seed=seed, size=size, workers=workers):
        if "metal" in check_scan(cs.volume).codes():
            metal.append(cs.scan_id)
        seg = segment(cs.volume, model, InferenceOptions(device=device, channels_last=True))
        cases[cs.kernel].append(ScanCase(cs.scan_id, cs.labels, seg.labels, cs.volume))
    res: dict = {"flagged_metal": metal}
    for kernel, lst in cases.items():
        res[kernel] = figures(lst)
        clean = [c for c in lst if c.scan_id not in metal]
        if metal and clean:
            res[f"{kernel}_without_metal"] = figures(clean)
    res["seconds"] = time.perf_counter() - t
    return name, res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("model", help="a model folder (cnn1.pt, cnn2.pt, model.json)")
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument(
        "cohorts",
        nargs="?",
        default="fresh,heart,whole",
        help="comma-separated, of: " + ", ".join(COHORTS),
    )
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--note", default="", help="a line stored with the figures")
    args = ap.parse_args()
    keys = [k for k in args.cohorts.split(",") if k]
    unknown = [k for k in keys if k not in COHORTS]
    if unknown:
        ap.error(f"unknown cohorts {unknown}; choose from {', '.join(COHORTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = Model.load(args.model, device=args.device)
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.is_file() else {}
    result["model"] = str(args.model)
    if args.note:
        result["note"] = args.note
    for key in keys:
        name, res = score_cohort(
            model, key, seed=args.seed, device=args.device, workers=args.workers
        )
        result[name] = res
        tmp = out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(out_path)  # after each cohort: a stopped run keeps what it measured
        for kernel in ("soft", "sharp"):
            m = res[kernel]
            print(
                f"{name} {kernel}: "
                + ", ".join(
                    f"{g} F1 {m[g]['f1_pooled']:.3f}"
                    for g in ("CAC", "TAC")
                    if g in m and m[g]["f1_pooled"] is not None
                )
                + (f", kappa {m['kappa']:.2f}" if m.get("kappa") is not None else ""),
                flush=True,
            )


if __name__ == "__main__":
    main()
