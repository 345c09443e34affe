"""Training CNN1 and CNN2 (../shared/METHOD.md §5).

:class:`TrainConfig` holds every setting; :func:`paper_config` gives the paper's and
:func:`workshop_config` a ~50x cheaper one for teaching on a 2-core CPU. :func:`train` trains
one network on cached scans (:mod:`calcscore.sampling`); :func:`train_from_manifest` reads and
caches a manifest, splits it by participant and calls :func:`train`.

An output folder holds ``cnn1.pt`` or ``cnn2.pt`` (``{"config": dict, "state_dict": ...}``, the
weights with the best validation score so far: the lowest loss, or the highest balanced accuracy
with ``select_by="val_balanced_accuracy"``), ``metrics.csv`` (one row per evaluation) and
``checkpoint.pt`` (model, optimizer, iteration and the random states of the torch generators and
of every process's patch sampler, written atomically every ``checkpoint_every`` iterations).
Running :func:`train` again on the same folder resumes from the checkpoint and ends with the same
weights as an uninterrupted run (bit for bit on a CPU; on CUDA as far as cuDNN's kernels are
deterministic, i.e. with ``torch.use_deterministic_algorithms(True)``).

Distributed training: launched with ``torchrun --nproc_per_node N -m calcscore.cli train ...``,
every process trains on its own balanced batches of ``batch_size`` patches
(DistributedDataParallel averages the gradients; the global batch is ``N * batch_size``), and
process 0 evaluates and writes the outputs. NCCL on CUDA, gloo on CPU.

L2 regularisation follows Lasagne, which the authors used: ``l2 * sum(w ** 2)`` over convolution
and dense weights (not biases or batch-norm parameters), i.e. Adam's ``weight_decay = 2 * l2``.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calcscore.bundle import NETWORKS, atomic_torch_save, load_network, save_network
from calcscore.constants import PAD_NORMALISED, scale_hu
from calcscore.errors import CalcscoreError, InputError
from calcscore.inference import InferenceOptions, cnn1_proba
from calcscore.labels import N_CLASSES
from calcscore.networks import CNN1, build_network, regularised_parameters
from calcscore.runtime import (
    autocast,
    init_distributed,
    resolve_device,
    unwrap_ddp,
)
from calcscore.sampling import (
    CachedScan,
    PatchSampler,
    VolumeStore,
    VoxelPool,
    cache_cohort,
    calcium_pools,
)

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
CANDIDATES = "cnn1-candidates.npz"


@dataclass
class TrainConfig:
    """Every training setting. The defaults are the paper's CNN1 (see :func:`paper_config`).

    ``batch_size`` is per process; ``max_dilation`` sets CNN1's receptive field (4 d + 3);
    ``patch_size`` must be the receptive field plus an even number for CNN1 (155 = 131 + 24, so
    the auxiliary outputs see 25 x 25 labelled pixels) and is CNN2's input size (65).
    """

    network: str = "cnn1"
    # CNN1
    width: int = 32
    max_dilation: int = 32
    head_width: int = 128
    aux: bool = True
    gamma: float = 0.05
    # CNN2
    width_scale: float = 1.0
    dense_width: int = 256
    # both
    patch_size: int = 155
    dropout: float = 0.35
    l2: float = 5e-5
    batch_size: int = 64
    learning_rate: float = 5e-4
    max_iterations: int = 100_000
    eval_every: int = 1000
    checkpoint_every: int = 1000
    val_samples: int = 2048
    val_fraction: float = 1.0 / 7.0  # of the participants that are not test (paper: 10 of 70 %)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    channels_last: bool = False
    #: which validation figure picks the saved weights: "val_loss" (lowest) or
    #: "val_balanced_accuracy" (highest; robust when the loss rises from over-confidence while
    #: the classification still improves)
    select_by: str = "val_loss"
    preset: str = "paper"

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"`network` must be one of {NETWORKS}, got {self.network=}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"`precision` must be 'fp32' or 'bf16', got {self.precision=}")
        if self.select_by not in ("val_loss", "val_balanced_accuracy"):
            raise ValueError(f"`select_by` must be 'val_loss' or 'val_balanced_accuracy', got {self.select_by=}")
        for name in ("batch_size", "max_iterations", "eval_every", "checkpoint_every", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"`batch_size` must be >= 2 (half calcium, half background), got {self.batch_size=}")
        if self.network == "cnn1":
            rf = 4 * self.max_dilation + 3
            if self.patch_size < rf or (self.patch_size - rf) % 2:
                raise ValueError(f"CNN1's `patch_size` must be its receptive field ({rf}) plus an even "
                                 f"number, got {self.patch_size=}")

    @property
    def receptive_field(self) -> int:
        return 4 * self.max_dilation + 3 if self.network == "cnn1" else self.patch_size

    @property
    def label_size(self) -> int | None:
        """Side of the auxiliary label patches (CNN1 with aux outputs), else None."""
        if self.network == "cnn1" and self.aux:
            return self.patch_size - self.receptive_field + 1
        return None

    def network_params(self) -> dict[str, Any]:
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def paper_config(network: str = "cnn1", **changes: Any) -> TrainConfig:
    """The paper's settings: Adam 5e-4, batch 64, 131 px receptive field and 155 px patches,
    dropout 35 % and L2 5e-5 for CNN1; 65 px patches, dropout 50 % and L2 1e-5 for CNN2."""
    if network == "cnn2":
        base = TrainConfig(network="cnn2", patch_size=65, dropout=0.5, l2=1e-5, preset="paper")
    else:
        base = TrainConfig(network="cnn1", preset="paper")
    return replace(base, **changes)


def workshop_config(network: str = "cnn1", **changes: Any) -> TrainConfig:
    """A teaching configuration, ~50x cheaper per patch than the paper's, that trains a useful
    model on a 2-core CPU in about 15 minutes.

    CNN1: 16 filters (head 64), largest dilation 8 (receptive field 35 px, 23 mm in-plane),
    45 px patches (11 x 11 auxiliary labels), batch 32, 3,000 iterations: 0.18 GFLOP per
    training patch against the paper's 14.8 (1/84), and 50-140x more patches per second on a CPU
    (``benchmarks/bench_training.py``). CNN2: half the
    filters, dense 64, the paper's 65 px patches, batch 32, 1,000 iterations. Adam 5e-4, dropout
    and L2 as in the paper. On 14 small phantom scans (``size="small"``) CNN1 reached a balanced
    validation accuracy of 0.94 (7 classes, balanced calcium/background voxels) after 1,250
    iterations. Time on 2 cores: CNN1 ~5 min, CNN1 labelling the candidates of the training
    scans (for CNN2) ~15 s per scan, CNN2 ~2 min.
    """
    if network == "cnn2":
        base = TrainConfig(network="cnn2", patch_size=65, dropout=0.5, l2=1e-5, width_scale=0.5,
                           dense_width=64, batch_size=32, max_iterations=1000, eval_every=200,
                           checkpoint_every=200, val_samples=512, preset="workshop")
    else:
        base = TrainConfig(network="cnn1", width=16, head_width=64, max_dilation=8,
                           patch_size=45, batch_size=32, max_iterations=3000, eval_every=250,
                           checkpoint_every=250, val_samples=512, preset="workshop")
    return replace(base, **changes)


PRESETS: dict[str, Callable[..., TrainConfig]] = {"paper": paper_config, "workshop": workshop_config}


def get_config(preset: str, network: str, **changes: Any) -> TrainConfig:
    """``get_config("workshop", "cnn1", max_iterations=100)``."""
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset=}")
    return PRESETS[preset](network, **changes)


# --------------------------------------------------------------------------------- saved models
def save_model(model: nn.Module, config: TrainConfig, path: str | Path, **extra: Any) -> Path:
    """Write ``{"config": dict, "state_dict": ...}`` atomically (:func:`calcscore.bundle.save_network`)."""
    return save_network(model, config.to_dict(), path, **extra)


def load_model(path: str | Path, *, network: str | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a network from a saved ``cnn1.pt`` / ``cnn2.pt`` (or the folder holding it).

    Returns the network in eval mode and its :class:`TrainConfig`.
    """
    model, config = load_network(path, network=network, device=device)
    return model, TrainConfig.from_dict(config)


