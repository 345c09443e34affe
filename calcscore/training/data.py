"""The data of a training run: the split of a manifest by participant, and the voxel pools the
patches are drawn from (:mod:`calcscore.sampling`): for CNN1 the reference calcium and background
candidates, for CNN2 the voxels a trained CNN1 calls calcium (its true and false positives),
labelled fully convolutionally as whole-scan inference does."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F

from calcscore.constants import PAD_NORMALISED, scale_hu
from calcscore.errors import CalcscoreError, InputError
from calcscore.inference import InferenceOptions, cnn1_proba
from calcscore.labels import N_CLASSES
from calcscore.networks import CNN1
from calcscore.runtime import DistInfo, autocast, barrier
from calcscore.sampling import CachedScan, PatchSampler, VolumeStore, VoxelPool, calcium_pools
from calcscore.training.checkpoint import CANDIDATES, load_model
from calcscore.training.config import TrainConfig

log = logging.getLogger(__name__)


def split_by_participant(participants: Sequence[str], *, val_fraction: float, rng=None) -> set[str]:
    """The participants of the validation set: ``val_fraction`` of them (at least one when there
    are two or more), drawn with ``rng``; all scans of a participant stay together.

    Args:
        participants: the participant id of each scan (repeats allowed).
        val_fraction: the fraction of distinct participants drawn, rounded (at most all but one;
            <= 0: none).
        rng: a seed or generator for the draw.

    Returns:
        the validation participants' ids (empty with fewer than two participants).
    """
    unique = sorted(set(map(str, participants)))
    if len(unique) < 2 or val_fraction <= 0:
        return set()
    n_val = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    order = np.random.default_rng(rng).permutation(len(unique))
    return {unique[i] for i in order[:n_val]}


def split_manifest(df, *, val_fraction: float, rng=None):
    """(training rows, validation rows) of a manifest DataFrame.

    A ``split`` column (train / val / validation / test; empty = train) decides when present;
    otherwise :func:`split_by_participant` draws the validation participants. Test rows are
    never returned, and a participant never appears in both subsets.

    Args:
        df: the manifest (``participant_id``, optional ``split``).
        val_fraction: as for :func:`split_by_participant` (without a ``split`` column).
        rng: a seed or generator for the draw.

    Returns:
        (training rows, validation rows) as DataFrames.
    """
    if "split" in df.columns:
        split = df["split"].fillna("train").astype(str).str.strip().str.lower()
        unknown = sorted(set(split) - {"train", "val", "validation", "test"})
        if unknown:
            raise InputError(
                None, f"the manifest's split column holds {unknown}", "use train, val or test"
            )
        df_train, df_val = df[split == "train"], df[split.isin(["val", "validation"])]
    else:
        val = split_by_participant(
            df["participant_id"].astype(str), val_fraction=val_fraction, rng=rng
        )
        is_val = df["participant_id"].astype(str).isin(val)
        df_train, df_val = df[~is_val], df[is_val]
    both = set(df_train["participant_id"].astype(str)) & set(df_val["participant_id"].astype(str))
    if both:
        raise InputError(
            None,
            f"participant(s) {sorted(both)[:5]} are in both the training and the validation split",
            "keep all scans of a participant together",
        )
    return df_train, df_val


@torch.no_grad()
def cnn1_proba_patchwise(
    model: CNN1,
    store: VolumeStore,
    scan_index: int,
    flat: np.ndarray,
    *,
    batch_size: int = 256,
    precision: str = "fp32",
) -> torch.Tensor:
    """CNN1's class probabilities at voxels ``flat`` of scan ``scan_index`` of ``store``,
    one receptive-field-sized patch per voxel (simple and slow: a reference for
    :func:`cnn1_proba_slicewise`).

    Args:
        model: CNN1 (put in eval mode).
        store: the cached scans on a device.
        scan_index: the scan within ``store``.
        flat: flat voxel indices within that scan.
        batch_size: patches per forward pass.
        precision: "fp32" or "bf16" (autocast).

    Returns:
        (n, 7) float32 probabilities on the store's device.
    """
    model.eval()
    out = []
    for i in range(0, len(flat), batch_size):
        f = np.asarray(flat[i : i + batch_size])
        s = np.full(len(f), scan_index, np.int64)
        zyx = torch.from_numpy(store.unravel(s, f)).to(store.device)
        x = store.patches(torch.from_numpy(s).to(store.device), zyx, model.receptive_field)
        with autocast(store.device, precision == "bf16"):
            out.append(model.predict_proba(x).float())
    return torch.cat(out) if out else torch.zeros(0, N_CLASSES, device=store.device)


@torch.no_grad()
def cnn1_proba_slicewise(
    model: CNN1,
    store: VolumeStore,
    scan_index: int,
    flat: np.ndarray,
    *,
    chunk: int = 4096,
    precision: str = "fp32",
) -> torch.Tensor:
    """The same probabilities as :func:`cnn1_proba_patchwise`, computed fully convolutionally by
    :func:`calcscore.inference.cnn1_proba` (each subnetwork runs once over the slices that hold
    the requested voxels; the head combines the features of those voxels).

    Args:
        model, store, scan_index, flat, precision: as for :func:`cnn1_proba_patchwise`.
        chunk: voxels per head batch (``InferenceOptions.batch_voxels``).

    Returns:
        (n, 7) float32 probabilities on the store's device.
    """
    model.eval()
    dev = store.device
    scan = store.scans[scan_index]
    if len(flat) == 0:
        return torch.zeros(0, N_CLASSES, device=dev)
    r = model.receptive_field // 2
    base = int(store.base[scan_index])
    vol = store.hu[base : base + scan.n_voxels].view(*scan.shape)
    vol = scale_hu(vol.float())  # the cache holds clipped HU
    vol = F.pad(vol[None, None], (r, r, r, r, r, r), value=PAD_NORMALISED)[
        0, 0
    ]  # (Z+2r, Y+2r, X+2r)
    zyx = store.unravel(np.full(len(flat), scan_index), np.asarray(flat))
    # an inference copy (ELUs in place), channels-last on the CPU as `calcscore score` runs: it is
    # faster there (benchmarks/README.md). The model being trained keeps its own layout and modules.
    channels_last = torch.device(dev).type == "cpu"
    model = model.for_inference(channels_last=channels_last)
    opts = InferenceOptions(
        device=str(dev), batch_voxels=chunk, bf16=precision == "bf16", channels_last=channels_last
    )
    return cnn1_proba(model, vol, zyx, r, opts)


def cnn1_candidate_labels(
    model: CNN1, store: VolumeStore, scan_index: int, *, precision: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """CNN1's label (0..6) for every candidate voxel (>= 130 HU) of one scan of ``store``,
    computed by :func:`cnn1_proba_slicewise`.

    Args:
        model: CNN1.
        store: the cached scans on a device.
        scan_index: the scan within ``store``.
        precision: "fp32" or "bf16".

    Returns:
        (flat candidate indices, uint8 labels), host arrays.
    """
    flat = np.asarray(store.scans[scan_index].candidate_index)
    proba = cnn1_proba_slicewise(model, store, scan_index, flat, precision=precision)
    return flat, proba.argmax(dim=1).cpu().numpy().astype(np.uint8)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def cnn2_pools(
    store: VolumeStore,
    cnn1: CNN1,
    *,
    cache_file: Path | None = None,
    cnn1_digest: str = "",
    precision: str = "fp32",
) -> tuple[VoxelPool, VoxelPool]:
    """(positives, negatives) for CNN2 among the voxels CNN1 labels as calcium: reference calcium
    (CNN1's true positives), each as often as its scan's
    :attr:`~calcscore.scan_cache.CachedScan.weight`, and reference background (its false
    positives).

    CNN1's labels are kept in ``cache_file`` (keyed by scan id and the CNN1 file's digest).
    When CNN1 finds no true positive (or no false positive) at all, the reference calcium
    (or all background candidates) stand in, with a warning.

    Args:
        store: the cached scans on a device, with reference labels.
        cnn1: the trained CNN1.
        cache_file: an .npz of CNN1's calls per scan, read when its digest matches and
            rewritten atomically when scans were added (None: no cache).
        cnn1_digest: the digest of the CNN1 file, which a cache must match.
        precision: "fp32" or "bf16" for CNN1.

    Returns:
        (positives, negatives) as :class:`~calcscore.sampling.VoxelPool`.
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
    bar = tqdm(
        total=todo, desc="CNN1 over the candidates (CNN2 pools)", unit="scan", disable=todo == 0
    )
    for i, scan in enumerate(store.scans):
        key = f"scan_{scan.scan_id}"
        if key not in cached:
            flat, lab = cnn1_candidate_labels(cnn1, store, i, precision=precision)
            cached[key] = flat[lab > 0]
            changed = True
            bar.update()
        called = cached[key]
        ref = np.asarray(scan.labels).reshape(-1)[called] > 0
        pos.append(np.tile(called[ref], scan.weight))  # inserted lesions: `weight` times
        neg.append(called[~ref])
    bar.close()
    if cache_file is not None and changed:
        fd, tmp = tempfile.mkstemp(prefix=".cnn1-", suffix=".npz", dir=cache_file.parent)
        os.close(fd)
        np.savez(tmp, digest=np.array(cnn1_digest), **cached)  # type: ignore[arg-type]
        os.replace(tmp, cache_file)
    idx = range(len(store))
    positives, negatives = VoxelPool.concat(idx, pos), VoxelPool.concat(idx, neg)
    ref_pos, ref_neg = calcium_pools(store)
    if len(positives) == 0:
        log.warning(
            "CNN1 labels no reference calcium voxel as calcium; CNN2 learns from the "
            "reference calcium instead"
        )
        positives = ref_pos
    if len(negatives) == 0:
        log.warning(
            "CNN1 makes no false positive; CNN2 learns from all background candidates instead"
        )
        negatives = ref_neg
    log.info(
        "CNN2 pools: %d true-positive and %d false-positive voxels of CNN1",
        len(positives),
        len(negatives),
    )
    return positives, negatives


