"""Training patches: preprocessed scans cached on disk, 2.5D patches cut on the device.

Pipeline (docs/method.md §1, §5):

1. :func:`cache_scan` / :func:`cache_cohort` put each scan on the network grid
   (:func:`calcscore.preprocess.to_network_grid`) and its reference labels there by nearest
   neighbour, crop the volume to the body's bounding box, and write a folder per scan:
   ``hu.npy`` (int16 HU, clipped to [-1000, 3000]), ``labels.npy`` (uint8; voxels below 130 HU
   are background), ``calcium.npy`` and ``background.npy`` (flat indices of the candidate voxels,
   >= 130 HU, with and without a calcium label) and ``meta.json``. The arrays are read back as
   memory maps.
2. :class:`VolumeStore` holds the scans of one subset, concatenated, on one device (the GPU when
   training on CUDA: 3 bytes per voxel) and cuts (N, 3, P, P) axial / sagittal / coronal patches
   by one gather with precomputed index offsets, with no Python loop per patch. Voxels outside
   the volume read as -1000 HU, so border voxels get full patches.
3. :class:`PatchSampler` draws balanced minibatches: half voxels drawn uniformly from the
   positive pool (calcium of any class), half from the negative pool (background >= 130 HU),
   with a numpy ``Generator`` whose state is saved with every checkpoint.

Patch orientation (the same convention as whole-slice inference must use), for a centre
(z, y, x) and patch offsets u, v in [-P//2, P//2]:

- axial:    patch[u, v] = volume[z,     y + u, x + v]  (a slice ``volume[z]``)
- sagittal: patch[u, v] = volume[z + u, y + v, x]      (a slice ``volume[:, :, x]``)
- coronal:  patch[u, v] = volume[z + u, y,     x + v]  (a slice ``volume[:, y, :]``)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from calcscore.constants import (
    CACHE_BODY_THRESHOLD_HU,
    CALCIUM_THRESHOLD_HU,
    HU_CLIP,
    NORM_CENTER,
    NORM_SCALE,
    PAD_HU,
)
from calcscore.labels import IGNORE
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)

CACHE_VERSION = 1
HU_MIN, HU_MAX = HU_CLIP
#: Voxels above this bound the body box that the cache keeps (plus ``CROP_MARGIN`` voxels).
BODY_THRESHOLD_HU = CACHE_BODY_THRESHOLD_HU
CROP_MARGIN = 4


# ------------------------------------------------------------------------------------ the cache
@dataclass(frozen=True)
class CachedScan:
    """A preprocessed scan in the cache: arrays on the network grid, cropped to the body."""

    folder: Path
    scan_id: str
    participant_id: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    crop_offset: tuple[int, int, int]

    @cached_property
    def hu(self) -> np.ndarray:
        """int16 HU, (z, y, x), memory-mapped."""
        return np.load(self.folder / "hu.npy", mmap_mode="r")

    @cached_property
    def labels(self) -> np.ndarray:
        """uint8 labels, (z, y, x), memory-mapped (0 below 130 HU)."""
        return np.load(self.folder / "labels.npy", mmap_mode="r")

    @cached_property
    def calcium_index(self) -> np.ndarray:
        """Flat indices of voxels >= 130 HU with a calcium label."""
        return np.load(self.folder / "calcium.npy", mmap_mode="r")

    @cached_property
    def background_index(self) -> np.ndarray:
        """Flat indices of voxels >= 130 HU labelled background."""
        return np.load(self.folder / "background.npy", mmap_mode="r")

    @property
    def candidate_index(self) -> np.ndarray:
        """Flat indices of all voxels >= 130 HU, sorted."""
        return np.sort(np.concatenate([self.calcium_index, self.background_index]))

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))


def _source_stamp(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():  # a DICOM series: the newest file and the file count
        files = [f for f in p.iterdir() if f.is_file()]
        return {
            "path": str(p.resolve()),
            "n_files": len(files),
            "mtime": max((f.stat().st_mtime for f in files), default=0.0),
        }
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime}


def _write_npy(folder: Path, name: str, arr: np.ndarray) -> None:
    np.save(folder / name, np.ascontiguousarray(arr))


def cache_scan(
    volume: CTVolume,
    labels: LabelVolume | None,
    folder: str | Path,
    *,
    scan_id: str,
    participant_id: str | None = None,
    on_network_grid: bool = False,
    crop: bool = True,
    sources: dict[str, Any] | None = None,
) -> CachedScan:
    """Preprocess one scan and write it to ``folder`` (atomically: written beside, then renamed).

    ``volume`` and ``labels`` are on the scan's own grid unless ``on_network_grid`` is True.
    Labels may be None (a scan without reference: all candidates count as background); voxels
    labelled :data:`calcscore.labels.IGNORE` are in neither pool (nor in :attr:`CachedScan.candidate_index`)
    and the auxiliary losses skip them.

    Args:
        volume: the scan in HU.
        labels: its reference labels on the same grid, or None.
        folder: the scan's cache folder (replaced when it exists).
        scan_id: the scan's id.
        participant_id: the participant the scan belongs to, for splits (default: ``scan_id``).
        on_network_grid: ``volume`` and ``labels`` are already on the network grid.
        crop: crop to the body (voxels above -500 HU) plus a margin of 4 voxels.
        sources: what the scan was read from, stored in ``meta.json`` (see
            :func:`cache_cohort`).

    Returns:
        the :class:`CachedScan`, memory-mapped from ``folder``.
    """
    from calcscore.preprocess import labels_to_grid, to_network_grid

    folder = Path(folder)
    grid = volume if on_network_grid else to_network_grid(volume)
    if labels is None:
        lab = np.zeros(grid.shape, np.uint8)
    else:
        lab = (labels if labels.same_geometry(grid) else labels_to_grid(labels, grid)).labels
    hu_f = np.clip(grid.hu, HU_MIN, HU_MAX)
    offset: tuple[int, ...] = (0, 0, 0)
    if crop:
        body = np.argwhere(hu_f > BODY_THRESHOLD_HU)
        if len(body):
            lo = np.maximum(body.min(axis=0) - CROP_MARGIN, 0)
            hi = np.minimum(body.max(axis=0) + CROP_MARGIN + 1, grid.shape)
            sl = tuple(slice(a, b) for a, b in zip(lo, hi))
            hu_f, lab = hu_f[sl], lab[sl]
            offset = tuple(int(a) for a in lo)
    candidate = hu_f >= CALCIUM_THRESHOLD_HU
    lab = np.where(candidate, lab, 0).astype(np.uint8)
    flat_cand = candidate.ravel()
    flat_lab = lab.ravel()
    # IGNORE: not annotated (a real negative's voxels near the heart): in neither pool
    calcium = np.flatnonzero(flat_cand & (flat_lab > 0) & (flat_lab != IGNORE)).astype(np.int64)
    background = np.flatnonzero(flat_cand & (flat_lab == 0)).astype(np.int64)
    meta = {
        "version": CACHE_VERSION,
        "scan_id": str(scan_id),
        "participant_id": str(participant_id if participant_id is not None else scan_id),
        "shape": list(hu_f.shape),
        "spacing_mm": list(grid.spacing_mm),
        "crop_offset": list(offset),
        "grid_shape": list(grid.shape),
        "grid_origin_mm": list(grid.origin_mm),
        "n_calcium": int(len(calcium)),
        "n_background": int(len(background)),
        "sources": sources or {},
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        _write_npy(tmp, "hu.npy", np.round(hu_f).astype(np.int16))
        _write_npy(tmp, "labels.npy", lab)
        _write_npy(tmp, "calcium.npy", calcium)
        _write_npy(tmp, "background.npy", background)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info(
        "cached %s: shape %s, %d calcium and %d background candidates",
        scan_id,
        hu_f.shape,
        len(calcium),
        len(background),
    )
    return load_cached(folder)


def load_cached(folder: str | Path) -> CachedScan:
    """Open a cached scan written by :func:`cache_scan`."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    return CachedScan(
        folder=folder,
        scan_id=meta["scan_id"],
        participant_id=meta["participant_id"],
        shape=tuple(meta["shape"]),
        spacing_mm=tuple(meta["spacing_mm"]),
        crop_offset=tuple(meta["crop_offset"]),
    )