# ------------------------------------------------------------------------------------- helpers
def _write_metrics(rows: list[dict[str, Any]], path: Path) -> None:
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


def split_by_participant(participants: Sequence[str], *, val_fraction: float,
                         rng=None) -> set[str]:
    """The participants of the validation set: ``val_fraction`` of them (at least one when there
    are two or more), drawn with ``rng``; all scans of a participant stay together."""
    unique = sorted(set(map(str, participants)))
    if len(unique) < 2 or val_fraction <= 0:
        return set()
    n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    order = np.random.default_rng(rng).permutation(len(unique))
    return {unique[i] for i in order[:n_val]}


def _forward(config: TrainConfig, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, class probabilities used for the decision) of one batch.

    CNN1: L = L_N + gamma (L_A + L_S + L_C), the head loss on the centre voxel and the auxiliary
    losses on every labelled output pixel; its decision averages the four outputs at the centre
    (1/2 head, 1/6 each auxiliary). CNN2: binary cross-entropy, calcium = any calcium label.
    """
    if config.network == "cnn1":
        out = model(batch.x)
        loss = F.cross_entropy(out.head.float(), batch.target)
        aux_centre = None
        if out.aux is not None:
            if config.gamma > 0:
                for i, aux in enumerate(out.aux):
                    loss = loss + config.gamma * F.cross_entropy(aux.float(), batch.aux_target[:, i])
            c = out.aux[0].shape[-1] // 2
            aux_centre = tuple(a[:, :, c, c] for a in out.aux)
        return loss, CNN1.combine(out.head.detach(), aux_centre)
    logits = model(batch.x)
    loss = F.cross_entropy(logits.float(), (batch.target > 0).long())
    return loss, F.softmax(logits.detach().float(), dim=1)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the paper's learning rate; L2 on convolution and dense weights only."""
    decay, other = regularised_parameters(model)
    return torch.optim.Adam([{"params": decay, "weight_decay": 2.0 * config.l2},
                             {"params": other, "weight_decay": 0.0}], lr=config.learning_rate)


