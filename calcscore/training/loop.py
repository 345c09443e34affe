"""The training run: :func:`train` on cached scans, :func:`train_from_manifest` from a manifest
(docs/method.md §5).

A run is set up (network, optimizer, samplers), resumed from its checkpoint or started, trained
for its iterations (validating every ``eval_every``, keeping the best weights, writing a
checkpoint every ``checkpoint_every``) and finished; :func:`_run` reads in that order.

Distributed training: launched with ``torchrun --nproc_per_node N -m calcscore.cli train ...``,
every process trains on its own balanced batches of ``batch_size`` patches
(DistributedDataParallel averages the gradients; the global batch is ``N * batch_size``), and
process 0 evaluates and writes the outputs. NCCL on CUDA, gloo on CPU (:mod:`calcscore.runtime`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calcscore.errors import CalcscoreError, InputError
from calcscore.networks import build_network, to_channels_last
from calcscore.runtime import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_flag,
    init_distributed,
    resolve_device,
    shutdown_distributed,
    wrap_ddp,
)
from calcscore.sampling import CachedScan, cache_cohort
from calcscore.training.checkpoint import (
    CHECKPOINT,
    METRICS,
    TrainState,
    load_checkpoint,
    load_initial,
    random_states,
    restore_random_states,
    save_checkpoint,
    save_model,
    selection_score,
    write_metrics,
)
from calcscore.training.config import TrainConfig
from calcscore.training.data import TrainingData, make_samplers, split_manifest
from calcscore.training.steps import evaluate, make_optimizer, train_step

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    out_dir: Path
    model_path: Path
    iteration: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = math.nan  # validation loss of the saved weights
    model: nn.Module | None = field(
        default=None, repr=False
    )  # the network after the last iteration


def train(
    config: TrainConfig,
    train_scans: Sequence[CachedScan],
    val_scans: Sequence[CachedScan],
    out_dir: str | Path,
    *,
    cnn1: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    max_seconds: float | None = None,
    init: str | Path | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``config.network`` on cached scans; write model, metrics and checkpoints to ``out_dir``.

    Args:
        config: every setting of the run (network, sizes, iterations, device, precision, seed).
        train_scans: cached training scans (:func:`calcscore.sampling.cache_scan`).
        val_scans: cached validation scans (empty: no validation; the last weights are kept).
        out_dir: the run's folder: ``cnn1.pt`` / ``cnn2.pt``, ``metrics.csv``, ``checkpoint.pt``.
        cnn1: the trained CNN1 (its folder or ``cnn1.pt``), needed for CNN2.
        resume: continue an existing ``checkpoint.pt`` in ``out_dir`` (the default).
        progress: a progress bar over the iterations.
        max_seconds: a time budget for the iterations of this call (data loading not counted);
            when it is spent, the run validates, writes its checkpoint and stops early, and a
            later call with the same folder goes on from there (``TrainResult.iteration`` says
            where it stopped).
        init: a saved network of the same architecture (``cnn1.pt`` / ``cnn2.pt`` or its
            folder) to start from instead of random weights (fine-tuning, or training a model
            longer without its checkpoint); the optimiser starts afresh and iterations count
            from 0. The starting weights are validated as iteration 0, so the kept model is the
            starting one unless training beats it. A checkpoint in ``out_dir`` takes precedence
            (the run resumes).
        callback: ``callback(iteration, loss)`` runs after every iteration (tests use it to
            interrupt a run).

    Returns:
        a :class:`TrainResult`: the kept model's file, the last iteration, the metrics rows.
    """
    dist = init_distributed(config.device)
    try:
        return _run(
            config,
            train_scans,
            val_scans,
            Path(out_dir),
            cnn1=cnn1,
            resume=resume,
            progress=progress,
            callback=callback,
            dist=dist,
            max_seconds=max_seconds,
            init=init,
        )
    finally:
        shutdown_distributed(dist)


def _run(
    config: TrainConfig,
    train_scans,
    val_scans,
    out_dir: Path,
    *,
    cnn1,
    resume: bool,
    progress: bool,
    callback,
    dist: DistInfo,
    max_seconds: float | None,
    init,
) -> TrainResult:
    """Set up, resume or start, train, finish."""
    if not train_scans:
        raise CalcscoreError("no training scans: the manifest's training split is empty")
    run = _set_up(config, train_scans, val_scans, out_dir, cnn1=cnn1, dist=dist, init=init)
    state = _resume_or_start(run, resume=resume, init=init)
    # wrapped after the resume: DistributedDataParallel sends process 0's weights to the others
    run.ddp_model = wrap_ddp(run.model, dist, run.device)
    _iterate(run, state, progress=progress, callback=callback, max_seconds=max_seconds)
    return _finish(run, state)


@dataclass
class _Run:
    """What a run is set up with (:func:`_set_up`)."""

    config: TrainConfig
    out_dir: Path
    dist: DistInfo
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: TrainingData
    rank_seed: np.random.SeedSequence
    #: what the kept model's file records of where its weights started
    origin: dict[str, Any] = field(default_factory=dict)
    ddp_model: nn.Module | None = None

    @property
    def model_path(self) -> Path:
        return self.out_dir / f"{self.config.network}.pt"


