"""The paper's preprocessing (Lessmann et al. 2018, §III; docs/method.md §1).

1. :func:`reformat_slabs`: 3 mm thick axial slabs every 1.5 mm, each the average of the original
   slices weighted by how much each original slab (its slice thickness, centred on its position)
   overlaps the new 3 mm slab.
2. :func:`resample_inplane`: bilinear in-plane resampling to 0.66 x 0.66 mm.
3. :func:`labels_to_grid`: nearest-neighbour mapping of a label map between grids (network grid
   back to the original scan, or a reference annotation onto the network grid).
4. :func:`candidate_mask`: voxels >= 130 HU.

All functions take and return volumes with their geometry; none takes a bare array. The new grids
keep the original origin (centre of the first voxel) and direction.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace

import numpy as np
import torch

# HU_CLIP and normalise_hu are re-exported: they were defined here
from calcscore.constants import CALCIUM_THRESHOLD_HU, HU_CLIP, normalise_hu  # noqa: F401
from calcscore.volume import CTVolume, GeometryMismatchError, LabelVolume, _Grid

log = logging.getLogger(__name__)

SLAB_THICKNESS_MM = 3.0
SLAB_SPACING_MM = 1.5
INPLANE_SPACING_MM = 0.66


class ThickSliceWarning(UserWarning):
    """The input's slices are thicker than the 3 mm the method assumes."""


def slab_weights(
    n_in: int,
    spacing_mm: float,
    thickness_mm: float,
    *,
    slab_thickness_mm: float = SLAB_THICKNESS_MM,
    slab_spacing_mm: float = SLAB_SPACING_MM,
) -> np.ndarray:
    """(n_out, n_in) overlap weights (mm) of original slabs with the new slabs.

    Original slice i covers [i*s - t/2, i*s + t/2]; new slab j is centred at j*slab_spacing and
    covers +- slab_thickness/2, for every centre within the original extent.

    Args:
        n_in: the number of original slices.
        spacing_mm: the original slice spacing s in mm.
        thickness_mm: the original slice thickness t in mm.
        slab_thickness_mm: the new slabs' thickness in mm.
        slab_spacing_mm: the new slabs' spacing in mm.

    Returns:
        an (n_out, n_in) float array of overlaps in mm (not normalised).
    """
    if spacing_mm <= 0 or thickness_mm <= 0:
        raise ValueError(f"spacing and thickness must be > 0, got {spacing_mm=}, {thickness_mm=}")
    extent = (n_in - 1) * spacing_mm
    n_out = int(np.floor(extent / slab_spacing_mm + 1e-6)) + 1
    z_in = np.arange(n_in) * spacing_mm
    c_out = np.arange(n_out) * slab_spacing_mm
    lo = np.maximum((z_in - thickness_mm / 2)[None, :], (c_out - slab_thickness_mm / 2)[:, None])
    hi = np.minimum((z_in + thickness_mm / 2)[None, :], (c_out + slab_thickness_mm / 2)[:, None])
    return np.clip(hi - lo, 0.0, None)


def as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A CPU tensor sharing ``arr``'s memory where torch can (C-contiguous and writable), else a copy
    (torch cannot hold negative strides, e.g. of a flipped view)."""
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        arr = np.array(arr, order="C", copy=True)
    return torch.from_numpy(arr)


def _slab_matrix(
    volume: _Grid, thickness: float | None, slab_thickness_mm: float, slab_spacing_mm: float
) -> np.ndarray | None:
    """The normalised (n_out, n_in) slab weights of ``volume``; None (with a
    :class:`ThickSliceWarning`) where its slices are thicker than the slab; linear interpolation
    weights (with the warning) where gaps between thinner slices leave slabs that cover none."""
    spacing = volume.spacing_mm[0]
    thickness = thickness or spacing
    if thickness > slab_thickness_mm + 1e-6:
        warnings.warn(
            f"slice thickness {thickness:g} mm exceeds the {slab_thickness_mm:g} mm the method assumes; "
            "the scan is used without reformatting and results may be less accurate",
            ThickSliceWarning,
            stacklevel=3,
        )
        return None
    w = slab_weights(
        volume.shape[0],
        spacing,
        thickness,
        slab_thickness_mm=slab_thickness_mm,
        slab_spacing_mm=slab_spacing_mm,
    )
    if not w.sum(axis=1).all():  # gaps between the slices: some slabs cover none
        warnings.warn(
            f"slices {thickness:g} mm thick every {spacing:g} mm leave gaps that "
            f"{slab_thickness_mm:g} mm slabs cannot fill; the slices are interpolated to "
            f"{slab_spacing_mm:g} mm spacing and results may be less accurate",
            ThickSliceWarning,
            stacklevel=3,
        )
        return interpolation_weights(volume.shape[0], spacing, slab_spacing_mm)
    return w / w.sum(axis=1, keepdims=True)


def interpolation_weights(n_in: int, spacing_mm: float, step_mm: float) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation from slices ``spacing_mm`` apart onto
    positions ``step_mm`` apart from the first slice's, within the original extent (rows sum to 1).

    Args:
        n_in: the number of original slices.
        spacing_mm: the original slice spacing in mm.
        step_mm: the new spacing in mm.

    Returns:
        an (n_out, n_in) float array; row j holds at most two non-zero weights.
    """
    if spacing_mm <= 0 or step_mm <= 0:
        raise ValueError(f"spacings must be > 0, got {spacing_mm=}, {step_mm=}")
    n_out = int(np.floor((n_in - 1) * spacing_mm / step_mm + 1e-6)) + 1
    i0, i1, frac = _linear_taps(n_in, n_out, step_mm / spacing_mm)
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i1] += frac
    return w