def train_step(config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, batch, *,
               device: torch.device) -> torch.Tensor:
    """One optimisation step on one minibatch (in ``config.precision``); returns the detached
    loss as a tensor on the device (reading it waits for the GPU: do that only when needed)."""
    if config.channels_last:
        batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
    with autocast(device, config.precision == "bf16"):
        loss, _ = _forward(config, model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(config: TrainConfig, model: nn.Module, sampler: PatchSampler,
             voxels: tuple[np.ndarray, np.ndarray], *, device: torch.device,
             batch_size: int = 128) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy (mean recall over the classes present) of fixed
    validation voxels. CNN1's decision uses the paper's weighted average of its four outputs."""
    net = unwrap_ddp(model)
    was_training = net.training
    net.eval()
    scan, flat = voxels
    total_loss, n = 0.0, 0
    preds, targets = [], []
    try:
        for i in range(0, len(flat), batch_size):
            b = sampler.batch_at(scan[i:i + batch_size], flat[i:i + batch_size])
            if config.channels_last:
                b = b._replace(x=b.x.contiguous(memory_format=torch.channels_last))
            with autocast(device, config.precision == "bf16"):
                loss, proba = _forward(config, net, b)
            total_loss += float(loss) * len(b.target)
            n += len(b.target)
            preds.append(proba.argmax(dim=1).cpu())
            t = b.target if config.network == "cnn1" else (b.target > 0).long()
            targets.append(t.cpu())
    finally:
        net.train(was_training)
    pred = torch.cat(preds).numpy()
    target = torch.cat(targets).numpy()
    recalls = [float(np.mean(pred[target == c] == c)) for c in np.unique(target)]
    return {"val_loss": total_loss / max(n, 1), "val_accuracy": float(np.mean(pred == target)),
            "val_balanced_accuracy": float(np.mean(recalls)) if recalls else math.nan}


# ------------------------------------------------------------------------- CNN1 on candidates
@torch.no_grad()
def cnn1_proba_patchwise(model: CNN1, store: VolumeStore, scan_index: int, flat: np.ndarray, *,
                         batch_size: int = 256, precision: str = "fp32") -> torch.Tensor:
    """CNN1's (n, 7) class probabilities at voxels ``flat`` of scan ``scan_index`` of ``store``,
    one receptive-field-sized patch per voxel (simple and slow: a reference for
    :func:`cnn1_proba_slicewise`)."""
    model.eval()
    out = []
    for i in range(0, len(flat), batch_size):
        f = np.asarray(flat[i:i + batch_size])
        s = np.full(len(f), scan_index, np.int64)
        zyx = torch.from_numpy(store.unravel(s, f)).to(store.device)
        x = store.patches(torch.from_numpy(s).to(store.device), zyx, model.receptive_field)
        with autocast(store.device, precision == "bf16"):
            out.append(model.predict_proba(x).float())
    return torch.cat(out) if out else torch.zeros(0, N_CLASSES, device=store.device)


@torch.no_grad()
def cnn1_proba_slicewise(model: CNN1, store: VolumeStore, scan_index: int, flat: np.ndarray, *,
                         chunk: int = 4096, precision: str = "fp32") -> torch.Tensor:
    """The same probabilities as :func:`cnn1_proba_patchwise`, computed fully convolutionally by
    :func:`calcscore.inference.cnn1_proba` (each subnetwork runs once over the slices that hold
    the requested voxels; the head combines the features of those voxels)."""
    model.eval()
    dev = store.device
    scan = store.scans[scan_index]
    if len(flat) == 0:
        return torch.zeros(0, N_CLASSES, device=dev)
    r = model.receptive_field // 2
    base = int(store.base[scan_index])
    vol = store.hu[base:base + scan.n_voxels].view(*scan.shape)
    vol = scale_hu(vol.float())  # the cache holds clipped HU
    vol = F.pad(vol[None, None], (r, r, r, r, r, r), value=PAD_NORMALISED)[0, 0]  # (Z+2r, Y+2r, X+2r)
    zyx = store.unravel(np.full(len(flat), scan_index), np.asarray(flat))
    # an inference copy (ELUs in place), channels-last on the CPU as `calcscore score` runs: CNN1 over
    # a 512 x 512 x 200 whole chest took 34 s instead of 52 s in fp32 on a 2-core AVX2 CPU
    # (benchmarks/bench_inference.py). The model being trained keeps its own layout and modules.
    channels_last = torch.device(dev).type == "cpu"
    model = model.for_inference(channels_last=channels_last)
    opts = InferenceOptions(device=str(dev), batch_voxels=chunk, bf16=precision == "bf16",
                            channels_last=channels_last)
    return cnn1_proba(model, vol, zyx, r, opts)


def cnn1_candidate_labels(model: CNN1, store: VolumeStore, scan_index: int, *,
                          precision: str = "fp32") -> tuple[np.ndarray, np.ndarray]:
    """CNN1's label (0..6) for every candidate voxel (>= 130 HU) of one scan of ``store``.

    Returns (flat candidate indices, labels), computed by :func:`cnn1_proba_slicewise`.
    """
    flat = np.asarray(store.scans[scan_index].candidate_index)
    proba = cnn1_proba_slicewise(model, store, scan_index, flat, precision=precision)
    return flat, proba.argmax(dim=1).cpu().numpy().astype(np.uint8)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cnn2_pools(store: VolumeStore, cnn1: CNN1, *, cache_file: Path | None = None,
               cnn1_digest: str = "", precision: str = "fp32") -> tuple[VoxelPool, VoxelPool]:
    """(positives, negatives) for CNN2 among the voxels CNN1 labels as calcium: reference calcium
    (CNN1's true positives) and reference background (its false positives).

    CNN1's labels are kept in ``cache_file`` (keyed by scan id and the CNN1 file's digest).
    When CNN1 finds no true positive (or no false positive) at all, the reference calcium
    (or all background candidates) stand in, with a warning.
    """
    cached: dict[str, np.ndarray] = {}
    if cache_file is not None and cache_file.is_file():
        with np.load(cache_file) as z:
            if str(z["digest"]) == cnn1_digest:
                cached = {k: z[k] for k in z.files if k != "digest"}
    from tqdm.auto import tqdm

    pos, neg = [], []
    changed = False
    todo = sum(f"scan_{scan.scan_id}" not in cached for scan in store.scans)
    bar = tqdm(total=todo, desc="CNN1 over the candidates (CNN2 pools)", unit="scan", disable=todo == 0)
    for i, scan in enumerate(store.scans):
        key = f"scan_{scan.scan_id}"
        if key not in cached:
            flat, lab = cnn1_candidate_labels(cnn1, store, i, precision=precision)
            cached[key] = flat[lab > 0]
            changed = True
            bar.update()
        called = cached[key]
        ref = np.asarray(scan.labels).reshape(-1)[called] > 0
        pos.append(called[ref])
        neg.append(called[~ref])
    bar.close()
    if cache_file is not None and changed:
        fd, tmp = tempfile.mkstemp(prefix=".cnn1-", suffix=".npz", dir=cache_file.parent)
        os.close(fd)
        np.savez(tmp, digest=np.array(cnn1_digest), **cached)
        os.replace(tmp, cache_file)
    idx = range(len(store))
    positives, negatives = VoxelPool.concat(idx, pos), VoxelPool.concat(idx, neg)
    ref_pos, ref_neg = calcium_pools(store)
    if len(positives) == 0:
        log.warning("CNN1 labels no reference calcium voxel as calcium; CNN2 learns from the "
                    "reference calcium instead")
        positives = ref_pos
    if len(negatives) == 0:
        log.warning("CNN1 makes no false positive; CNN2 learns from all background candidates instead")
        negatives = ref_neg
    log.info("CNN2 pools: %d true-positive and %d false-positive voxels of CNN1",
             len(positives), len(negatives))
    return positives, negatives


# ----------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train` produced."""

    out_dir: Path
    model_path: Path
    iteration: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    best_val_loss: float = math.nan  # validation loss of the saved weights
    model: nn.Module | None = field(default=None, repr=False)  # the network after the last iteration


_RESUME_FREE = {"max_iterations", "device", "eval_every", "checkpoint_every"}


def _check_resumable(saved: dict[str, Any], config: TrainConfig, path: Path) -> None:
    diff = {k: (saved.get(k), v) for k, v in config.to_dict().items()
            if k not in _RESUME_FREE and saved.get(k) != v}
    if diff:
        desc = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise CalcscoreError(f"{path}: the checkpoint was written with other settings ({desc}); "
                             "use another output folder or the same settings")


def _selection_score(config: TrainConfig, row: dict[str, Any]) -> float:
    """Lower is better: the validation loss, or minus the balanced accuracy (``select_by``)."""
    if config.select_by == "val_balanced_accuracy":
        return -row["val_balanced_accuracy"]
    return row["val_loss"]


def train(config: TrainConfig, train_scans: Sequence[CachedScan], val_scans: Sequence[CachedScan],
          out_dir: str | Path, *, cnn1: str | Path | None = None, resume: bool = True,
          progress: bool = True, max_seconds: float | None = None, init: str | Path | None = None,
          callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``config.network`` on cached scans; write model, metrics and checkpoints to ``out_dir``.

    ``cnn1``: the trained CNN1 (its folder or ``cnn1.pt``), needed for CNN2. ``callback(iteration,
    loss)`` runs after every iteration (tests use it to interrupt a run). With ``resume`` (the
    default) an existing ``checkpoint.pt`` in ``out_dir`` is continued. ``max_seconds``: a time
    budget for the iterations of this call (data loading not counted); when it is spent, the run
    validates, writes its checkpoint and stops early, and a later call with the same folder goes
    on from there (``TrainResult.iteration`` says where it stopped).

    ``init``: a saved network of the same architecture (``cnn1.pt`` / ``cnn2.pt`` or its folder)
    to start from instead of random weights (fine-tuning, or training a model longer without its
    checkpoint); the optimiser starts afresh and iterations count from 0. The starting weights
    are validated as iteration 0, so the kept model is the starting one unless training beats
    it. A checkpoint in ``out_dir`` takes precedence (the run resumes).
    """
    out_dir = Path(out_dir)
    dist_info = init_distributed(config.device)
    try:
        return _train(config, train_scans, val_scans, out_dir, cnn1=cnn1, resume=resume,
                      progress=progress, callback=callback, dist_info=dist_info, max_seconds=max_seconds,
                      init=init)
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


#: settings that shape the network's weights
_ARCHITECTURE = ("width", "max_dilation", "head_width", "aux", "width_scale", "dense_width", "patch_size")


def _read_saved(path: str | Path, network: str) -> tuple[Path, dict[str, Any]]:
    """A saved ``network`` (its ``.pt`` file or the folder holding it) to start from: the file and
    its contents, checked to be a calcscore model of that network."""
    p = Path(path)
    p = p / f"{network}.pt" if p.is_dir() else p
    if not p.is_file():
        raise InputError(p, "no such model file to start from", f"pass a saved {network}.pt or its folder")
    saved = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or "config" not in saved or "state_dict" not in saved:
        raise InputError(p, "is not a calcscore model (needs 'config' and 'state_dict')")
    if saved["config"].get("network") != network:
        raise InputError(p, f"holds a {saved['config'].get('network')}, not a {network}",
                         f"start {network} training from a {network}.pt")
    return p, saved


def _load_initial(model: nn.Module, path: str | Path, config: TrainConfig) -> None:
    """Load the saved network ``path`` into ``model`` (built from ``config``), after checking that
    its weights have the model's shapes (another architecture gets an error naming the settings)."""
    p, saved = _read_saved(path, config.network)
    if ({k: tuple(v.shape) for k, v in model.state_dict().items()}
            != {k: tuple(v.shape) for k, v in saved["state_dict"].items()}):
        a, b = saved["config"], config.to_dict()
        diff = {k: (a[k], b[k]) for k in _ARCHITECTURE if k in a and a[k] != b[k]}
        raise InputError(p, f"has another architecture than this run (saved vs run: {diff})",
                         "train with the settings the saved network was made with (e.g. the same preset)")
    model.load_state_dict(saved["state_dict"])


def saved_architecture(path: str | Path, network: str) -> dict[str, Any]:
    """The architecture settings (filter counts, dilations, patch size, ...) of a saved network,
    to build a run's config that ``init`` can start from (e.g. the shipped CNN1, whose dilations
    are not the workshop preset's)."""
    saved = _read_saved(path, network)[1]["config"]
    return {k: saved[k] for k in _ARCHITECTURE if k in saved}


def _train(config, train_scans, val_scans, out_dir, *, cnn1, resume, progress, callback, dist_info,
           max_seconds=None, init=None):
    from tqdm.auto import tqdm

    if not train_scans:
        raise CalcscoreError("no training scans: the manifest's training split is empty")
    rank, world = dist_info.rank, dist_info.world_size
    device = resolve_device(config.device)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(config.seed)
    init_seed, val_seed, *rank_seeds = seeds.spawn(2 + world)
    dtype = torch.float32

    # the network: identical initial weights on every process
    torch.manual_seed(int(init_seed.generate_state(1)[0]))
    model = build_network(config.network, config.network_params())
    origin = {"initialised_from": str(init)} if init is not None else {}
    if init is not None:
        _load_initial(model, init, config)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)

    # the data
    store = VolumeStore(train_scans, device=device)
    # only process 0 validates
    val_store = VolumeStore(val_scans, device=device) if val_scans and dist_info.main else None
    if config.network == "cnn1":
        pools = calcium_pools(store)
        val_pools = calcium_pools(val_store) if val_store else None
    else:
        if cnn1 is None:
            raise CalcscoreError("training CNN2 needs a trained CNN1 (--cnn1 DIR)")
        cnn1_path = Path(cnn1)
        cnn1_path = cnn1_path / "cnn1.pt" if cnn1_path.is_dir() else cnn1_path
        cnn1_model, _ = load_model(cnn1_path, network="cnn1", device=device)
        digest = _file_digest(cnn1_path)
        # process 0 labels the candidates and writes them; the others read its file
        if dist_info.main:
            pools = cnn2_pools(store, cnn1_model, cache_file=out_dir / CANDIDATES,
                               cnn1_digest=digest, precision=config.precision)
        if dist_info.enabled:
            import torch.distributed as dist

            dist.barrier()
        if not dist_info.main:
            pools = cnn2_pools(store, cnn1_model, cache_file=out_dir / CANDIDATES,
                               cnn1_digest=digest, precision=config.precision)
        val_pools = None
        if val_store is not None:
            val_pools = cnn2_pools(val_store, cnn1_model, cache_file=out_dir / ("val-" + CANDIDATES),
                                   cnn1_digest=digest, precision=config.precision)
        del cnn1_model
    sampler = PatchSampler(store, *pools, patch_size=config.patch_size,
                           label_size=config.label_size, rng=rank_seeds[rank], dtype=dtype)
    val_sampler, val_voxels = None, None
    if val_store is not None and dist_info.main:
        try:
            val_sampler = PatchSampler(val_store, *val_pools, patch_size=config.patch_size,
                                       label_size=config.label_size, rng=val_seed, dtype=dtype)
            val_voxels = val_sampler.draw(config.val_samples)
        except ValueError as exc:
            log.warning("no validation: %s", exc)
            val_sampler = None

    # resume
    start, metrics, best = 0, [], math.inf
    running = [0.0, 0]
    ckpt_path = out_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        _check_resumable(ckpt["config"], config, ckpt_path)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, metrics, best = ckpt["iteration"], ckpt["metrics"], ckpt["best_val_loss"]
        running = list(ckpt["running"])
        if ckpt["world_size"] == world:
            sampler.load_state_dict(ckpt["sampler"][rank])
            torch.set_rng_state(ckpt["torch_rng"][rank])
            if device.type == "cuda" and ckpt["cuda_rng"][rank] is not None:
                torch.cuda.set_rng_state(ckpt["cuda_rng"][rank], device)
        else:
            log.warning("checkpoint written by %d processes, resuming with %d: random streams restart",
                        ckpt["world_size"], world)
            sampler.rng = np.random.default_rng([config.seed, start, rank])
            torch.manual_seed(config.seed * 7919 + start * 31 + rank)
        log.info("resumed %s from iteration %d", ckpt_path, start)
    else:
        torch.manual_seed(int(rank_seeds[rank].generate_state(2)[1]))
        if init is not None and dist_info.main and val_sampler is not None:
            # the starting weights are the first candidate for the kept model
            row = {"iteration": 0, "patches": 0, "train_loss": math.nan,
                   **evaluate(config, model, val_sampler, val_voxels, device=device), "patches_per_s": math.nan}
            metrics.append(row)
            _write_metrics(metrics, out_dir / METRICS)
            best = _selection_score(config, row)
            save_model(model, config, out_dir / f"{config.network}.pt", iteration=0,
                       val_loss=row["val_loss"], **origin)
            log.info("%s starts from %s (validation loss %.4f)", config.network, init, row["val_loss"])

    if dist_info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    else:
        ddp_model = model

    model_path = out_dir / f"{config.network}.pt"
    cuda_rng = (lambda: torch.cuda.get_rng_state(device)) if device.type == "cuda" else (lambda: None)

    def checkpoint(iteration: int) -> None:
        state = {"sampler": sampler.state_dict(), "torch_rng": torch.get_rng_state(), "cuda_rng": cuda_rng()}
        if dist_info.enabled:
            import torch.distributed as dist

            states: list[Any] = [None] * world
            dist.all_gather_object(states, state)
        else:
            states = [state]
        if dist_info.main:
            atomic_torch_save({
                "iteration": iteration, "config": config.to_dict(), "world_size": world,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "metrics": metrics, "best_val_loss": best,
                "running": (float(running_sum), running[1]), "sampler": [s["sampler"] for s in states],
                "torch_rng": [s["torch_rng"] for s in states], "cuda_rng": [s["cuda_rng"] for s in states],
            }, ckpt_path)

    t0, seen_at_t0 = time.perf_counter(), start
    bar = tqdm(total=config.max_iterations, initial=start, desc=f"training {config.network}",
               unit="it", disable=not (progress and dist_info.main), dynamic_ncols=True)
    model.train()
    it = start
    running_sum = torch.tensor(float(running[0]), dtype=torch.float64, device=device)
    try:
        while it < config.max_iterations:
            loss = train_step(config, ddp_model, optimizer, sampler.sample(config.batch_size),
                              device=device)
            it += 1
            running_sum += loss.double()
            running[1] += 1
            bar.update(1)
            last = it == config.max_iterations or _time_up(t0, max_seconds, dist_info, it)
            if it % config.eval_every == 0 or last:
                elapsed = time.perf_counter() - t0
                row: dict[str, Any] = {
                    "iteration": it, "patches": it * config.batch_size * world,
                    "train_loss": float(running_sum) / max(running[1], 1),
                    "val_loss": math.nan, "val_accuracy": math.nan, "val_balanced_accuracy": math.nan,
                    "patches_per_s": (it - seen_at_t0) * config.batch_size * world / max(elapsed, 1e-9),
                }
                running = [0.0, 0]
                running_sum.zero_()
                if dist_info.main:
                    if val_sampler is not None:
                        row.update(evaluate(config, model, val_sampler, val_voxels, device=device))
                    metrics.append(row)
                    _write_metrics(metrics, out_dir / METRICS)
                    score = _selection_score(config, row) if val_sampler is not None else -it
                    if score < best:
                        best = score
                        save_model(model, config, model_path, iteration=it, val_loss=row["val_loss"], **origin)
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}")
            if it % config.checkpoint_every == 0 or last:
                checkpoint(it)
            if callback is not None:
                callback(it, float(loss))
            if last and it < config.max_iterations:
                log.info("%s: time budget of %.0f s spent, stopped at iteration %d of %d",
                         config.network, max_seconds, it, config.max_iterations)
                break
    finally:
        bar.close()
    if dist_info.main and not model_path.is_file():
        save_model(model, config, model_path, iteration=it, val_loss=math.nan, **origin)
    best_val_loss = math.nan
    if val_sampler is not None and metrics:
        best_val_loss = min(metrics, key=lambda r: _selection_score(config, r))["val_loss"]
    return TrainResult(out_dir, model_path, it, metrics, best_val_loss, model.eval())


