"""Train, evaluate and package the model that calcscore ships (``calcscore/models/default``).

Everything comes from synthetic phantoms generated here (no data is read or downloaded):

1. a training cohort (participants 0 .. n_train - 1, soft and sharp reconstructions), cached on
   the network grid and split by participant into training and validation scans;
2. CNN1, then CNN2 on the voxels CNN1 calls calcium (calcscore.training);
3. a held-out test cohort (other participants, whole-chest scans), scored with whole-scan
   inference and compared with the phantoms' voxel-exact labels, soft and sharp separately;
4. ``cnn1.pt``, ``cnn2.pt``, ``model.json`` (settings, seeds, times, hardware, metrics) and
   ``MODEL_CARD.md`` written to ``--out``.

Run on CPU (this is how the shipped model was made; see MODEL_CARD.md for the command) or on a
GPU with ``--device cuda --preset paper``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from calcscore.inference import InferenceOptions, Model, segment
from calcscore.metrics import ScanCase, evaluate, label_confusion
from calcscore.phantom import make_cohort
from calcscore.sampling import cache_scan, load_cached
from calcscore.training import get_config, split_by_participant, train

log = logging.getLogger("build_default_model")


def cache_cohort_in_memory(n: int, *, seed: int, size: str, start: int, cache: Path, kernels):
    scans = []
    for cs in make_cohort(n, seed=seed, size=size, start=start, kernels=kernels):
        folder = cache / f"{cs.scan_id}_{size}"
        if (folder / "meta.json").is_file():  # made by an earlier run with the same seed
            scans.append(load_cached(folder))
            continue
        scans.append(cache_scan(cs.volume, cs.labels, folder, scan_id=f"{cs.scan_id}_{size}",
                                participant_id=cs.participant_id))
    return scans


def _all_calcium(cases, n_scans: int) -> dict[str, float]:
    """Sensitivity and mean FP volume of 'any calcium label' (the paper's CNN1-alone figures)."""
    tp = fp = fn = 0.0
    for c in cases:
        ref, pred = c.reference.labels > 0, c.prediction.labels > 0
        v = c.reference.voxel_volume_mm3
        tp += float((ref & pred).sum()) * v
        fp += float((~ref & pred).sum()) * v
        fn += float((ref & ~pred).sum()) * v
    return {"sensitivity_pooled": tp / (tp + fn) if tp + fn else float("nan"),
            "fp_volume_mm3_mean": fp / n_scans}


def evaluate_model(model: Model, *, n: int, seed: int, start: int, size: str, device: str) -> dict:
    cases: dict[str, list] = {"soft": [], "sharp": []}
    cnn1_cases: dict[str, list] = {"soft": [], "sharp": []}
    confusion: dict[str, pd.DataFrame] = {}
    seconds = []
    for cs in make_cohort(n, seed=seed, size=size, start=start):
        t = time.perf_counter()
        seg = segment(cs.volume, model, InferenceOptions(device=device, channels_last=True))
        seconds.append(time.perf_counter() - t)
        cases[cs.kernel].append(ScanCase(cs.scan_id, cs.labels, seg.labels, cs.volume))
        cnn1_cases[cs.kernel].append(ScanCase(cs.scan_id, cs.labels, seg.cnn1_labels(cs.volume), cs.volume))
        conf = label_confusion(cs.labels, seg.labels)
        confusion[cs.kernel] = conf if cs.kernel not in confusion else confusion[cs.kernel] + conf
    out = {"inference_seconds_mean": float(np.mean(seconds)), "n_participants": n}
    for kernel, cs_list in cases.items():
        ev = evaluate(cs_list)
        summary = ev.summary
        res = {"n_scans": len(cs_list), "report": ev.report(),
               "label_confusion_mm3": confusion[kernel].round(1).values.tolist()}
        cnn1_summary = evaluate(cnn1_cases[kernel]).summary
        res["cnn1_alone"] = {g: {k: float(cnn1_summary.loc[g, k]) for k in
                                 ("sensitivity_pooled", "fp_volume_mm3_mean", "f1_pooled")}
                             for g in ("CAC", "TAC")}
        res["cnn1_alone"]["all_calcium"] = _all_calcium(cnn1_cases[kernel], len(cs_list))
        res["all_calcium"] = _all_calcium(cs_list, len(cs_list))
        for name in summary.index:
            r = summary.loc[name]
            res[name] = {k: (None if not np.isfinite(r[k]) else float(r[k])) for k in
                         ("sensitivity_pooled", "sensitivity_mean", "fp_volume_mm3_mean", "f1_pooled",
                          "f1_mean", "ref_volume_mm3_mean")}
        agreement = ev.risk_agreement()
        if agreement is not None:
            table, kappa = agreement
            res["kappa"] = float(kappa.kappa)
            res["category_agreement"] = float(kappa.agreement)
            res["risk_confusion"] = table.astype(int).values.tolist()
        out[kernel] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, help="cache and training folders (default: a calcscore-build folder in the temp dir)")
    ap.add_argument("--preset", default="workshop", choices=["workshop", "paper"])
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--n-train", type=int, default=24, help="training + validation participants")
    ap.add_argument("--n-full", type=int, default=4, help="of those, whole-chest scans (the rest medium)")
    ap.add_argument("--train-size", default="medium", choices=["medium", "small"],
                    help="size of the training scans that are not whole-chest")
    ap.add_argument("--n-test", type=int, default=6, help="held-out participants (whole-chest scans)")
    ap.add_argument("--test-size", default="full")
    ap.add_argument("--cnn1-iterations", type=int, default=3000)
    ap.add_argument("--cnn2-iterations", type=int, default=1500)
    ap.add_argument("--cnn2-scans", type=int, default=None,
                    help="train CNN2 on the first N training scans only (running CNN1 over every "
                         "candidate of every scan is the costly part on a CPU)")
    ap.add_argument("--select-by", default="val_balanced_accuracy",
                    choices=["val_loss", "val_balanced_accuracy"])
    ap.add_argument("--max-dilation", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--evaluate-only", action="store_true",
                    help="re-run only the test evaluation of the model in OUT (e.g. after the phantom "
                         "generator changed) and update model.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.evaluate_only:
        info = json.loads((out / "model.json").read_text())
        t3 = time.perf_counter()
        info["test_metrics"] = evaluate_model(Model.load(out, device=args.device), n=args.n_test,
                                              seed=args.seed, start=args.n_train, size=args.test_size,
                                              device=args.device)
        info["seconds"]["evaluation"] = time.perf_counter() - t3
        (out / "model.json").write_text(json.dumps(info, indent=1))
        return
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / "calcscore-build"
    cache = work / "cache"
    t0 = time.perf_counter()
    scans = cache_cohort_in_memory(args.n_full, seed=args.seed, size="full", start=0, cache=cache,
                                   kernels=("soft", "sharp"))
    scans += cache_cohort_in_memory(args.n_train - args.n_full, seed=args.seed, size=args.train_size,
                                    start=args.n_full, cache=cache, kernels=("soft", "sharp"))
    t_data = time.perf_counter() - t0
    changes = {"device": args.device, "seed": args.seed, "precision": args.precision,
               "channels_last": args.channels_last, "select_by": args.select_by}
    cnn1_changes = dict(changes)
    if args.max_dilation:  # receptive field 4 d + 3, and 11 x 11 auxiliary labels like the preset
        cnn1_changes.update(max_dilation=args.max_dilation, patch_size=4 * args.max_dilation + 3 + 10)
    cfg1 = get_config(args.preset, "cnn1", max_iterations=args.cnn1_iterations, **cnn1_changes)
    cfg2 = get_config(args.preset, "cnn2", max_iterations=args.cnn2_iterations, **changes)
    val_ids = split_by_participant([s.participant_id for s in scans], val_fraction=cfg1.val_fraction,
                                   rng=args.seed)
    train_scans = [s for s in scans if s.participant_id not in val_ids]
    val_scans = [s for s in scans if s.participant_id in val_ids]
    t1 = time.perf_counter()
    train(cfg1, train_scans, val_scans, work / "cnn1")
    t_cnn1 = time.perf_counter() - t1
    t2 = time.perf_counter()
    cnn2_scans = train_scans[:args.cnn2_scans] if args.cnn2_scans else train_scans
    cnn2_val = val_scans[:max(2, args.cnn2_scans // 4)] if args.cnn2_scans else val_scans
    train(cfg2, cnn2_scans, cnn2_val, work / "cnn2", cnn1=work / "cnn1")
    t_cnn2 = time.perf_counter() - t2
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "cnn1" / "cnn1.pt", out / "cnn1.pt")
    shutil.copy(work / "cnn2" / "cnn2.pt", out / "cnn2.pt")
    model = Model.load(out, device=args.device)
    t3 = time.perf_counter()
    metrics = evaluate_model(model, n=args.n_test, seed=args.seed, start=args.n_train,
                             size=args.test_size, device=args.device)
    t_eval = time.perf_counter() - t3
    info = {
        "trained_on": "synthetic phantoms only (calcscore.phantom)",
        "command": "python scripts/build_default_model.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "work"),
        "seed": args.seed,
        "training_participants": {"ids": f"P{0:04d}..P{args.n_train - 1:04d}", "whole_chest": args.n_full,
                                  "heart_region_medium": args.n_train - args.n_full,
                                  "heart_region_size": args.train_size,
                                  "validation": sorted(val_ids)},
        "cnn2_training_scans": [s.scan_id for s in cnn2_scans],
        "cnn2_validation_scans": [s.scan_id for s in cnn2_val],
        "test_participants": f"P{args.n_train:04d}..P{args.n_train + args.n_test - 1:04d} ({args.test_size})",
        "cnn1_config": cfg1.to_dict(), "cnn2_config": cfg2.to_dict(),
        "seconds": {"data": t_data, "cnn1": t_cnn1, "cnn2": t_cnn2, "evaluation": t_eval},
        "hardware": {"device": args.device, "cpu": platform.processor() or platform.machine(),
                     "threads": torch.get_num_threads(),
                     "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "torch": torch.__version__,
        "test_metrics": metrics,
    }
    (out / "model.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in metrics.items() if k in ("soft", "sharp")}, indent=1)[:4000])


if __name__ == "__main__":
    main()