def _reformat_tensor(hu: torch.Tensor, w: np.ndarray) -> torch.Tensor:
    """Slabs of a (Z, Y, X) float32 tensor: each slab mixes a few slices (weights ``w``)."""
    out = torch.empty((w.shape[0],) + tuple(hu.shape[1:]), dtype=torch.float32, device=hu.device)
    for j, row in enumerate(w):  # a sparse sum, slice by slice, in a fixed order
        idx = np.flatnonzero(row)
        acc = hu[int(idx[0])] * float(row[idx[0]])
        for i in idx[1:]:
            acc = acc.add_(hu[int(i)], alpha=float(row[i]))
        out[j] = acc
    return out


def reformat_slabs(
    volume: CTVolume,
    *,
    slab_thickness_mm: float = SLAB_THICKNESS_MM,
    slab_spacing_mm: float = SLAB_SPACING_MM,
) -> CTVolume:
    """Reformat to ``slab_thickness_mm`` thick slabs every ``slab_spacing_mm`` (3 mm at 1.5 mm).

    The slice thickness comes from ``volume.meta.slice_thickness_mm`` (the slice spacing when it
    is unknown). Input thicker than the slab is passed through unchanged with a
    :class:`ThickSliceWarning`, since the method assumes slices of at most 3 mm (interpolating 5 mm
    slices to 1.5 mm was measured and not kept: benchmarks/README.md). Thin slices with gaps
    between them (1 mm every 5 mm) are interpolated linearly onto the slabs' centres.

    Args:
        volume: a CT in HU.
        slab_thickness_mm: the slabs' thickness in mm.
        slab_spacing_mm: the slabs' spacing in mm.

    Returns:
        the slabs as a :class:`CTVolume` (each the overlap-weighted mean of the slices it
        covers), or ``volume`` itself when its slices are thicker than a slab.
    """
    w = _slab_matrix(volume, volume.meta.slice_thickness_mm, slab_thickness_mm, slab_spacing_mm)
    if w is None:
        return volume
    out = _reformat_tensor(as_tensor(volume.hu), w).numpy()
    meta = replace(volume.meta, slice_thickness_mm=slab_thickness_mm)
    return volume.with_array(out, spacing_mm=(slab_spacing_mm,) + volume.spacing_mm[1:], meta=meta)


