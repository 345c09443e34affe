"""The carina (calcscore.airway) and the cap it puts on the safety net's heart region: a drawn
chest with a trachea that divides at a known slice, and the real scans beside the project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import calcscore.heart_extent as heart_extent
from calcscore.airway import find_carina
from calcscore.labels import Label
from calcscore.regions import apply_safety_net, find_chest_regions
from calcscore.volume import CTVolume

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CARINA = 52  # the drawn trachea's last undivided slice


def _ellipse(shape, centre, radii):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1.0


def chest_with_airway() -> CTVolume:
    """A chest drawn z up (2.5 mm slices, 1 mm pixels): body, two lung columns, a heart in their
    lower half, vertebrae behind, and a trachea (18 mm across) down the midline from the top to
    slice 52, where it divides into two main bronchi that run down and out into the lungs."""
    shape = (100, 200, 260)
    hu = np.full(shape, -1000.0, np.float32)
    hu[_ellipse(shape, (50, 100, 130), (200, 90, 125))] = 40.0
    for x in (65, 195):
        hu[8:98][_ellipse(shape, (0, 100, x), (1e6, 70, 45))[8:98]] = -850.0
    hu[_ellipse(shape, (35, 90, 130), (16, 40, 42))] = 45.0
    hu[:, 150:175, 117:143] = 500.0
    yy, xx = np.ogrid[: shape[1], : shape[2]]
    for z in range(CARINA, shape[0]):
        hu[z][(yy - 95) ** 2 + (xx - 130) ** 2 <= 81] = -1000.0
    for z in range(CARINA - 10, CARINA):
        for side in (-1, 1):
            x = 130 + side * (6 + 3 * (CARINA - z))
            hu[z][(yy - 95) ** 2 + (xx - x) ** 2 <= 25] = -1000.0
    return CTVolume(hu, (2.5, 1.0, 1.0))


def test_carina_is_the_last_slice_of_the_undivided_trachea():
    assert find_carina(chest_with_airway(), 99, 130.0) == CARINA


def test_no_carina_is_claimed_from_a_short_stretch_of_airway():
    """A scan that starts 45 mm above the division (as a heart-only scan may) shows too little
    trachea to tell it from a main bronchus: no carina, no cap."""
    volume = chest_with_airway()
    cut = CTVolume(volume.hu[:70].copy(), volume.spacing_mm)
    assert find_carina(cut, 69, 130.0) is None


def test_the_carina_caps_the_heart_region(monkeypatch):
    """With a 40 mm margin above the widest rows and no carina the heart's top is slice 56; with
    the carina, the carina's slice: a coronary label between the two (where the aortic arch lies
    in a real chest) is removed, one below the carina kept. The default margin (20 mm) puts the
    top below the carina here (slice 48), and the carina does not move it."""
    volume = chest_with_airway()
    hu = volume.hu.copy()
    labels = np.zeros(hu.shape, np.uint8)
    for z, label in ((CARINA + 2, Label.LAD), (CARINA - 4, Label.LCX)):
        hu[z, 58:63, 128:133] = 400.0
        labels[z, 58:63, 128:133] = label
    volume = CTVolume(hu, volume.spacing_mm)
    monkeypatch.setattr(heart_extent, "find_carina", lambda *args: None)
    without = find_chest_regions(volume, heart_top_margin_mm=40.0)
    default_without = find_chest_regions(volume)
    monkeypatch.undo()
    with_carina = find_chest_regions(volume, heart_top_margin_mm=40.0)
    assert without.heart_top_z == 56 and with_carina.heart_top_z == CARINA
    assert default_without.heart_top_z == find_chest_regions(volume).heart_top_z == 48
    assert not apply_safety_net(labels, without)[1]
    kept, removed = apply_safety_net(labels, with_carina)
    assert removed == {"LAD": 25} and (kept == Label.LCX).sum() == 25


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lungdx-a0001-b", "lungdx-a0001-l"])
def test_real_carina(name):
    """lungdx-a0001 (5 mm, both kernels): by eye the trachea is whole on slice 39 and two main
    bronchi on slice 38; the aortic root lies near slice 31, the arch's calcium on slice 41. With
    a 40 mm margin above the widest rows the carina caps the heart's top; with the default
    20 mm it lies lower, above the aortic root and the left main (slices 29-31) and below the
    carina."""
    from calcscore.io import read_volume

    path = SHARED / "open-chest-ct" / f"{name}.nii.gz"
    if not path.is_file():
        pytest.skip(f"real scan not found at {path}")
    volume = read_volume(path)
    assert find_chest_regions(volume, heart_top_margin_mm=40.0).heart_top_z == 39
    assert 32 <= find_chest_regions(volume).heart_top_z <= 37