@dataclass
class TrainingData:
    """The patch samplers of a run: ``sampler`` draws this process's training batches;
    ``val_sampler`` and its fixed ``val_voxels`` validate (process 0 only, None without
    validation scans)."""

    sampler: PatchSampler
    val_sampler: PatchSampler | None = None
    val_voxels: tuple[np.ndarray, np.ndarray] | None = None


def make_samplers(
    config: TrainConfig,
    train_scans: Sequence[CachedScan],
    val_scans: Sequence[CachedScan],
    out_dir: Path,
    *,
    cnn1: str | Path | None,
    dist: DistInfo,
    device: torch.device,
    rng: np.random.SeedSequence,
    val_rng: np.random.SeedSequence,
) -> TrainingData:
    """The scans on ``device``, the voxel pools of ``config.network`` and the samplers over them.

    Args:
        config: the run's settings (network, patch and label sizes, validation samples).
        train_scans: cached training scans.
        val_scans: cached validation scans (may be empty: no validation).
        out_dir: the run's folder, where CNN2's run keeps CNN1's calls (:data:`CANDIDATES`).
        cnn1: the trained CNN1 (file or folder) whose calls make CNN2's pools; None for CNN1.
        dist: the processes of the run (only process 0 validates).
        device: where the scans are held.
        rng: this process's training stream.
        val_rng: the stream that draws the fixed validation voxels.

    Returns:
        the :class:`TrainingData`.
    """
    store = VolumeStore(train_scans, device=device)
    # only process 0 validates
    val_store = VolumeStore(val_scans, device=device) if val_scans and dist.main else None
    if config.network == "cnn1":
        pools = calcium_pools(store)
        val_pools = calcium_pools(val_store) if val_store else None
    else:
        pools, val_pools = _cnn2_run_pools(
            config, store, val_store, out_dir, cnn1=cnn1, dist=dist, device=device
        )
    data = TrainingData(
        PatchSampler(
            store,
            *pools,
            patch_size=config.patch_size,
            label_size=config.label_size,
            rng=rng,
            dtype=torch.float32,
            z_crop=config.z_crop,
            z_crop_mm=(config.z_crop_mm[0], config.z_crop_mm[1]),
        )
    )
    if val_store is not None and val_pools is not None and dist.main:
        try:
            val_sampler = PatchSampler(
                val_store,
                *val_pools,
                patch_size=config.patch_size,
                label_size=config.label_size,
                rng=val_rng,
                dtype=torch.float32,
            )
            data.val_voxels = val_sampler.draw(config.val_samples)
            data.val_sampler = val_sampler
        except ValueError as exc:
            log.warning("no validation: %s", exc)
    return data


