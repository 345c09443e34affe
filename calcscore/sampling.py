"""Training patches: preprocessed scans cached on disk, 2.5D patches cut on the device.

Pipeline (docs/method.md §1, §5):

1. :func:`calcscore.scan_cache.cache_scan` / :func:`~calcscore.scan_cache.cache_cohort` put
   each scan on the network grid (:func:`calcscore.preprocess.to_network_grid`) and its reference labels there by nearest
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

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from calcscore.constants import (  # noqa: F401  (CALCIUM_THRESHOLD_HU: re-exported as before)
    CALCIUM_THRESHOLD_HU,
    NORM_CENTER,
    NORM_SCALE,
    PAD_HU,
    Z_CROP_MM,
)
from calcscore.scan_cache import (  # noqa: F401  (re-exported: calcscore.sampling.cache_scan etc.)
    BODY_THRESHOLD_HU,
    CACHE_VERSION,
    CROP_MARGIN,
    HU_MAX,
    HU_MIN,
    CachedScan,
    cache_cohort,
    cache_scan,
    load_cached,
)

log = logging.getLogger(__name__)


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

    def _gather(
        self,
        source: torch.Tensor,
        scan: torch.Tensor,
        zyx: torch.Tensor,
        size: int,
        z_lim: torch.Tensor | None = None,
    ):
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
        if z_lim is not None:  # slices outside [z_lim[:, 0], z_lim[:, 1]] read as outside
            z = zyx[:, 0, None, None, None] + rows[None, :, 0, :, None] + cols[None, :, 0, None, :]
            valid &= (z >= z_lim[:, 0, None, None, None]) & (z <= z_lim[:, 1, None, None, None])
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
        z_lim: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, 3, size, size) normalised axial / sagittal / coronal patches.

        Intensities are (clip(HU, -1000, 3000) - 130) / 1130 (``normalise_hu``); voxels outside
        the volume read as -1000 HU.

        Args:
            scan: (N,) scan indices into this store, on this device.
            zyx: (N, 3) centres in their scans, on this device.
            size: the patch side in voxels, odd.
            dtype: the patches' dtype.
            z_lim: (N, 2) first and last slice of a shorter scan, per patch: the slices outside
                read as outside the volume (a scan that covers only the heart), or None.

        Returns:
            (N, 3, size, size) patches on this device.
        """
        vals, invalid = self._gather(self.hu, scan, zyx, size, z_lim)
        out = vals.masked_fill_(invalid, int(PAD_HU)).to(torch.float32)
        out.sub_(NORM_CENTER).div_(NORM_SCALE)
        return out.to(dtype)

    def label_patches(
        self,
        scan: torch.Tensor,
        zyx: torch.Tensor,
        size: int,
        z_lim: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Label patches (background outside the volume).

        Args:
            scan, zyx, size, z_lim: as for :meth:`patches`.

        Returns:
            (N, 3, size, size) int64 labels on this device.
        """
        vals, invalid = self._gather(self.labels, scan, zyx, size, z_lim)
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
    """(positives, negatives) for CNN1: calcium voxels of any class, each as often as its scan's
    :attr:`~calcscore.scan_cache.CachedScan.weight`, and background >= 130 HU."""
    idx = range(len(store))
    pos = VoxelPool.concat(
        idx, [np.tile(np.asarray(s.calcium_index), s.weight) for s in store.scans]
    )
    neg = VoxelPool.concat(idx, [np.asarray(s.background_index) for s in store.scans])
    return pos, neg


class PatchSampler:
    """Balanced minibatches of 2.5D patches: half from ``positives``, half from ``negatives``.

    ``rng`` seeds a numpy ``Generator`` (``np.random.default_rng(rng)``); its state is part of
    :meth:`state_dict`, so a resumed run draws the same batches. With ``z_crop`` > 0, that share
    of the patches of :meth:`sample` is cut as from a scan that ends above and below the centre
    (each end :data:`Z_CROP_MM` away, drawn uniformly): the sagittal and coronal views of a
    heart-only scan meet the end of the scan, which a whole chest's never do.
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
        z_crop: float = 0.0,
        z_crop_mm: tuple[float, float] = Z_CROP_MM,
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
        self.z_crop = float(z_crop)
        self.z_crop_mm = (float(z_crop_mm[0]), float(z_crop_mm[1]))
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

    def batch_at(
        self, scan: np.ndarray, flat: np.ndarray, z_lim: np.ndarray | None = None
    ) -> Batch:
        """The patches (and labels) of given voxels.

        Args:
            scan: (N,) store indices of the voxels' scans.
            flat: (N,) flat indices of the voxels in their scans.
            z_lim: (N, 2) first and last slice each patch may see (:meth:`VolumeStore.patches`),
                or None: the whole scan.

        Returns:
            the :class:`Batch`.
        """
        zyx_np = self.store.unravel(np.asarray(scan), np.asarray(flat))
        dev = self.store.device
        s = torch.as_tensor(np.asarray(scan, dtype=np.int64)).to(dev, non_blocking=True)
        zyx = torch.from_numpy(zyx_np).to(dev, non_blocking=True)
        lim = None if z_lim is None else torch.as_tensor(z_lim, dtype=torch.long).to(dev)
        x = self.store.patches(s, zyx, self.patch_size, dtype=self.dtype, z_lim=lim)
        target = self.store.centre_labels(s, zyx)
        aux = None
        if self.label_size:
            aux = self.store.label_patches(s, zyx, self.label_size, lim)
        return Batch(x, target, aux, s, zyx)

    def z_limits(self, scan: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """(N, 2) first and last slice per voxel: a ``z_crop`` share cut as a shorter scan's
        (each end ``z_crop_mm``, by default :data:`Z_CROP_MM`, from the voxel), the others the
        whole scan's."""
        n = len(flat)
        cut = self.rng.random(n) < self.z_crop
        ends_mm = self.rng.uniform(*self.z_crop_mm, size=(n, 2))
        z = self.store.unravel(np.asarray(scan), np.asarray(flat))[:, 0]
        dz = np.array([s.spacing_mm[0] for s in self.store.scans])[np.asarray(scan)]
        ends = np.maximum(np.round(ends_mm / dz[:, None]), 1).astype(np.int64)
        big = np.iinfo(np.int32).max
        return np.stack(
            [np.where(cut, z - ends[:, 0], -big), np.where(cut, z + ends[:, 1], big)], axis=1
        )

    def sample(self, batch_size: int) -> Batch:
        scan, flat = self.draw(batch_size)
        z_lim = self.z_limits(scan, flat) if self.z_crop > 0 else None
        return self.batch_at(scan, flat, z_lim)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
