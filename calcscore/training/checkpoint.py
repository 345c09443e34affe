"""What a training run writes and reads back: the kept network (``cnn1.pt`` / ``cnn2.pt``),
``metrics.csv`` and ``checkpoint.pt``, and the :class:`TrainState` a checkpoint carries.

``checkpoint.pt`` holds the model, the optimizer, the :class:`TrainState` (iteration, metrics,
the kept weights' selection score, the running training loss) and the random states of the torch
generators and of every process's patch sampler; it is written atomically, so a run killed at
any moment resumes from the last one and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calcscore.bundle import atomic_torch_save, load_model_file, load_network, save_network
from calcscore.errors import CalcscoreError, InputError
from calcscore.sampling import PatchSampler
from calcscore.training.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CANDIDATES = "cnn1-candidates.npz"
#: the checkpoint key of :attr:`TrainState.best_score` before it was named so (it held the same
#: number, minus the balanced accuracy with ``select_by="val_balanced_accuracy"``)
OLD_BEST_KEY = "best_val_loss"


def save_model(model: nn.Module, config: TrainConfig, path: str | Path, **extra: Any) -> Path:
    """Write ``{"config": dict, "state_dict": ...}`` atomically (:func:`calcscore.bundle.save_network`).

    Args:
        model: the network (DDP-wrapped or not).
        config: its settings, stored as a dict.
        path: the file to write, e.g. ``out_dir / "cnn1.pt"``.
        extra: further keys stored beside ``config`` and ``state_dict``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    return save_network(model, config.to_dict(), path, **extra)


