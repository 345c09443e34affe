"""The drawn parameters of a phantom subject: body and heart size, position and orientation,
aortic tortuosity, age (moved out of :mod:`calcscore.phantom.anatomy`, which re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Subject:
    """Drawn subject parameters (millimetres, degrees, HU)."""

    age: float
    body_half_width_mm: float
    body_half_depth_mm: float
    body_center_xy_mm: tuple[float, float]
    fat_mm: float
    muscle_mm: float
    heart_scale: float
    heart_center_offset_mm: tuple[float, float, float]
    heart_azimuth_deg: float
    heart_elevation_deg: float
    aorta_scale: float
    aortic_tortuosity: float
    arch_height_mm: float
    z_av_mm: float
    lung_hu: float
    cancellous_hu: float
    kyphosis_mm: float
    seed: int = 0

    @property
    def is_large(self) -> bool:
        """Large subjects are scanned at 140 kVp."""
        return self.body_half_width_mm > 178 or self.fat_mm > 30


def draw_subject(rng) -> Subject:
    """Draw a subject: sizes, positions and orientation vary as in a screening population."""
    rng = np.random.default_rng(rng)
    size = rng.uniform(0.0, 1.0)
    half_w = 145 + 50 * size + rng.normal(0, 5)
    half_d = 0.68 * half_w + rng.normal(0, 5)
    fat = float(np.clip(6 + 28 * size + rng.normal(0, 4), 4, 45))
    return Subject(
        age=float(rng.uniform(55, 75)),
        body_half_width_mm=float(half_w),
        body_half_depth_mm=float(np.clip(half_d, 104, 145)),
        body_center_xy_mm=(float(rng.normal(0, 6)), float(rng.normal(0, 8))),
        fat_mm=fat,
        muscle_mm=float(rng.uniform(8, 18)),
        heart_scale=float(np.clip(rng.normal(1.0, 0.08) + 0.08 * size, 0.82, 1.25)),
        heart_center_offset_mm=(
            float(rng.normal(0, 6)),
            float(rng.normal(0, 5)),
            float(rng.normal(0, 6)),
        ),
        heart_azimuth_deg=float(rng.uniform(35, 60)),
        heart_elevation_deg=float(rng.uniform(18, 40)),
        aorta_scale=float(np.clip(rng.normal(1.0, 0.08), 0.85, 1.25)),
        aortic_tortuosity=float(rng.beta(1.5, 3.0)),
        arch_height_mm=float(rng.uniform(70, 95)),
        z_av_mm=float(rng.uniform(-220, -120)),
        lung_hu=float(rng.uniform(-880, -820)),
        cancellous_hu=float(
            np.clip(rng.normal(260 - 3.0 * (rng.uniform(55, 75) - 55), 35), 110, 330)
        ),
        kyphosis_mm=float(rng.uniform(5, 25)),
        seed=int(rng.integers(2**31)),
    )