def _time_up(t0: float, max_seconds: float | None, dist_info, it: int) -> bool:
    """Whether the time budget is spent; with several processes, process 0's clock decides for
    all, every 10th iteration (so that they stop at the same iteration)."""
    if max_seconds is None:
        return False
    up = time.perf_counter() - t0 >= max_seconds
    if dist_info.enabled:
        if it % 10:
            return False
        import torch.distributed as dist

        flag = [up]
        dist.broadcast_object_list(flag, src=0)
        up = bool(flag[0])
    return up


def split_manifest(df, *, val_fraction: float, rng=None):
    """(training rows, validation rows) of a manifest DataFrame.

    A ``split`` column (train / val / validation / test; empty = train) decides when present;
    otherwise :func:`split_by_participant` draws the validation participants. Test rows are
    never returned, and a participant never appears in both subsets.
    """
    if "split" in df.columns:
        split = df["split"].fillna("train").astype(str).str.strip().str.lower()
        unknown = sorted(set(split) - {"train", "val", "validation", "test"})
        if unknown:
            raise InputError(None, f"the manifest's split column holds {unknown}",
                             "use train, val or test")
        df_train, df_val = df[split == "train"], df[split.isin(["val", "validation"])]
    else:
        val = split_by_participant(df["participant_id"].astype(str), val_fraction=val_fraction, rng=rng)
        is_val = df["participant_id"].astype(str).isin(val)
        df_train, df_val = df[~is_val], df[is_val]
    both = set(df_train["participant_id"].astype(str)) & set(df_val["participant_id"].astype(str))
    if both:
        raise InputError(None, f"participant(s) {sorted(both)[:5]} are in both the training and "
                               "the validation split", "keep all scans of a participant together")
    return df_train, df_val


