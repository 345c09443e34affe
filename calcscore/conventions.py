"""Agatston conventions: how lesions are found and an Agatston score is computed.

How an Agatston score is computed differs between tools; :class:`AgatstonConvention` holds the
choices, with named presets (see :data:`CONVENTIONS`; :mod:`calcscore.scoring` re-exports these
names):

``"lessmann2018"`` (default)
    The authors' convention (Lessmann et al., IEEE TMI 2018; their published code): 3D lesions
    of 26-connected voxels >= 130 HU, lesions under 1.5 mm^3 dropped; for each axial slice of a
    lesion, area x density factor of that slice's maximum HU; the sum x slice spacing / 3 mm.
``"agatston1990"``
    Agatston et al., J Am Coll Cardiol 1990;15:827-32 (electron-beam CT, contiguous 3 mm
    slices): lesions are 2D per slice, voxels > 130 HU, at least 1 mm^2; we use 8-connected
    pixels (the paper does not say; 8 is what most tools use, see van Ooijen et al., Eur Radiol
    2005;15:102-10) and slice thickness / 3 mm for the normalisation (1 on the original
    contiguous 3 mm slices).
``"clinical"``
    What clinical workstations do (e.g. the syngo Calcium Scoring operating instructions:
    density factor 1 from 130 HU inclusive, per-slice lesion areas, an "equivalent" score for
    overlapping or non-3 mm slices): 2D 8-connected lesions per slice, >= 130 HU, at least
    1 mm^2, slice spacing / 3 mm.

The density factor is 1 for a maximum of 130-199 HU, 2 for 200-299, 3 for 300-399 and 4 for
400 HU or more (Agatston 1990), whatever the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.errors import InputError
from calcscore.volume import CTVolume

#: The slice thickness (mm) the Agatston score was defined on.
AGATSTON_REFERENCE_THICKNESS_MM = 3.0
#: Lower bounds (HU) of density factors 1, 2, 3 and 4.
DENSITY_FACTOR_BOUNDS_HU = (130.0, 200.0, 300.0, 400.0)
_CONNECTIVITY_RANK_3D = {6: 1, 18: 2, 26: 3}
_CONNECTIVITY_RANK_2D = {4: 1, 8: 2}


@dataclass(frozen=True, kw_only=True)
class AgatstonConvention:
    """How lesions are found and an Agatston score is computed. See the module docstring.

    Attributes:
        name: a short name for reports.
        threshold_hu: calcium threshold in HU.
        inclusive: ``True`` counts voxels >= ``threshold_hu``; ``False`` counts > ``threshold_hu``.
        lesions: ``"3d"`` for 3D connected components, ``"2d"`` for components within each
            axial slice.
        connectivity: 6, 18 or 26 for 3D lesions; 4 or 8 for 2D lesions.
        min_volume_mm3: 3D lesions smaller than this are dropped from every score (3D only).
        min_area_mm2: for 2D lesions, components smaller than this are dropped from every
            score; for 3D lesions, a slice of a lesion smaller than this adds no Agatston score
            (its voxels still count in volume and mass).
        normalisation: multiply the summed area x factor by ``"spacing"`` (slice spacing / 3 mm),
            ``"thickness"`` (slice thickness / 3 mm, from ``CTVolume.meta``) or ``"none"``.
    """

    name: str = "custom"
    threshold_hu: float = CALCIUM_THRESHOLD_HU
    inclusive: bool = True
    lesions: Literal["3d", "2d"] = "3d"
    connectivity: int = 26
    min_volume_mm3: float = 1.5
    min_area_mm2: float = 0.0
    normalisation: Literal["spacing", "thickness", "none"] = "spacing"

    def __post_init__(self) -> None:
        if self.lesions not in ("3d", "2d"):
            raise ValueError(f"`lesions` must be '3d' or '2d', got {self.lesions=}")
        valid = _CONNECTIVITY_RANK_3D if self.lesions == "3d" else _CONNECTIVITY_RANK_2D
        if self.connectivity not in valid:
            raise ValueError(
                f"`connectivity` for {self.lesions} lesions must be one of "
                f"{sorted(valid)}, got {self.connectivity=}"
            )
        if self.normalisation not in ("spacing", "thickness", "none"):
            raise ValueError(
                f"`normalisation` must be 'spacing', 'thickness' or 'none', got {self.normalisation=}"
            )
        if not (np.isfinite(self.threshold_hu)):
            raise ValueError(f"`threshold_hu` must be finite, got {self.threshold_hu=}")
        if self.min_volume_mm3 < 0 or self.min_area_mm2 < 0:
            raise ValueError(
                f"minimum sizes must be >= 0, got {self.min_volume_mm3=}, {self.min_area_mm2=}"
            )
        if self.lesions == "2d" and self.min_volume_mm3 > 0:
            raise ValueError(
                f"2D lesions have no volume criterion; set min_volume_mm3=0 "
                f"(got {self.min_volume_mm3=}) and use min_area_mm2"
            )

    @classmethod
    def preset(cls, name: str) -> AgatstonConvention:
        """A named convention: one of :data:`CONVENTIONS`."""
        try:
            return CONVENTIONS[name.strip().lower()]
        except KeyError:
            raise ValueError(
                f"unknown Agatston convention {name!r}; known: {', '.join(CONVENTIONS)}"
            ) from None

    def with_options(self, **changes: Any) -> AgatstonConvention:
        """A copy with some options changed (named ``"custom"`` unless ``name`` is given)."""
        changes.setdefault("name", "custom")
        return replace(self, **changes)

    def calcium_mask(self, hu: np.ndarray) -> np.ndarray:
        return hu >= self.threshold_hu if self.inclusive else hu > self.threshold_hu

    def structure(self) -> np.ndarray:
        """The ``scipy.ndimage.label`` structuring element (3 x 3 x 3) of this convention."""
        if self.lesions == "3d":
            return ndimage.generate_binary_structure(3, _CONNECTIVITY_RANK_3D[self.connectivity])
        s = np.zeros((3, 3, 3), bool)
        s[1] = ndimage.generate_binary_structure(2, _CONNECTIVITY_RANK_2D[self.connectivity])
        return s

    def normalisation_factor(self, volume: CTVolume) -> float:
        """The factor the summed area x density factor is multiplied by."""
        if self.normalisation == "none":
            return 1.0
        if self.normalisation == "spacing":
            return volume.spacing_mm[0] / AGATSTON_REFERENCE_THICKNESS_MM
        thickness = volume.meta.slice_thickness_mm
        if thickness is None or not thickness > 0:
            raise InputError(
                None,
                "the Agatston convention normalises by slice thickness, but the scan "
                "carries no slice thickness",
                "set CTMeta.slice_thickness_mm, or use a convention with normalisation='spacing'",
            )
        return float(thickness) / AGATSTON_REFERENCE_THICKNESS_MM


CONVENTIONS: dict[str, AgatstonConvention] = {
    "lessmann2018": AgatstonConvention(name="lessmann2018"),
    "agatston1990": AgatstonConvention(
        name="agatston1990",
        inclusive=False,
        lesions="2d",
        connectivity=8,
        min_volume_mm3=0.0,
        min_area_mm2=1.0,
        normalisation="thickness",
    ),
    "clinical": AgatstonConvention(
        name="clinical",
        lesions="2d",
        connectivity=8,
        min_volume_mm3=0.0,
        min_area_mm2=1.0,
        normalisation="spacing",
    ),
}
DEFAULT_CONVENTION = "lessmann2018"


def density_factor(max_hu: np.ndarray | float) -> np.ndarray:
    """Agatston density factor (1-4) of a maximum HU; 0 below 130 HU."""
    return np.searchsorted(
        np.asarray(DENSITY_FACTOR_BOUNDS_HU), np.asarray(max_hu, float), side="right"
    )


def as_convention(convention: AgatstonConvention | str) -> AgatstonConvention:
    """``convention`` itself, or the preset it names."""
    if isinstance(convention, AgatstonConvention):
        return convention
    return AgatstonConvention.preset(str(convention))