def _cnn2_run_pools(
    config: TrainConfig,
    store: VolumeStore,
    val_store: VolumeStore | None,
    out_dir: Path,
    *,
    cnn1: str | Path | None,
    dist: DistInfo,
    device: torch.device,
):
    """(training pools, validation pools or None) for CNN2: the given CNN1's calls on the
    candidates, kept in ``out_dir`` (:data:`CANDIDATES`)."""
    if cnn1 is None:
        raise CalcscoreError("training CNN2 needs a trained CNN1 (--cnn1 DIR)")
    cnn1_path = Path(cnn1)
    cnn1_path = cnn1_path / "cnn1.pt" if cnn1_path.is_dir() else cnn1_path
    cnn1_model, _ = load_model(cnn1_path, network="cnn1", device=device)
    digest = _file_digest(cnn1_path)
    # process 0 labels the candidates and writes them; the others read its file
    if dist.main:
        pools = cnn2_pools(
            store,
            cast(CNN1, cnn1_model),
            cache_file=out_dir / CANDIDATES,
            cnn1_digest=digest,
            precision=config.precision,
        )
    barrier(dist)
    if not dist.main:
        pools = cnn2_pools(
            store,
            cast(CNN1, cnn1_model),
            cache_file=out_dir / CANDIDATES,
            cnn1_digest=digest,
            precision=config.precision,
        )
    val_pools = None
    if val_store is not None:
        val_pools = cnn2_pools(
            val_store,
            cast(CNN1, cnn1_model),
            cache_file=out_dir / ("val-" + CANDIDATES),
            cnn1_digest=digest,
            precision=config.precision,
        )
    return pools, val_pools
