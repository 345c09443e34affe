"""Training throughput (patches per second) of CNN1 and CNN2, paper and workshop settings.

    .venv/bin/python benchmarks/bench_training.py [--device cpu|cuda] [--iterations 3]
        [--threads N] [--only paper-cnn1,workshop-cnn1,...]

Each row times whole training steps as :func:`calcscore.training.train` runs them: a balanced
minibatch cut on the device from a cached phantom scan (:class:`calcscore.sampling.PatchSampler`),
forward, loss (with CNN1's auxiliary losses), backward and an Adam step. One warm-up step, then
the best of ``--iterations`` single steps (steps are seconds long on a CPU). The ``vs fp32``
column is the speed-up over the same network in fp32; GFLOP/s counts the forward and backward
convolutions and dense layers (torch's FlopCounterMode). The loader rows time patch cutting alone.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from calcscore.networks import build_network
from calcscore.sampling import PatchSampler, VolumeStore, cache_scan, calcium_pools
from calcscore.training import get_config, make_optimizer, resolve_device, train_step

VARIANTS = {
    "fp32": {},
    "channels_last": {"channels_last": True},
    "bf16": {"precision": "bf16"},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
}


def phantom_store(device: torch.device, folder: Path) -> VolumeStore:
    """One 'small' phantom scan (about 100 x 250 x 250 on the network grid), cached."""
    from calcscore.phantom import make_scan

    vol, lab, _ = make_scan(rng=0, kernel="soft", size="small")
    scan = cache_scan(vol, lab, folder / "scan", scan_id="bench")
    return VolumeStore([scan], device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_gflop_per_patch(config, store: VolumeStore) -> float:
    """Forward + backward GFLOP per patch, counted by torch's FlopCounterMode on a 2-patch step."""
    from torch.utils.flop_counter import FlopCounterMode

    config = replace(config, batch_size=2, precision="fp32", channels_last=False)
    model = build_network(config.network, config.network_params()).to(store.device).train()
    optimizer = make_optimizer(model, config)
    batch = PatchSampler(
        store,
        *calcium_pools(store),
        patch_size=config.patch_size,
        label_size=config.label_size,
        rng=0,
    ).sample(2)
    with FlopCounterMode(display=False) as counter:
        train_step(config, model, optimizer, batch, device=store.device)
    return counter.get_total_flops() / 2 / 1e9


def time_training(config, store: VolumeStore, *, iterations: int, batch_size: int | None) -> float:
    """Patches per second of whole training steps (best single step after one warm-up)."""
    device = store.device
    if batch_size:
        config = replace(config, batch_size=batch_size)
    torch.manual_seed(0)
    model = build_network(config.network, config.network_params()).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    optimizer = make_optimizer(model, config)
    sampler = PatchSampler(
        store,
        *calcium_pools(store),
        patch_size=config.patch_size,
        label_size=config.label_size,
        rng=0,
    )
    best = float("inf")
    for i in range(iterations + 1):
        _sync(device)
        t0 = time.perf_counter()
        train_step(config, model, optimizer, sampler.sample(config.batch_size), device=device)
        _sync(device)
        if i > 0:
            best = min(best, time.perf_counter() - t0)
    return config.batch_size / best


def time_loader(
    store: VolumeStore, patch_size: int, label_size: int | None, *, batch: int, repeats: int = 5
) -> float:
    sampler = PatchSampler(
        store, *calcium_pools(store), patch_size=patch_size, label_size=label_size, rng=0
    )
    sampler.sample(batch)
    _sync(store.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        sampler.sample(batch)
    _sync(store.device)
    return repeats * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--iterations", type=int, default=3, help="timed steps per row (after 1 warm-up)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="override every config's batch size"
    )
    ap.add_argument(
        "--only",
        default="paper-cnn1,workshop-cnn1,paper-cnn2,workshop-cnn2",
        help="comma-separated rows: PRESET-NETWORK",
    )
    ap.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated of {list(VARIANTS)}"
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"torch {torch.__version__}, device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = phantom_store(device, Path(tmp))
        scan = store.scans[0]
        print(
            f"phantom on the network grid: {'x'.join(map(str, scan.shape))}, "
            f"{len(scan.calcium_index)} calcium and {len(scan.background_index)} background candidates"
        )
        print(
            f"\n{'config':<14} {'variant':<20} {'batch':>5} {'RF':>4} {'patch':>5} "
            f"{'patches/s':>10} {'vs fp32':>8} {'GFLOP/s':>8}"
        )
        for row in args.only.split(","):
            preset, network = row.split("-")
            base = get_config(preset, network, device=str(device))
            gflop = step_gflop_per_patch(base, store)
            print(f"{row}: {gflop:.3g} GFLOP per patch (forward + backward)")
            fp32 = None
            for name in args.variants.split(","):
                cfg = replace(base, **VARIANTS[name])
                rate = time_training(
                    cfg, store, iterations=args.iterations, batch_size=args.batch_size
                )
                fp32 = rate if name == "fp32" else fp32
                ratio = f"{rate / fp32:.2f}x" if fp32 else "-"
                bs = args.batch_size or cfg.batch_size
                print(
                    f"{row:<14} {name:<20} {bs:>5} {cfg.receptive_field:>4} {cfg.patch_size:>5} "
                    f"{rate:>10.1f} {ratio:>8} {rate * gflop:>8.0f}",
                    flush=True,
                )
        print(f"\n{'loader (patch cutting only)':<36} {'batch':>5} {'patch':>5} {'patches/s':>10}")
        for size, label in ((155, 25), (45, 11), (65, None)):
            rate = time_loader(store, size, label, batch=64)
            print(
                f"{'balanced 2.5D patches + labels' if label else 'balanced 2.5D patches':<36} "
                f"{64:>5} {size:>5} {rate:>10.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