def train_from_manifest(config: TrainConfig, manifest: str | Path, out_dir: str | Path, *,
                        cnn1: str | Path | None = None, cache_dir: str | Path | None = None,
                        progress: bool = True, resume: bool = True,
                        max_seconds: float | None = None, init: str | Path | None = None) -> TrainResult:
    """Read a manifest, cache its scans on the network grid, split by participant, train.

    An optional ``split`` column (train / val / test) decides the subsets; otherwise the
    participants are split with ``config.val_fraction`` (seeded). Test rows are never used.
    """
    from calcscore.manifest import read_manifest

    df = read_manifest(manifest)
    if "labels" not in df.columns or df["labels"].isna().all():
        raise InputError(manifest, "has no labels column with reference annotations",
                         "training needs a labels path for every scan")
    df_train, df_val = split_manifest(df, val_fraction=config.val_fraction, rng=config.seed)
    out_dir = Path(out_dir)
    if cache_dir is None:
        sibling = Path(cnn1) / "cache" if cnn1 is not None and Path(cnn1).is_dir() else None
        cache_dir = sibling if sibling is not None and sibling.is_dir() else out_dir / "cache"
    dist_info = init_distributed(config.device)
    try:
        if dist_info.enabled:  # process 0 writes the cache, the others read it
            import torch.distributed as dist

            if dist_info.main:
                cache_cohort(_concat_frames(df_train, df_val), cache_dir, progress=progress)
            dist.barrier()
        train_scans = cache_cohort(df_train, cache_dir, progress=progress and dist_info.main)
        val_scans = cache_cohort(df_val, cache_dir, progress=progress and dist_info.main)
        log.info("%d training and %d validation scans (%d and %d participants)", len(train_scans),
                 len(val_scans), df_train["participant_id"].nunique(), df_val["participant_id"].nunique())
        return train(config, train_scans, val_scans, out_dir, cnn1=cnn1, progress=progress,
                     resume=resume, max_seconds=max_seconds, init=init)
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _concat_frames(*frames):
    import pandas as pd

    return pd.concat(frames)