def _cache_is_current(folder: Path, sources: dict[str, Any]) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == CACHE_VERSION and meta.get("sources") == sources


def cache_cohort(manifest, cache_dir: str | Path, *, progress: bool = False) -> list[CachedScan]:
    """Cache every scan of a manifest (a DataFrame from :func:`calcscore.manifest.read_manifest`).

    A scan whose cache folder was written from the same files (path, size, time) is reused.

    Args:
        manifest: the manifest's rows: ``scan_id``, ``image``, optional ``labels`` and
            ``participant_id``.
        cache_dir: the cache root, one folder per scan.
        progress: a progress bar over the scans.

    Returns:
        the :class:`CachedScan` of every row, in the manifest's order.
    """
    from tqdm.auto import tqdm

    from calcscore.io import read_labels, read_volume

    cache_dir = Path(cache_dir)
    out = []
    rows = list(manifest.itertuples(index=False))
    for row in tqdm(rows, desc="caching scans", disable=not progress, unit="scan"):
        label_path = getattr(row, "labels", None)
        if isinstance(label_path, float):  # NaN from pandas
            label_path = None
        sources = {"image": _source_stamp(row.image), "labels": _source_stamp(label_path)}
        folder = cache_dir / _safe_name(str(row.scan_id))
        if _cache_is_current(folder, sources):
            out.append(load_cached(folder))
            continue
        volume = read_volume(row.image)
        labels = read_labels(label_path) if label_path else None
        out.append(
            cache_scan(
                volume,
                labels,
                folder,
                scan_id=str(row.scan_id),
                participant_id=str(getattr(row, "participant_id", row.scan_id)),
                sources=sources,
            )
        )
    return out


