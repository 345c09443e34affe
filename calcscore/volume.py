"""CT volumes and label maps that carry their geometry.

Everything is in numpy order (z, y, x): the array, ``spacing_mm``, ``origin_mm`` (the patient
LPS position of the centre of voxel (0, 0, 0), as (z, y, x)) and ``direction`` (ITK's direction
matrix with rows and columns both reversed, so the identity means axial slices with x to the
patient's left, y to posterior, z to superior). The one place where ITK's (x, y, z) order becomes
ours is :mod:`calcscore.io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

_GEOMETRY_ATOL = 1e-3


@dataclass(frozen=True)
class CTMeta:
    """Acquisition metadata as a scanner would write it (DICOM names in comments)."""

    slice_thickness_mm: float | None = None  # (0018,0050)
    kernel: str | None = None  # ConvolutionKernel (0018,1210)
    manufacturer: str | None = None  # (0008,0070)
    model: str | None = None  # ManufacturerModelName (0008,1090)
    kvp: float | None = None  # (0018,0060)
    series_uid: str | None = None  # (0020,000E)
    study_uid: str | None = None
    patient_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class _Grid:
    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        arr = np.asarray(self.array)
        if arr.ndim != 3:
            raise ValueError(f"a volume must be 3D (z, y, x), got an array of shape {arr.shape}")
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(spacing) != 3 or not all(s > 0 and np.isfinite(s) for s in spacing):
            raise ValueError(
                f"`spacing_mm` must be three positive numbers (z, y, x), got {self.spacing_mm!r}"
            )
        origin = tuple(float(o) for o in self.origin_mm)
        if len(origin) != 3:
            raise ValueError(f"`origin_mm` must be three numbers (z, y, x), got {self.origin_mm!r}")
        direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "origin_mm", origin)
        object.__setattr__(self, "direction", direction)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    def geometry_str(self) -> str:
        sz = " x ".join(str(s) for s in self.shape)
        sp = ", ".join(f"{s:.4g}" for s in self.spacing_mm)
        og = ", ".join(f"{o:.4g}" for o in self.origin_mm)
        return f"shape (z, y, x) {sz}, spacing_mm ({sp}), origin_mm ({og})"

    def same_geometry(self, other: _Grid, *, atol: float = _GEOMETRY_ATOL) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=atol)
            and np.allclose(self.origin_mm, other.origin_mm, atol=max(atol, 1e-2))
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def index_to_physical(self, index_zyx: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices (z, y, x) -> (N, 3) physical LPS points in mm, as (z, y, x)."""
        idx = np.atleast_2d(np.asarray(index_zyx, dtype=float))
        scaled = idx * np.asarray(self.spacing_mm)
        return np.asarray(self.origin_mm) + scaled @ self.direction.T


@dataclass(frozen=True)
class CTVolume(_Grid):
    """A CT scan in Hounsfield units, (z, y, x)."""

    meta: CTMeta = field(default_factory=CTMeta)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "array", np.asarray(self.array, dtype=np.float32))

    @property
    def hu(self) -> np.ndarray:
        return self.array

    def with_array(self, hu: np.ndarray, **changes: Any) -> CTVolume:
        return replace(self, array=hu, **changes)


@dataclass(frozen=True)
class LabelVolume(_Grid):
    """A voxel label map (values of :class:`calcscore.labels.Label`), (z, y, x).

    Label maps are only ever resampled by nearest neighbour.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        arr = self.array
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError("a label map must hold integer labels; got non-integer values")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"label values must lie in 0..255, got {arr.min()}..{arr.max()}")
        object.__setattr__(self, "array", arr.astype(np.uint8, copy=False))

    @property
    def labels(self) -> np.ndarray:
        return self.array

    @classmethod
    def like(cls, volume: _Grid, labels: np.ndarray | None = None) -> LabelVolume:
        """A label map on the grid of ``volume`` (empty if ``labels`` is None)."""
        arr = np.zeros(volume.shape, np.uint8) if labels is None else labels
        return cls(arr, volume.spacing_mm, volume.origin_mm, volume.direction)


class GeometryMismatchError(ValueError):
    """Two volumes that must share a grid do not."""


def check_same_geometry(
    a: _Grid, b: _Grid, *, names: tuple[str, str] = ("image", "labels")
) -> None:
    """Raise :class:`GeometryMismatchError` naming both geometries when they differ.

    Args:
        a, b: two volumes (shape, spacing, origin, direction are compared).
        names: what ``a`` and ``b`` are called in the message.
    """
    if not a.same_geometry(b):
        raise GeometryMismatchError(
            f"{names[0]} and {names[1]} do not share a grid: {names[0]} has {a.geometry_str()}; "
            f"{names[1]} has {b.geometry_str()}. Resample the label map onto the image grid "
            "(calcscore.preprocess.labels_to_grid) or pass the matching pair."
        )
