"""HU of non-contrast chest CT and the body-wall layers that the anatomies and the confounders
share (no imports of the other phantom modules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from calcscore.phantom.subject import Subject

# HU of non-contrast chest CT (120 kVp).
HU = {
    "air": -1000.0,
    "lung": -850.0,
    "fat": -95.0,
    "skin": 25.0,
    "muscle": 50.0,
    "blood": 38.0,
    "myocardium": 46.0,
    "liver": 56.0,
    "spleen": 44.0,
    "cartilage": 115.0,
    "cortical": 950.0,
    "disc": 85.0,
    "csf": 12.0,
    "table": -300.0,
    "soft": 35.0,
}


def fat_thickness(s: Subject, theta):
    """Subcutaneous fat (mm) at polar angle theta (0 at the back, pi at the front)."""
    return s.fat_mm * (0.55 + 0.2 * (0.5 + 0.5 * np.cos(theta)) + 0.35 * np.abs(np.sin(theta)))


def muscle_thickness(s: Subject, theta):
    """Chest wall muscle (mm): pectorals at the side, paraspinal muscles at the back."""
    return s.muscle_mm * (1.0 + 0.4 * np.abs(np.sin(theta))) + 30 * np.exp(
        -((np.asarray(theta) / 0.55) ** 2)
    )


def _sternum_y(s: Subject) -> float:
    """y (mm) of the sternum's centre line: just inside the anterior chest wall."""
    return float(
        s.body_center_xy_mm[1]
        - s.body_half_depth_mm
        + 2
        + fat_thickness(s, np.pi)
        + muscle_thickness(s, np.pi)
        + 4
    )
