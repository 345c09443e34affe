"""The training cache: each scan preprocessed once onto the network grid and written as a folder
of memory-mappable arrays (see :mod:`calcscore.sampling`, step 1):

``hu.npy`` (int16 HU, clipped to [-1000, 3000]), ``labels.npy`` (uint8; voxels below 130 HU are
background), ``calcium.npy`` and ``background.npy`` (flat indices of the candidate voxels,
>= 130 HU, with and without a calcium label) and ``meta.json``. A folder is rewritten when its
sources change.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from calcscore.constants import CACHE_BODY_THRESHOLD_HU, CALCIUM_THRESHOLD_HU, HU_CLIP
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
    #: how many times each calcium voxel joins CNN1's positive pool (1, or more for the few
    #: lesions inserted into a real scan; :func:`calcscore.sampling.calcium_pools`)
    weight: int = 1

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
    weight: int = 1,
) -> CachedScan:
    """Preprocess one scan and write it to ``folder`` (atomically: written beside, then renamed).

    ``volume`` and ``labels`` are on the scan's own grid unless ``on_network_grid`` is True; a
    scan stored in another layout is cached in the standard one, as inference sees it
    (:mod:`calcscore.orientation`).
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
        weight: how many times each calcium voxel joins CNN1's positive pool.

    Returns:
        the :class:`CachedScan`, memory-mapped from ``folder``.
    """
    from calcscore.orientation import orientation_of
    from calcscore.preprocess import labels_to_grid, to_network_grid

    folder = Path(folder)
    if not on_network_grid:  # the layout inference sees (calcscore.orientation)
        orient = orientation_of(volume.direction)
        volume, labels = orient.apply(volume), None if labels is None else orient.apply(labels)
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
        "weight": int(weight),
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
        weight=int(meta.get("weight", 1)),
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