def load_model(
    path: str | Path, *, network: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild a network from a saved ``cnn1.pt`` / ``cnn2.pt`` (or the folder holding it).

    Args:
        path: the file or its folder.
        network: "cnn1" or "cnn2": the file to pick in a folder and the kind it must hold;
            None takes either (:func:`calcscore.bundle.load_network`).
        device: where the weights go.

    Returns:
        (the network in eval mode, its :class:`TrainConfig`).
    """
    model, config = load_network(path, network=network, device=device)
    return model, TrainConfig.from_dict(config)


def write_metrics(rows: list[dict[str, Any]], path: Path) -> None:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def selection_score(config: TrainConfig, row: dict[str, Any]) -> float:
    """Lower is better: the validation loss, or minus the balanced accuracy (``select_by``)."""
    if config.select_by == "val_balanced_accuracy":
        return -row["val_balanced_accuracy"]
    return row["val_loss"]


@dataclass
class TrainState:
    """Where a run stands: what ``checkpoint.pt`` carries besides the weights, the optimizer and
    the random states.

    ``best_score``: the selection score of the kept weights (:func:`selection_score`, lower is
    better): the validation loss when ``select_by`` is ``"val_loss"``, minus the balanced
    accuracy when it is ``"val_balanced_accuracy"``; inf before any is kept.
    ``running_loss`` / ``running_count``: the sum and number of training losses since the last
    evaluation (their mean is the next metrics row's ``train_loss``).
    """

    iteration: int = 0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    select_by: str = "val_loss"
    best_score: float = math.inf
    running_loss: float = 0.0
    running_count: int = 0

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], select_by: str) -> TrainState:
        """The state of a loaded checkpoint; one written before ``best_score`` had its name
        holds it as ``best_val_loss`` (and no ``select_by``: the run's, which resuming checks)."""
        best = ckpt["best_score"] if "best_score" in ckpt else ckpt[OLD_BEST_KEY]
        loss, count = ckpt["running"]
        return cls(
            ckpt["iteration"],
            ckpt["metrics"],
            ckpt.get("select_by", select_by),
            best,
            float(loss),
            int(count),
        )


def random_states(sampler: PatchSampler, device: torch.device) -> dict[str, Any]:
    """This process's random states: its patch sampler's and the torch generators'."""
    return {
        "sampler": sampler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def save_checkpoint(
    path: Path,
    state: TrainState,
    *,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    states: list[dict[str, Any]],
) -> None:
    """Write ``checkpoint.pt`` atomically.

    Args:
        path: the checkpoint file.
        state: the run's :class:`TrainState`.
        config: the run's settings (checked when resuming, :func:`load_checkpoint`).
        model: the network being trained (its weights are stored on the CPU).
        optimizer: its optimizer.
        states: :func:`random_states` of every process, in rank order.
    """
    atomic_torch_save(
        {
            "iteration": state.iteration,
            "config": config.to_dict(),
            "world_size": len(states),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "metrics": state.metrics,
            "best_score": state.best_score,
            "select_by": state.select_by,
            "running": (state.running_loss, state.running_count),
            "sampler": [s["sampler"] for s in states],
            "torch_rng": [s["torch_rng"] for s in states],
            "cuda_rng": [s["cuda_rng"] for s in states],
        },
        path,
    )


def load_checkpoint(
    path: Path, config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[TrainState, dict[str, Any]]:
    """Load ``checkpoint.pt`` into ``model`` and ``optimizer`` after checking that it was written
    with this run's settings (those that may change on resuming aside: ``max_iterations``,
    ``device``, ``eval_every``, ``checkpoint_every``).

    Args:
        path: the checkpoint file.
        config: this run's settings; others than the checkpoint's raise a CalcscoreError.
        model: the network to load the weights into.
        optimizer: the optimizer to load the state into.

    Returns:
        (its :class:`TrainState`, the checkpoint's contents for :func:`restore_random_states`).
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    _check_resumable(ckpt["config"], config, path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return TrainState.from_checkpoint(ckpt, config.select_by), ckpt


def restore_random_states(
    ckpt: dict[str, Any],
    sampler: PatchSampler,
    *,
    rank: int,
    world: int,
    device: torch.device,
    seed: int,
) -> None:
    """Continue this process's random streams from a checkpoint; with another number of
    processes than wrote it, restart them from ``seed`` and the iteration (with a warning).

    Args:
        ckpt: the checkpoint's contents (:func:`load_checkpoint`).
        sampler: this process's patch sampler.
        rank: this process's rank.
        world: the number of processes now.
        device: this process's device (a CUDA device's generator is restored too).
        seed: the run's seed, for restarted streams.
    """
    if ckpt["world_size"] == world:
        sampler.load_state_dict(ckpt["sampler"][rank])
        torch.set_rng_state(ckpt["torch_rng"][rank])
        if device.type == "cuda" and ckpt["cuda_rng"][rank] is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"][rank], device)
    else:
        start = ckpt["iteration"]
        log.warning(
            "checkpoint written by %d processes, resuming with %d: random streams restart",
            ckpt["world_size"],
            world,
        )
        sampler.rng = np.random.default_rng([seed, start, rank])
        torch.manual_seed(seed * 7919 + start * 31 + rank)


_RESUME_FREE = {"max_iterations", "device", "eval_every", "checkpoint_every"}


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    # read back as a config: a setting added after the checkpoint was written takes its default,
    # and values are normalised as the run's own are (z_crop_mm: a tuple, not a JSON list)
    then = TrainConfig.from_dict(saved).to_dict()
    diff = {
        k: (saved.get(k, then[k]), v)
        for k, v in config.to_dict().items()
        if k not in _RESUME_FREE and then[k] != v
    }
    if diff:
        desc = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CalcscoreError(
            f"{path}: the checkpoint was written with other settings ({desc}); "
            "use another output folder or the same settings"
        )


_ARCHITECTURE = (
    "width",
    "max_dilation",
    "head_width",
    "aux",
    "width_scale",
    "dense_width",
    "patch_size",
)


def _read_saved(path: str | Path, network: str) -> tuple[Path, dict[str, Any]]:
    """A saved ``network`` (its ``.pt`` file or the folder holding it) to start from: the file and
    its contents, checked to be a calcscore model of that network."""
    p = Path(path)
    p = p / f"{network}.pt" if p.is_dir() else p
    if not p.is_file():
        raise InputError(
            p, "no such model file to start from", f"pass a saved {network}.pt or its folder"
        )
    saved = load_model_file(p)
    if not isinstance(saved, dict) or "config" not in saved or "state_dict" not in saved:
        raise InputError(p, "is not a calcscore model (needs 'config' and 'state_dict')")
    if saved["config"].get("network") != network:
        raise InputError(
            p,
            f"holds a {saved['config'].get('network')}, not a {network}",
            f"start {network} training from a {network}.pt",
        )
    return p, saved


def load_initial(model: nn.Module, path: str | Path, config: TrainConfig) -> None:
    """Load the saved network ``path`` into ``model`` (built from ``config``), after checking that
    its weights have the model's shapes (another architecture gets an error naming the settings).

    Args:
        model: the freshly built network.
        path: a saved ``cnn1.pt`` / ``cnn2.pt`` or the folder holding it.
        config: the run's settings; ``config.network`` names the file in a folder.
    """
    p, saved = _read_saved(path, config.network)
    if {k: tuple(v.shape) for k, v in model.state_dict().items()} != {
        k: tuple(v.shape) for k, v in saved["state_dict"].items()
    }:
        a, b = saved["config"], config.to_dict()
        diff = {k: (a[k], b[k]) for k in _ARCHITECTURE if k in a and a[k] != b[k]}
        raise InputError(
            p,
            f"has another architecture than this run (saved vs run: {diff})",
            "train with the settings the saved network was made with (e.g. the same preset)",
        )
    model.load_state_dict(saved["state_dict"])


def saved_architecture(path: str | Path, network: str) -> dict[str, Any]:
    """The architecture settings (filter counts, dilations, patch size, ...) of a saved network,
    to build a run's config that ``init`` can start from (e.g. the shipped CNN1, whose dilations
    are not the workshop preset's)."""
    saved = _read_saved(path, network)[1]["config"]
    return {k: saved[k] for k in _ARCHITECTURE if k in saved}