def _linear_taps(n_in: int, n_out: int, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For source positions 0, step, 2*step, ... (``n_out`` of them) over ``n_in`` samples: the
    lower and upper neighbours and the weight of the upper one (linear interpolation)."""
    pos = np.arange(n_out) * step
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, max(n_in - 2, 0))
    return i0, np.minimum(i0 + 1, n_in - 1), pos - i0


def _linear_axis(arr: torch.Tensor, axis: int, n_out: int, step: float) -> torch.Tensor:
    """Linear interpolation along ``axis`` at source positions 0, step, 2*step, ..."""
    i0, i1, frac = _linear_taps(arr.shape[axis], n_out, step)
    frac = frac.astype(np.float32)
    a0 = arr.index_select(axis, torch.from_numpy(i0).to(arr.device))
    a1 = arr.index_select(axis, torch.from_numpy(i1).to(arr.device))
    shape = [1] * arr.ndim
    shape[axis] = n_out
    return a0 + (a1 - a0) * torch.from_numpy(frac).to(arr.device).reshape(shape)


def _inplane_shape(volume: _Grid, spacing_mm: float) -> tuple[int, int]:
    if spacing_mm <= 0:
        raise ValueError(f"`spacing_mm` must be > 0, got {spacing_mm=}")
    _, sy, sx = volume.spacing_mm
    _, ny, nx = volume.shape
    return (
        int(np.floor((ny - 1) * sy / spacing_mm + 1e-6)) + 1,
        int(np.floor((nx - 1) * sx / spacing_mm + 1e-6)) + 1,
    )


def _resample_tensor(hu: torch.Tensor, volume: _Grid, spacing_mm: float) -> torch.Tensor:
    ny_out, nx_out = _inplane_shape(volume, spacing_mm)
    _, sy, sx = volume.spacing_mm
    return _linear_axis(_linear_axis(hu, 1, ny_out, spacing_mm / sy), 2, nx_out, spacing_mm / sx)


def resample_inplane(volume: CTVolume, *, spacing_mm: float = INPLANE_SPACING_MM) -> CTVolume:
    """Bilinear in-plane resampling to ``spacing_mm`` (0.66 mm), keeping the field of view."""
    hu = _resample_tensor(as_tensor(volume.hu), volume, spacing_mm).numpy()
    return volume.with_array(hu, spacing_mm=(volume.spacing_mm[0], spacing_mm, spacing_mm))


def to_network_grid(
    volume: CTVolume,
    *,
    slab_thickness_mm: float = SLAB_THICKNESS_MM,
    slab_spacing_mm: float = SLAB_SPACING_MM,
    inplane_spacing_mm: float = INPLANE_SPACING_MM,
) -> CTVolume:
    """The paper's preprocessing: 3 mm slabs at 1.5 mm, then 0.66 mm in-plane.

    Args:
        volume: a CT in HU.
        slab_thickness_mm, slab_spacing_mm: as for :func:`reformat_slabs`.
        inplane_spacing_mm: the in-plane pixel size in mm (bilinear resampling).

    Returns:
        the volume on the network grid.
    """
    slabs = reformat_slabs(
        volume, slab_thickness_mm=slab_thickness_mm, slab_spacing_mm=slab_spacing_mm
    )
    return resample_inplane(slabs, spacing_mm=inplane_spacing_mm)


def network_grid_tensor(volume: CTVolume, hu: torch.Tensor) -> tuple[torch.Tensor, LabelVolume]:
    """:func:`to_network_grid` of ``volume`` whose HU lie in ``hu`` (a (Z, Y, X) float32 tensor on
    any device, e.g. a GPU): the network-grid HU as a tensor on that device, and the network grid
    (its geometry, with an empty array: the HU stay on the device)."""
    w = _slab_matrix(volume, volume.meta.slice_thickness_mm, SLAB_THICKNESS_MM, SLAB_SPACING_MM)
    spacing = volume.spacing_mm
    if w is not None:
        hu = _reformat_tensor(hu, w)
        spacing = (SLAB_SPACING_MM,) + spacing[1:]
    out = _resample_tensor(hu, volume, INPLANE_SPACING_MM)
    grid = LabelVolume(
        np.zeros(tuple(out.shape), np.uint8),
        (spacing[0], INPLANE_SPACING_MM, INPLANE_SPACING_MM),
        volume.origin_mm,
        volume.direction,
    )
    return out, grid


def _axis_map(source: _Grid, target: _Grid, axis: int) -> np.ndarray:
    """Nearest source index along ``axis`` for every target index (-1 outside the source)."""
    d = source.direction[:, axis]
    offset = float(np.dot(np.asarray(target.origin_mm) - np.asarray(source.origin_mm), d))
    pos = offset + np.arange(target.shape[axis]) * target.spacing_mm[axis]
    idx = np.floor(pos / source.spacing_mm[axis] + 0.5).astype(np.int64)
    idx[(idx < 0) | (idx >= source.shape[axis])] = -1
    return idx


def grid_to_grid_tensor(src: torch.Tensor, source: _Grid, target: _Grid) -> torch.Tensor:
    """Nearest-neighbour mapping of a (Z, Y, X) tensor on the grid of ``source`` onto the grid of
    ``target`` (the same direction), on the tensor's device; 0 outside the source.

    Args:
        src: values on the grid of ``source``, on any device.
        source: the grid ``src`` lies on (a volume: its spacing, origin and direction).
        target: the grid to map onto.

    Returns:
        a tensor of ``target``'s shape on the device of ``src``.
    """
    if not np.allclose(source.direction, target.direction, atol=1e-4):
        raise GeometryMismatchError(
            "labels_to_grid needs grids with the same direction; labels have direction "
            f"{source.direction.round(3).tolist()}, target {target.direction.round(3).tolist()}"
        )
    out = src
    for axis in range(3):
        m = _axis_map(source, target, axis)
        out = out.index_select(axis, torch.from_numpy(np.maximum(m, 0)).to(src.device))
        outside = np.flatnonzero(m < 0)
        if len(outside):
            out = out.index_fill(axis, torch.from_numpy(outside).to(src.device), 0)
    return out


def labels_to_grid(labels: LabelVolume, target: _Grid) -> LabelVolume:
    """Map a label map onto the grid of ``target`` by nearest neighbour in physical space.

    Both grids must share their direction (true for a scan and its network grid). Target voxels
    outside the source are background.
    """
    out = (
        grid_to_grid_tensor(as_tensor(labels.labels), labels, target)
        .numpy()
        .astype(np.uint8, copy=False)
    )
    return LabelVolume(out, target.spacing_mm, target.origin_mm, target.direction)


def candidate_mask(volume: CTVolume, *, threshold_hu: float = CALCIUM_THRESHOLD_HU) -> np.ndarray:
    """Boolean mask of candidate calcium voxels (>= ``threshold_hu``, 130 HU by default)."""
    return volume.hu >= threshold_hu