def _set_up(
    config: TrainConfig, train_scans, val_scans, out_dir: Path, *, cnn1, dist: DistInfo, init
) -> _Run:
    """The device, the network (identical initial weights on every process, or ``init``'s),
    its optimizer and the samplers, seeded from ``config.seed``."""
    device = resolve_device(config.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    out_dir.mkdir(parents=True, exist_ok=True)
    init_seed, val_seed, *rank_seeds = np.random.SeedSequence(config.seed).spawn(
        2 + dist.world_size
    )
    torch.manual_seed(int(init_seed.generate_state(1)[0]))
    model = build_network(config.network, config.network_params())
    if init is not None:
        load_initial(model, init, config)
    model = model.to(device)
    if config.channels_last:
        model = to_channels_last(model)
    optimizer = make_optimizer(model, config)
    data = make_samplers(
        config,
        train_scans,
        val_scans,
        out_dir,
        cnn1=cnn1,
        dist=dist,
        device=device,
        rng=rank_seeds[dist.rank],
        val_rng=val_seed,
    )
    origin = {"initialised_from": str(init)} if init is not None else {}
    return _Run(
        config, out_dir, dist, device, model, optimizer, data, rank_seeds[dist.rank], origin
    )


def _resume_or_start(run: _Run, *, resume: bool, init) -> TrainState:
    """The state of the checkpoint in the output folder (weights, optimizer and random streams
    restored), or a fresh one; a run from ``init`` validates its starting weights first."""
    config, ckpt_path = run.config, run.out_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        state, ckpt = load_checkpoint(ckpt_path, config, run.model, run.optimizer)
        restore_random_states(
            ckpt,
            run.data.sampler,
            rank=run.dist.rank,
            world=run.dist.world_size,
            device=run.device,
            seed=config.seed,
        )
        log.info("resumed %s from iteration %d", ckpt_path, state.iteration)
        return state
    torch.manual_seed(int(run.rank_seed.generate_state(2)[1]))
    state = TrainState(select_by=config.select_by)
    if init is not None and run.dist.main and run.data.val_sampler is not None:
        # the starting weights are the first candidate for the kept model
        row = {
            "iteration": 0,
            "patches": 0,
            "train_loss": math.nan,
            **_validate(run),
            "patches_per_s": math.nan,
        }
        state.metrics.append(row)
        write_metrics(state.metrics, run.out_dir / METRICS)
        state.best_score = selection_score(config, row)
        save_model(
            run.model, config, run.model_path, iteration=0, val_loss=row["val_loss"], **run.origin
        )
        log.info("%s starts from %s (validation loss %.4f)", config.network, init, row["val_loss"])
    return state


def _validate(run: _Run) -> dict[str, float]:
    sampler, voxels = run.data.val_sampler, run.data.val_voxels
    assert sampler is not None and voxels is not None  # callers check val_sampler
    return evaluate(run.config, run.model, sampler, voxels, device=run.device)


def _iterate(
    run: _Run, state: TrainState, *, progress: bool, callback, max_seconds: float | None
) -> None:
    """Train from ``state.iteration`` to ``config.max_iterations`` (or until ``max_seconds`` are
    spent), validating every ``eval_every`` and writing a checkpoint every ``checkpoint_every``
    iterations and at the end."""
    from tqdm.auto import tqdm

    config, dist = run.config, run.dist
    t0, start = time.perf_counter(), state.iteration
    bar = tqdm(
        total=config.max_iterations,
        initial=start,
        desc=f"training {config.network}",
        unit="it",
        disable=not (progress and dist.main),
        dynamic_ncols=True,
    )
    run.model.train()
    # the training losses since the last evaluation, summed on the device (no wait per step)
    running = torch.tensor(float(state.running_loss), dtype=torch.float64, device=run.device)
    try:
        while state.iteration < config.max_iterations:
            loss = train_step(
                config,
                run.ddp_model or run.model,
                run.optimizer,
                run.data.sampler.sample(config.batch_size),
                device=run.device,
            )
            state.iteration += 1
            it = state.iteration
            running += loss.double()
            state.running_count += 1
            bar.update(1)
            last = it == config.max_iterations or _time_up(t0, max_seconds, dist, it)
            if it % config.eval_every == 0 or last:
                per_s = (
                    (it - start)
                    * config.batch_size
                    * dist.world_size
                    / max(time.perf_counter() - t0, 1e-9)
                )
                row = _evaluate_and_keep(run, state, running, per_s)
                if dist.main:
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
            if it % config.checkpoint_every == 0 or last:
                state.running_loss = float(running)
                states = all_gather_objects(dist, random_states(run.data.sampler, run.device))
                if dist.main:
                    save_checkpoint(
                        run.out_dir / CHECKPOINT,
                        state,
                        config=config,
                        model=run.model,
                        optimizer=run.optimizer,
                        states=states,
                    )
            if callback is not None:
                callback(it, float(loss))
            if last and it < config.max_iterations:
                log.info(
                    "%s: time budget of %.0f s spent, stopped at iteration %d of %d",
                    config.network,
                    max_seconds,
                    it,
                    config.max_iterations,
                )
                break
    finally:
        bar.close()


def _evaluate_and_keep(
    run: _Run, state: TrainState, running: torch.Tensor, patches_per_s: float
) -> dict[str, Any]:
    """The metrics row of this iteration (the mean training loss since the last one resets);
    process 0 validates, appends it to metrics.csv and keeps the weights when they score best."""
    config, it, world = run.config, state.iteration, run.dist.world_size
    row: dict[str, Any] = {
        "iteration": it,
        "patches": it * config.batch_size * world,
        "train_loss": float(running) / max(state.running_count, 1),
        "val_loss": math.nan,
        "val_accuracy": math.nan,
        "val_balanced_accuracy": math.nan,
        "patches_per_s": patches_per_s,
    }
    running.zero_()
    state.running_loss, state.running_count = 0.0, 0
    if run.dist.main:
        if run.data.val_sampler is not None:
            row.update(_validate(run))
        state.metrics.append(row)
        write_metrics(state.metrics, run.out_dir / METRICS)
        score = selection_score(config, row) if run.data.val_sampler is not None else -it
        if score < state.best_score:
            state.best_score = score
            save_model(
                run.model,
                config,
                run.model_path,
                iteration=it,
                val_loss=row["val_loss"],
                **run.origin,
            )
    return row


def _finish(run: _Run, state: TrainState) -> TrainResult:
    """Keep the last weights when no evaluation kept any; the result."""
    config = run.config
    if run.dist.main and not run.model_path.is_file():
        save_model(
            run.model,
            config,
            run.model_path,
            iteration=state.iteration,
            val_loss=math.nan,
            **run.origin,
        )
    best_val_loss = math.nan
    if run.data.val_sampler is not None and state.metrics:
        best_val_loss = min(state.metrics, key=lambda r: selection_score(config, r))["val_loss"]
    return TrainResult(
        run.out_dir, run.model_path, state.iteration, state.metrics, best_val_loss, run.model.eval()
    )


def _time_up(t0: float, max_seconds: float | None, dist: DistInfo, it: int) -> bool:
    """Whether the time budget is spent; with several processes, process 0's clock decides for
    all, every 10th iteration (so that they stop at the same iteration)."""
    if max_seconds is None:
        return False
    up = time.perf_counter() - t0 >= max_seconds
    if dist.enabled:
        if it % 10:
            return False
        up = broadcast_flag(dist, up)
    return up


def train_from_manifest(
    config: TrainConfig,
    manifest: str | Path,
    out_dir: str | Path,
    *,
    cnn1: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    max_seconds: float | None = None,
    init: str | Path | None = None,
) -> TrainResult:
    """Read a manifest, cache its scans on the network grid, split by participant, train.

    An optional ``split`` column (train / val / test) decides the subsets; otherwise the
    participants are split with ``config.val_fraction`` (seeded). Test rows are never used.

    Args:
        config: the run's settings (:func:`train`).
        manifest: a manifest file (:func:`calcscore.manifest.read_manifest`) with ``labels``.
        out_dir: the run's folder.
        cnn1: the trained CNN1 (folder or file), for CNN2; its folder's ``cache`` is reused
            when ``cache_dir`` is None.
        cache_dir: where the scans are cached (default: CNN1's cache, else ``out_dir/cache``).
        progress, resume, max_seconds, init: as for :func:`train`.

    Returns:
        the :class:`TrainResult` of :func:`train`.
    """
    from calcscore.manifest import read_manifest

    df = read_manifest(manifest)
    if "labels" not in df.columns or df["labels"].isna().all():
        raise InputError(
            manifest,
            "has no labels column with reference annotations",
            "training needs a labels path for every scan",
        )
    df_train, df_val = split_manifest(df, val_fraction=config.val_fraction, rng=config.seed)
    out_dir = Path(out_dir)
    if cache_dir is None:
        sibling = Path(cnn1) / "cache" if cnn1 is not None and Path(cnn1).is_dir() else None
        cache_dir = sibling if sibling is not None and sibling.is_dir() else out_dir / "cache"
    dist = init_distributed(config.device)
    try:
        if dist.enabled:  # process 0 writes the cache, the others read it
            if dist.main:
                cache_cohort(_concat_frames(df_train, df_val), cache_dir, progress=progress)
            barrier(dist)
        train_scans = cache_cohort(df_train, cache_dir, progress=progress and dist.main)
        val_scans = cache_cohort(df_val, cache_dir, progress=progress and dist.main)
        log.info(
            "%d training and %d validation scans (%d and %d participants)",
            len(train_scans),
            len(val_scans),
            df_train["participant_id"].nunique(),
            df_val["participant_id"].nunique(),
        )
        return train(
            config,
            train_scans,
            val_scans,
            out_dir,
            cnn1=cnn1,
            progress=progress,
            resume=resume,
            max_seconds=max_seconds,
            init=init,
        )
    finally:
        shutdown_distributed(dist)


def _concat_frames(*frames):
    import pandas as pd

    return pd.concat(frames)
