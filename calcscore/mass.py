"""Mass scores: the linear HU -> mg hydroxyapatite calibration of :class:`MassCalibration`.

Mass (mg hydroxyapatite) = calibration factor x (mean HU - water HU) x volume (McCollough et al.,
Radiology 2007;243:527-38, with water at 0 HU). Used by :mod:`calcscore.scoring` (which
re-exports these names).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from calcscore.volume import CTVolume

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MassCalibration:
    """Linear HU -> mg hydroxyapatite (HA) per cm^3 calibration.

    density (mgHA/cm^3) = ``factor_mg_per_cm3_per_hu`` x (HU - ``water_hu``), so a lesion's mass
    is factor x (mean HU - water HU) x volume. With ``water_hu=0`` this is the standard mass
    score (McCollough et al. 2007) with a given calibration factor.

    :meth:`from_inserts` measures both points, so the line passes through the measured water
    value: on the real QRM scan (:func:`calcscore.datasets.examples.qrm_phantom`) water reads
    29 HU, and the three large inserts come out 10-12 % heavy with the measured zero point but 20-29 % heavy with water at 0 HU.
    """

    factor_mg_per_cm3_per_hu: float
    water_hu: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.factor_mg_per_cm3_per_hu) and self.factor_mg_per_cm3_per_hu > 0):
            raise ValueError(
                f"`factor_mg_per_cm3_per_hu` must be > 0, got {self.factor_mg_per_cm3_per_hu=}"
            )
        if not np.isfinite(self.water_hu):
            raise ValueError(f"`water_hu` must be finite, got {self.water_hu=}")

    @classmethod
    def from_inserts(
        cls,
        volume: CTVolume,
        insert_mask: np.ndarray,
        water_mask: np.ndarray,
        *,
        insert_density_mg_per_cm3: float = 200.0,
    ) -> MassCalibration:
        """Measure the calibration from an insert of known HA density and a water insert.

        The factor is ``insert_density_mg_per_cm3 / (mean HU of insert - mean HU of water)``.

        Args:
            volume: the scan of the calibration phantom, in HU.
            insert_mask: a boolean array on the grid of ``volume`` inside the insert (keep it
                away from the insert's edges to avoid partial volume).
            water_mask: the same inside the water (or water-equivalent) insert.
            insert_density_mg_per_cm3: the insert's hydroxyapatite density.

        Returns:
            the :class:`MassCalibration` through both measured points.
        """
        insert_hu = _masked_mean_hu(volume, insert_mask, "insert_mask")
        water_hu = _masked_mean_hu(volume, water_mask, "water_mask")
        if not insert_hu > water_hu:
            raise ValueError(
                f"the calibration insert ({insert_hu:.1f} HU) must be denser than water "
                f"({water_hu:.1f} HU); check the masks"
            )
        factor = insert_density_mg_per_cm3 / (insert_hu - water_hu)
        log.info(
            "mass calibration: insert %.1f HU, water %.1f HU -> %.4g mg/cm3 per HU",
            insert_hu,
            water_hu,
            factor,
        )
        return cls(factor_mg_per_cm3_per_hu=factor, water_hu=water_hu)

    def mass_mg(self, mean_hu: np.ndarray | float, volume_mm3: np.ndarray | float) -> np.ndarray:
        return (
            self.factor_mg_per_cm3_per_hu
            * (np.asarray(mean_hu, float) - self.water_hu)
            * np.asarray(volume_mm3, float)
            / 1000.0
        )


def _masked_mean_hu(volume: CTVolume, mask: np.ndarray, name: str) -> float:
    m = np.asarray(mask, bool)
    if m.shape != volume.shape:
        raise ValueError(
            f"`{name}` must have the shape of the volume {volume.shape}, got {m.shape}"
        )
    if not m.any():
        raise ValueError(f"`{name}` selects no voxel")
    return float(volume.hu[m].mean(dtype=np.float64))


def as_calibration(calibration: MassCalibration | float | None) -> MassCalibration | None:
    """``calibration`` itself, or a :class:`MassCalibration` of the factor it is (water at 0 HU)."""
    if calibration is None or isinstance(calibration, MassCalibration):
        return calibration
    return MassCalibration(float(calibration))
