"""Scans stored in any axis-aligned layout, segmented as the networks learned them.

The networks learned axial slices stored as DICOM's usual orientation stores them: the array's x
towards the patient's left, y towards posterior, z towards superior (the identity direction of
:mod:`calcscore.volume`). The same anatomy is often stored otherwise: NIfTI files written by
nibabel or dcm2niix (RAS: x, y or both reversed), prone DICOM series, series stored head first,
coronal or sagittal stacks. The networks would see such a scan mirrored or turned over: a
heart-only cut of lungdx-a0001-b with 8 synthetic capsules was labelled with CAC voxel F1 0.92 as
stored, 0.71 with its y axis reversed (as dcm2niix stores it), 0.87 with x reversed and 0.80
with z reversed (benchmarks/README.md, "Scans stored in another layout").

:func:`orientation_of` finds the permutation and reversals of the array's axes that give the
standard layout; :meth:`Orientation.apply` makes that layout without resampling (the same voxels
at the same physical positions: the direction matrix follows the axes), and
:meth:`Orientation.undo` takes a label map back to the scan's own layout. A scan whose axes are
tilted from the patient's (a gantry tilt, an oblique reformat) keeps the nearest layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from calcscore.volume import CTVolume, LabelVolume, _Grid

G = TypeVar("G", CTVolume, LabelVolume)

#: The names of the standard axes' directions, (z, y, x), for messages.
AXIS_NAMES = ("superior", "posterior", "left")
_OPPOSITE = {"superior": "inferior", "posterior": "anterior", "left": "right"}


@dataclass(frozen=True)
class Orientation:
    """How a scan's array axes map to the standard layout (z superior, y posterior, x left).

    ``axes[i]`` is the scan's array axis that becomes standard axis ``i``; ``flips[i]`` says that
    it runs the other way (towards inferior, anterior or right).
    """

    axes: tuple[int, int, int] = (0, 1, 2)
    flips: tuple[bool, bool, bool] = (False, False, False)

    @property
    def is_standard(self) -> bool:
        """The scan is stored in the standard layout already."""
        return self.axes == (0, 1, 2) and not any(self.flips)

    @property
    def is_axial(self) -> bool:
        """The scan's slices (its array axis 0) are axial, whichever way they are stacked."""
        return self.axes[0] == 0

    @property
    def slices_reversed(self) -> bool:
        """Axial slices stored head first: standard slice k is the scan's slice n - 1 - k."""
        return self.is_axial and self.flips[0]

    def own_slice(self, k, n: int):
        """The scan's own number of standard slice ``k`` (an int or an array) of ``n`` axial
        slices: what reports and messages show."""
        return n - 1 - k if self.slices_reversed else k

    def describe(self) -> str:
        """The scan's layout in words, e.g. "z to superior, y to anterior, x to right"."""
        parts = []
        for axis, name in enumerate("zyx"):
            i = self.axes.index(axis)
            towards = AXIS_NAMES[i]
            parts.append(f"{name} to {_OPPOSITE[towards] if self.flips[i] else towards}")
        return ", ".join(parts)

    def array_to_standard(self, arr: np.ndarray) -> np.ndarray:
        """A (z, y, x) array of the scan's layout in the standard layout (a view where it can)."""
        out = np.transpose(arr, self.axes)
        return out[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def array_to_source(self, arr: np.ndarray) -> np.ndarray:
        """A standard-layout array back in the scan's own layout (:meth:`array_to_standard`'s
        inverse)."""
        out = arr[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.transpose(out, np.argsort(self.axes))

    def apply(self, grid: G) -> G:
        """``grid`` (a scan or a label map of the scan's layout) in the standard layout: the same
        voxels at the same physical positions, contiguous."""
        if self.is_standard:
            return grid
        shape = np.asarray(grid.shape)
        first = np.where(self.flips, shape[list(self.axes)] - 1, 0)  # the new (0, 0, 0), per axis
        index = np.zeros(3)
        index[list(self.axes)] = first
        oz, oy, ox = (float(v) for v in grid.index_to_physical(index[None])[0])
        signs = np.where(self.flips, -1.0, 1.0)
        direction = grid.direction[:, list(self.axes)] * signs[None, :]
        z, y, x = (grid.spacing_mm[a] for a in self.axes)
        arr = np.ascontiguousarray(self.array_to_standard(grid.array))
        return replace(
            grid, array=arr, spacing_mm=(z, y, x), origin_mm=(oz, oy, ox), direction=direction
        )

    def undo(self, labels: LabelVolume, source: _Grid) -> LabelVolume:
        """A standard-layout label map (of :meth:`apply`'s ``source``) on ``source``'s grid."""
        if self.is_standard:
            return labels
        return LabelVolume.like(source, np.ascontiguousarray(self.array_to_source(labels.labels)))


def orientation_of(direction: np.ndarray) -> Orientation:
    """The :class:`Orientation` of a scan with this direction matrix (:mod:`calcscore.volume`'s:
    rows the patient's z, y, x; columns the array's axes z, y, x).

    Each patient axis takes the array axis most nearly along it; a tilt (a gantry tilt, an oblique
    reformat) keeps the nearest layout.

    Raises:
        ValueError: the direction is not a rotation or reflection that has a nearest layout (two
            patient axes would take the same array axis).
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    axes = tuple(int(j) for j in np.argmax(np.abs(d), axis=1))
    if sorted(axes) != [0, 1, 2]:
        raise ValueError(
            f"direction {d.round(3).tolist()} has no nearest axis-aligned layout: its axes lie "
            "about 45 degrees from the patient's; reformat the scan to axial slices"
        )
    flips = tuple(bool(d[i, axes[i]] < 0) for i in range(3))
    return Orientation(axes, flips)  # type: ignore[arg-type]


def to_standard(volume: CTVolume) -> tuple[CTVolume, Orientation]:
    """``volume`` in the standard layout and the :class:`Orientation` that takes it back."""
    orient = orientation_of(volume.direction)
    return orient.apply(volume), orient


def onto_layout(labels: LabelVolume, target: _Grid) -> LabelVolume:
    """``labels`` on ``target``'s grid when they are the same voxels stored in another layout
    (a reference drawn in 3D Slicer and saved as RAS NIfTI, a prediction on the DICOM series'
    grid); otherwise ``labels`` unchanged, for the caller's geometry check to refuse."""
    if labels.same_geometry(target):
        return labels
    try:
        lab_orient, target_orient = (
            orientation_of(labels.direction),
            orientation_of(target.direction),
        )
    except ValueError:
        return labels
    standard = lab_orient.apply(labels)
    target_standard = target_orient.apply(LabelVolume.like(target))  # its geometry
    if not standard.same_geometry(target_standard):
        return labels
    return target_orient.undo(standard, target)