def _safe_name(name: str) -> str:
    """A folder name for a scan id; ids that need changing get a hash suffix to stay unique."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    if safe == name and name:
        return name
    import hashlib

    return f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# ------------------------------------------------------------------------- patches on the device
def orientation_offsets(size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(oz, oy, ox): (3, size, size) z, y, x offsets of the axial, sagittal and coronal patches
    around a centre (the convention in the module docstring), for indexing ``volume[z, y, x]``."""
    rows, cols = _row_col_offsets(size)
    full = rows[:, :, :, None] + cols[:, :, None, :]  # (orientation, axis, size, size)
    return full[:, 0], full[:, 1], full[:, 2]


_orientation_offsets = orientation_offsets  # the name calcscore.inference imported first


def _row_col_offsets(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column offsets, each (2, 3, 3, size): [row/col][orientation][z, y, x axis].

    Every coordinate of a patch moves with its rows or with its columns, never both, so a
    patch's flat indices are a row term plus a column term (one broadcast add).
    """
    r = size // 2
    t = torch.arange(-r, r + 1)
    rows = torch.zeros(3, 3, size, dtype=torch.long)
    cols = torch.zeros(3, 3, size, dtype=torch.long)
    rows[0, 1], cols[0, 2] = t, t  # axial: rows y, columns x
    rows[1, 0], cols[1, 1] = t, t  # sagittal: rows z, columns y
    rows[2, 0], cols[2, 2] = t, t  # coronal: rows z, columns x
    return rows, cols


class VolumeStore:
    """Cached scans resident on one device, for patch cutting by tensor indexing.

    All volumes are concatenated into one flat int16 tensor (and one uint8 label tensor); a
    patch is one gather at ``base[scan] + (z * Y + y) * X + x`` for precomputed offsets. No
    loader processes are needed: on a GPU, a 64-patch batch is a handful of kernels.

    Memory: 3 bytes per voxel. A whole chest on the network grid, cropped to the body, is about
    230 x 400 x 530 voxels (150 MB), so an 80 GB GPU holds some 400 training scans.
    """

    def __init__(self, scans: Sequence[CachedScan], *, device: str | torch.device = "cpu"):
        if not scans:
            raise ValueError("a VolumeStore needs at least one scan, got none")
        self.scans = list(scans)
        self.device = torch.device(device)
        sizes = [s.n_voxels for s in self.scans]
        hu = torch.empty(sum(sizes), dtype=torch.int16)
        lab = torch.empty(sum(sizes), dtype=torch.uint8)
        pos = 0
        for s, n in zip(self.scans, sizes):
            hu[pos : pos + n] = torch.from_numpy(np.asarray(s.hu).reshape(-1).copy())
            lab[pos : pos + n] = torch.from_numpy(np.asarray(s.labels).reshape(-1).copy())
            pos += n
        self.hu = hu.to(self.device)
        self.labels = lab.to(self.device)
        self.base = torch.tensor(
            np.concatenate([[0], np.cumsum(sizes)[:-1]]), dtype=torch.long, device=self.device
        )
        self.shapes_host = np.array([s.shape for s in self.scans], dtype=np.int64)
        self.shapes = torch.from_numpy(self.shapes_host).to(self.device)
        self._offsets: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        log.info(
            "holding %d scans (%.1f MB) on %s",
            len(self.scans),
            (self.hu.numel() * 3) / 1e6,
            self.device,
        )

    def __len__(self) -> int:
        return len(self.scans)

    def _offsets_for(self, size: int):
        if size % 2 == 0 or size < 1:
            raise ValueError(f"patch sizes must be odd, got {size=}")
        if size not in self._offsets:
            rows, cols = _row_col_offsets(size)
            self._offsets[size] = (rows.to(self.device), cols.to(self.device))
        return self._offsets[size]

    def _gather(self, source: torch.Tensor, scan: torch.Tensor, zyx: torch.Tensor, size: int):
        rows, cols = self._offsets_for(size)  # (3 orientations, 3 axes, size)
        shape = self.shapes[scan][:, None, :, None]  # (N, 1, 3, 1)
        centre = zyx[:, None, :, None]
        r_coord = centre + rows  # (N, 3, 3, size): coordinates along the rows
        c_coord = centre + cols
        r_valid = ((r_coord >= 0) & (r_coord < shape)).all(dim=2)  # (N, 3, size)
        c_valid = ((c_coord >= 0) & (c_coord < shape)).all(dim=2)
        stride = torch.stack(
            [shape[:, :, 1] * shape[:, :, 2], shape[:, :, 2], torch.ones_like(shape[:, :, 2])],
            dim=2,
        )  # (N, 1, 3, 1)
        r_flat = (r_coord * stride).sum(dim=2) + self.base[scan, None, None]  # (N, 3, size)
        c_flat = (cols * stride).sum(dim=2)
        valid = r_valid[..., :, None] & c_valid[..., None, :]
        flat = r_flat[..., :, None] + c_flat[..., None, :]
        invalid = ~valid
        flat.masked_fill_(invalid, 0)
        return source.index_select(0, flat.view(-1)).view(flat.shape), invalid

    def patches(
        self,
        scan: torch.Tensor,
        zyx: torch.Tensor,
        size: int,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """(N, 3, size, size) normalised axial / sagittal / coronal patches.

        Intensities are (clip(HU, -1000, 3000) - 130) / 1130 (``normalise_hu``); voxels outside
        the volume read as -1000 HU.

        Args:
            scan: (N,) scan indices into this store, on this device.
            zyx: (N, 3) centres in their scans, on this device.
            size: the patch side in voxels, odd.
            dtype: the patches' dtype.

        Returns:
            (N, 3, size, size) patches on this device.
        """
        vals, invalid = self._gather(self.hu, scan, zyx, size)
        out = vals.masked_fill_(invalid, int(PAD_HU)).to(torch.float32)
        out.sub_(NORM_CENTER).div_(NORM_SCALE)
        return out.to(dtype)

    def label_patches(self, scan: torch.Tensor, zyx: torch.Tensor, size: int) -> torch.Tensor:
        """Label patches (background outside the volume).

        Args:
            scan, zyx, size: as for :meth:`patches`.

        Returns:
            (N, 3, size, size) int64 labels on this device.
        """
        vals, invalid = self._gather(self.labels, scan, zyx, size)
        return vals.masked_fill_(invalid, 0).long()

    def centre_labels(self, scan: torch.Tensor, zyx: torch.Tensor) -> torch.Tensor:
        shape = self.shapes[scan]
        flat = self.base[scan] + (zyx[:, 0] * shape[:, 1] + zyx[:, 1]) * shape[:, 2] + zyx[:, 2]
        return self.labels[flat].long()

    def unravel(self, scan: np.ndarray, flat_index: np.ndarray) -> np.ndarray:
        """(N, 3) z, y, x of flat indices within their scans (host arrays)."""
        shapes = self.shapes_host[scan]
        z, rem = np.divmod(flat_index, shapes[:, 1] * shapes[:, 2])
        y, x = np.divmod(rem, shapes[:, 2])
        return np.stack([z, y, x], axis=1).astype(np.int64)


class Batch(NamedTuple):
    """One minibatch: patches, centre labels, auxiliary label patches (or None)."""

    x: torch.Tensor  # (N, 3, P, P) float
    target: torch.Tensor  # (N,) int64 reference label of the centre voxel (0..6)
    aux_target: torch.Tensor | None  # (N, 3, L, L) int64
    scan: torch.Tensor  # (N,) store index
    zyx: torch.Tensor  # (N, 3)


@dataclass
class VoxelPool:
    """Voxels to draw from: parallel arrays of store scan indices and flat indices."""

    scan: np.ndarray
    flat: np.ndarray

    def __len__(self) -> int:
        return len(self.flat)

    @classmethod
    def concat(cls, scans: Sequence[int], flats: Sequence[np.ndarray]) -> VoxelPool:
        flats = [np.asarray(f, dtype=np.int64) for f in flats]
        scan = np.concatenate(
            [np.full(len(f), i, np.int32) for i, f in zip(scans, flats)] or [np.zeros(0, np.int32)]
        )
        flat = np.concatenate(flats or [np.zeros(0, np.int64)])
        return cls(scan, flat)


def calcium_pools(store: VolumeStore) -> tuple[VoxelPool, VoxelPool]:
    """(positives, negatives) for CNN1: calcium voxels of any class, background >= 130 HU."""
    idx = range(len(store))
    pos = VoxelPool.concat(idx, [np.asarray(s.calcium_index) for s in store.scans])
    neg = VoxelPool.concat(idx, [np.asarray(s.background_index) for s in store.scans])
    return pos, neg


class PatchSampler:
    """Balanced minibatches of 2.5D patches: half from ``positives``, half from ``negatives``.

    ``rng`` seeds a numpy ``Generator`` (``np.random.default_rng(rng)``); its state is part of
    :meth:`state_dict`, so a resumed run draws the same batches.
    """

    def __init__(
        self,
        store: VolumeStore,
        positives: VoxelPool,
        negatives: VoxelPool,
        *,
        patch_size: int,
        label_size: int | None = None,
        rng=None,
        dtype: torch.dtype = torch.float32,
    ):
        for name, pool in (("positive", positives), ("negative", negatives)):
            if len(pool) == 0:
                raise ValueError(
                    f"the {name} voxel pool is empty: the training scans hold no "
                    f"{'calcium' if name == 'positive' else 'background'} candidates "
                    "(voxels >= 130 HU)"
                )
        self.store = store
        self.positives = positives
        self.negatives = negatives
        self.patch_size = int(patch_size)
        self.label_size = label_size
        self.dtype = dtype
        self.rng = np.random.default_rng(rng)

    def draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(scan, flat) host arrays of a balanced draw: positives first."""
        n_pos = batch_size // 2
        n_neg = batch_size - n_pos
        ip = self.rng.integers(len(self.positives), size=n_pos)
        ineg = self.rng.integers(len(self.negatives), size=n_neg)
        scan = np.concatenate([self.positives.scan[ip], self.negatives.scan[ineg]])
        flat = np.concatenate([self.positives.flat[ip], self.negatives.flat[ineg]])
        return scan, flat

    def batch_at(self, scan: np.ndarray, flat: np.ndarray) -> Batch:
        """The patches (and labels) of given voxels: ``scan`` store indices, ``flat`` indices."""
        zyx_np = self.store.unravel(np.asarray(scan), np.asarray(flat))
        dev = self.store.device
        s = torch.as_tensor(np.asarray(scan, dtype=np.int64)).to(dev, non_blocking=True)
        zyx = torch.from_numpy(zyx_np).to(dev, non_blocking=True)
        x = self.store.patches(s, zyx, self.patch_size, dtype=self.dtype)
        target = self.store.centre_labels(s, zyx)
        aux = self.store.label_patches(s, zyx, self.label_size) if self.label_size else None
        return Batch(x, target, aux, s, zyx)

    def sample(self, batch_size: int) -> Batch:
        return self.batch_at(*self.draw(batch_size))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
