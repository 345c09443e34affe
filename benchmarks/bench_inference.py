"""Whole-scan inference time and peak memory, against one-patch-per-voxel classification.

    .venv/bin/python benchmarks/bench_inference.py [--model DIR] [--device cpu|cuda]
        [--slices 200] [--baseline-voxels 3000] [--variants fp32,channels_last,bf16_channels_last]

The scan is a synthetic whole-chest phantom of 512 x 512 x SLICES voxels (calcscore.phantom).
Each variant runs in its own process, so that its peak resident memory (ru_maxrss) is its own.
The baseline classifies candidate voxels one 2.5D patch each (what made the paper's
implementation take 5.5 min per scan), with the same weights: it is timed on a random sample of
``--baseline-voxels`` candidates and extrapolated to all of them; the ratio is baseline time over
fully convolutional time, both measured in this run.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def _make_scan(slices: int):
    from calcscore.phantom import make_scan

    vol, _, _ = make_scan(
        rng=123,
        kernel="soft",
        shape=(slices, 512, 512),
        spacing_mm=(1.0, 0.7, 0.7),
        slice_thickness_mm=1.0,
    )
    return vol


def child(args) -> dict:
    import torch

    from calcscore.inference import InferenceOptions, Model, body_mask, cnn2_patches, segment
    from calcscore.preprocess import normalise_hu, to_network_grid

    torch.set_num_threads(args.threads or torch.get_num_threads())
    vol = _make_scan(args.slices)
    model = Model.load(args.model, device=args.device)
    if args.variant == "patch_per_voxel":
        t0 = time.perf_counter()
        net = to_network_grid(vol)
        cand = np.argwhere((net.hu >= 130) & body_mask(net))
        rng = np.random.default_rng(0)
        sample = cand[
            rng.choice(len(cand), size=min(args.baseline_voxels, len(cand)), replace=False)
        ]
        r = (
            max(model.cnn1.receptive_field, model.cnn2.config.patch_size if model.cnn2 else 0) // 2
            + 1
        )
        norm = torch.from_numpy(np.pad(normalise_hu(net.hu), r, constant_values=-1.0)).to(
            args.device
        )
        zyx = torch.from_numpy(sample).to(args.device)
        t_pre = time.perf_counter() - t0
        t1 = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(sample), 64):  # a minibatch of voxels, one patch each
                x1 = cnn2_patches(norm, zyx[i : i + 64], model.cnn1.receptive_field, r)
                lab = model.cnn1.predict_proba(x1).argmax(1)
                if model.cnn2 is not None and bool((lab > 0).any()):
                    x2 = cnn2_patches(
                        norm, zyx[i : i + 64][lab > 0], model.cnn2.config.patch_size, r
                    )
                    model.cnn2.predict_proba(x2)
        per_voxel = (time.perf_counter() - t1) / len(sample)
        seconds = t_pre + per_voxel * len(cand)
        res = {
            "seconds": seconds,
            "n_candidates": int(len(cand)),
            "extrapolated_from": int(len(sample)),
        }
    else:
        opts = InferenceOptions(
            device=args.device,
            channels_last="channels_last" in args.variant,
            bf16="bf16" in args.variant,
            batch_slices=args.batch_slices,
            batch_cnn2=args.batch_cnn2,
        )
        if args.device.startswith("cuda"):  # warm-up (kernel selection, allocator)
            segment(vol, model, opts)
            torch.cuda.synchronize()
        runs = []
        for _ in range(args.repeat):  # the median run is reported
            t0 = time.perf_counter()
            seg = segment(vol, model, opts)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - t0, seg.seconds))
        seconds, parts = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        res = {
            "seconds": seconds,
            "n_candidates": seg.n_candidates,
            "runs": [round(r[0], 4) for r in runs],
            "parts": {k: round(v, 3) for k, v in parts.items()},
        }
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    if args.device.startswith("cuda"):
        res["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-slices", type=int, default=8)
    ap.add_argument(
        "--batch-cnn2",
        type=int,
        default=None,
        help="CNN2's voxels per batch (default: calcscore's, 32 on a CPU, 512 on a GPU)",
    )
    ap.add_argument("--baseline-voxels", type=int, default=3000)
    ap.add_argument(
        "--repeat", type=int, default=1, help="timed runs of each variant (the median is reported)"
    )
    ap.add_argument("--variants", default="patch_per_voxel,fp32,channels_last,bf16_channels_last")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return
    rows = []
    for variant in args.variants.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--device",
            args.device,
            "--slices",
            str(args.slices),
            "--baseline-voxels",
            str(args.baseline_voxels),
            "--batch-slices",
            str(args.batch_slices),
            "--repeat",
            str(args.repeat),
        ]
        if args.model:
            cmd += ["--model", args.model]
        if args.batch_cnn2:
            cmd += ["--batch-cnn2", str(args.batch_cnn2)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{variant} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append((variant, json.loads(out.stdout.strip().splitlines()[-1])))
    base = dict(rows).get("patch_per_voxel", {}).get("seconds")
    print(
        f"whole-scan inference, CNN1 + CNN2, 512 x 512 x {args.slices} phantom, device {args.device} "
        f"({platform.processor() or platform.machine()}), CNN2 batch {args.batch_cnn2 or 'default'}"
    )
    print(
        f"{'variant':<22} {'s / scan':>10} {'peak RSS GB':>12} {'peak GPU GB':>12} {'candidates':>11} "
        f"{'speed-up vs patch/voxel':>24}"
    )
    for variant, r in rows:
        if variant == "patch_per_voxel":
            ratio = "1x (baseline)"
        else:
            ratio = f"{base / r['seconds']:.0f}x" if base else "n/a (no baseline run)"
        note = (
            f" (extrapolated from {r['extrapolated_from']} voxels)"
            if "extrapolated_from" in r
            else ""
        )
        gpu = f"{r['peak_gpu_gb']:12.2f}" if "peak_gpu_gb" in r else f"{'-':>12}"
        secs = f"{r['seconds']:10.1f}" if r["seconds"] >= 10 else f"{r['seconds']:10.3f}"
        print(
            f"{variant:<22} {secs} {r['peak_rss_gb']:12.2f} {gpu} {r['n_candidates']:11d} "
            f"{ratio:>24}{note}"
        )
        if "parts" in r:
            print(
                f"{'':<22} parts (s): {r['parts']}"
                + (f"; runs (s): {r['runs']}" if len(r["runs"]) > 1 else "")
            )


if __name__ == "__main__":
    main()
