"""Agatston, volume and mass scores against answers worked out by hand or analytically."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from calcscore.errors import InputError
from calcscore.labels import Label
from calcscore.scoring import (
    CONVENTIONS,
    AgatstonConvention,
    MassCalibration,
    agatston,
    density_factor,
    lesion_table,
    risk_categories,
    risk_category,
    score_report,
)
from calcscore.volume import CTMeta, CTVolume, GeometryMismatchError, LabelVolume

# ------------------------------------------------------------------------------ the crafted case
# Spacing (1.5, 0.5, 0.5) mm: a pixel is 0.25 mm^2, a voxel 0.375 mm^3; slice thickness 3 mm.
# Lesions (area x density factor per slice, before normalisation):
#   A LAD  z1: 12 px (3 mm^2), max 450 -> 3 x 4 = 12;  z2: 4 px (1 mm^2) at 180 -> 1.  A = 13 everywhere.
#          A 1-voxel ring labelled LAD at 100 HU around z1 is below the threshold.
#   B LAD  z1: 3 px (0.75 mm^2, 1.125 mm^3) at 500 -> dropped by every preset (< 1.5 mm^3, < 1 mm^2);
#          3 px x 0.25 x 4 = 3 when nothing is dropped.
#   C LAD  z3, z4: 2 px each (0.5 mm^2) at 350; 4 voxels = 1.5 mm^3 kept in 3D -> 0.5 x 3 x 2 = 3;
#          2D lesions of 0.5 mm^2 are dropped.
#   D LAD  z1: 8 px (2 mm^2) at exactly 130 -> 2 x 1 = 2 with >= 130; gone with > 130.
#   E TAC  z6: two 4-px squares (1 mm^2 each) at 210 and 420 touching at a corner: one lesion with
#          8- or 26-connectivity -> 2 x 4 = 8; two with 4-connectivity -> 1 x 2 + 1 x 4 = 6.
#   F RCA  z5: two 4-px pieces (1 mm^2 each) at 150 and 320, joined through z6 (12 px, 3 mm^2, 160):
#          3D: slice z5 2 mm^2 with max 320 -> 6, z6 -> 3, F = 9;  2D: 1 + 3 + 3 = 7.
# lessmann2018 (x 1.5 / 3):  LAD 13 + 3 + 2 = 18 -> 9.0; RCA 9 -> 4.5; TAC 8 -> 4.0; CAC 13.5.
# clinical (2D 8-conn, >= 130, >= 1 mm^2, x 1.5 / 3):   (13 + 2 + 8 + 7) x 0.5 = 15.0.
# agatston1990 (2D 8-conn, > 130, >= 1 mm^2, x 3 / 3):  (13 + 8 + 7) x 1 = 28.0.
# clinical with 4-connectivity:                        (13 + 2 + 6 + 7) x 0.5 = 14.0.
# lessmann2018 with 1 mm^2 per slice:                  (13 + 0 + 2 + 8 + 9) x 0.5 = 16.0.
# lessmann2018 keeping every lesion:                   (35 + 3) x 0.5 = 19.0.
SPACING = (1.5, 0.5, 0.5)


def crafted_case(*, thickness_mm: float | None = 3.0) -> tuple[CTVolume, LabelVolume]:
    hu = np.zeros((8, 40, 40), np.float32)
    lab = np.zeros(hu.shape, np.uint8)

    def put(z, rows, cols, value, label):
        hu[z, rows, cols] = value
        lab[z, rows, cols] = label

    put(1, slice(1, 6), slice(1, 7), 100, Label.LAD)  # labelled, below threshold
    put(1, slice(2, 5), slice(2, 6), 250, Label.LAD)  # A
    put(1, 3, 3, 450, Label.LAD)
    put(2, slice(2, 4), slice(2, 4), 180, Label.LAD)
    put(1, 10, slice(2, 5), 500, Label.LAD)  # B
    put(slice(3, 5), 14, slice(2, 4), 350, Label.LAD)  # C
    put(1, slice(30, 32), slice(2, 6), 130, Label.LAD)  # D
    put(6, slice(2, 4), slice(20, 22), 210, Label.TAC)  # E
    put(6, slice(4, 6), slice(22, 24), 420, Label.TAC)
    put(5, slice(20, 22), slice(20, 22), 150, Label.RCA)  # F
    put(5, slice(20, 22), slice(24, 26), 320, Label.RCA)
    put(6, slice(20, 22), slice(20, 26), 160, Label.RCA)
    volume = CTVolume(hu, SPACING, meta=CTMeta(slice_thickness_mm=thickness_mm))
    return volume, LabelVolume.like(volume, lab)


def test_crafted_default_convention_by_hand():
    volume, labels = crafted_case()
    s = agatston(volume, labels)
    assert s["LAD"].agatston == pytest.approx(9.0)
    assert s["RCA"].agatston == pytest.approx(4.5)
    assert s["TAC"].agatston == pytest.approx(4.0)
    assert s["LCX"].agatston == 0 and s["AV"].agatston == 0 and s["MV"].agatston == 0
    assert s["CAC"].agatston == pytest.approx(13.5)
    assert s.risk_category == "II"
    # Lesions kept: A (16 voxels), C (4), D (8) in LAD; F (20) in RCA; E (8) in TAC.
    assert (s["LAD"].n_lesions, s["RCA"].n_lesions, s["TAC"].n_lesions, s["CAC"].n_lesions) == (
        3,
        1,
        1,
        4,
    )
    assert s["LAD"].volume_mm3 == pytest.approx(28 * 0.375)
    assert s["RCA"].volume_mm3 == pytest.approx(20 * 0.375)
    assert s["CAC"].volume_mm3 == pytest.approx(48 * 0.375)
    assert math.isnan(s["LAD"].mass_mg)  # no calibration


@pytest.mark.parametrize(
    ("convention", "total"),
    [
        ("lessmann2018", 17.5),
        ("clinical", 15.0),
        ("agatston1990", 28.0),
        (CONVENTIONS["clinical"].with_options(connectivity=4), 14.0),
        (CONVENTIONS["lessmann2018"].with_options(min_area_mm2=1.0), 16.0),
        (CONVENTIONS["lessmann2018"].with_options(min_volume_mm3=0.0), 19.0),
        (CONVENTIONS["lessmann2018"].with_options(normalisation="none"), 35.0),
        (CONVENTIONS["lessmann2018"].with_options(normalisation="thickness"), 35.0),
    ],
)
def test_crafted_total_under_each_convention(convention, total):
    volume, labels = crafted_case()
    s = agatston(volume, labels, convention=convention)
    assert sum(
        s[lab.name].agatston
        for lab in (Label.LAD, Label.LCX, Label.RCA, Label.TAC, Label.AV, Label.MV)
    ) == pytest.approx(total)


def test_crafted_per_label_under_agatston1990():
    volume, labels = crafted_case()
    s = agatston(volume, labels, convention="agatston1990")
    assert s["LAD"].agatston == pytest.approx(13.0)  # A only: C too small, D not > 130
    assert s["RCA"].agatston == pytest.approx(7.0)  # three 2D pieces of F
    assert s["RCA"].n_lesions == 3
    assert s["TAC"].agatston == pytest.approx(8.0)
    assert s["CAC"].agatston == pytest.approx(20.0)
    assert s.risk_category == "II"


def test_min_area_in_3d_keeps_volume():
    volume, labels = crafted_case()
    base = agatston(volume, labels)
    strict = agatston(
        volume, labels, convention=CONVENTIONS["lessmann2018"].with_options(min_area_mm2=1.0)
    )
    assert strict["LAD"].agatston == pytest.approx(base["LAD"].agatston - 1.5)  # C's 3 x 0.5
    assert strict["LAD"].volume_mm3 == base["LAD"].volume_mm3


def test_thickness_normalisation_needs_the_thickness():
    volume, labels = crafted_case(thickness_mm=None)
    with pytest.raises(InputError, match="slice thickness"):
        agatston(volume, labels, convention="agatston1990")


def test_lesion_table_by_hand():
    volume, labels = crafted_case()
    t = lesion_table(volume, labels)
    assert list(t["label"]) == ["LAD", "LAD", "LAD", "RCA", "TAC"]
    a = t.iloc[0]  # A: first slice 1, the top rows
    assert (a["n_voxels"], a["first_slice"], a["last_slice"]) == (16, 1, 2)
    assert a["max_hu"] == 450
    assert a["mean_hu"] == pytest.approx((11 * 250 + 450 + 4 * 180) / 16)
    assert a["agatston"] == pytest.approx(13 * 0.5)
    assert a["volume_mm3"] == pytest.approx(16 * 0.375)
    # centroid in mm (identity direction, origin 0): z = mean slice x 1.5, y/x = mean index x 0.5
    zz, yy, xx = np.nonzero((labels.array == Label.LAD) & (volume.hu >= 130))
    in_a = (zz <= 2) & (yy <= 5)
    assert a["centroid_z_mm"] == pytest.approx(zz[in_a].mean() * 1.5)
    assert a["centroid_y_mm"] == pytest.approx(yy[in_a].mean() * 0.5)
    assert a["centroid_x_mm"] == pytest.approx(xx[in_a].mean() * 0.5)
    assert t["agatston"].sum() == pytest.approx(17.5)


def test_empty_label_map_scores_zero():
    volume, _ = crafted_case()
    s = agatston(volume, LabelVolume.like(volume), calibration=0.7)
    assert all(
        s[n].agatston == 0 and s[n].volume_mm3 == 0 and s[n].n_lesions == 0 for n in s.labels
    )
    assert s["CAC"].mass_mg == 0.0  # calibrated: no calcium weighs 0 mg
    assert s.risk_category == "I"
    assert lesion_table(volume, LabelVolume.like(volume)).empty


def test_density_factor_bounds():
    assert list(density_factor([129.9, 130, 199.9, 200, 299, 300, 399.5, 400, 3000])) == [
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


# ------------------------------------------------------------------------------ sphere: analytic
@pytest.mark.parametrize("spacing", [(0.5, 0.5, 0.5), (1.5, 0.66, 0.66)])
def test_sphere_volume_mass_and_agatston_are_analytic(spacing):
    radius_mm, inside_hu = 6.0, 400.0
    shape = tuple(int(math.ceil(2 * (radius_mm + 3) / s)) for s in spacing)
    centre = np.array(shape) / 2.0 + np.array([0.31, 0.17, 0.43])  # off the voxel grid
    grid = np.indices(shape, dtype=float)
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    hu = np.where(dist2 <= radius_mm**2, inside_hu, 0.0).astype(np.float32)
    volume = CTVolume(hu, spacing)
    labels = LabelVolume.like(volume, (hu > 0).astype(np.uint8) * Label.RCA)
    s = agatston(volume, labels, calibration=MassCalibration(0.8))
    analytic_mm3 = 4 / 3 * math.pi * radius_mm**3  # 904.8 mm^3
    assert s["RCA"].volume_mm3 == pytest.approx(analytic_mm3, rel=0.02)
    assert s["RCA"].n_lesions == 1
    # mass = 0.8 mg/cm^3/HU x 400 HU x volume
    assert s["RCA"].mass_mg == pytest.approx(0.8 * inside_hu * analytic_mm3 / 1000, rel=0.02)
    # every slice has factor 4: sum(area) x spacing / 3 = volume / 3 mm, times 4
    assert s["RCA"].agatston == pytest.approx(4 * analytic_mm3 / 3.0, rel=0.02)


# ------------------------------------------------------------------------------ mass calibration
def test_calibration_from_inserts():
    hu = np.full((4, 20, 20), 30.0, np.float32)
    hu[:, 2:8, 2:8] = 330.0  # 200 mgHA/cm^3 insert: 300 HU above water
    volume = CTVolume(hu, (1.0, 1.0, 1.0))
    insert = np.zeros(hu.shape, bool)
    insert[:, 3:7, 3:7] = True
    water = np.zeros(hu.shape, bool)
    water[:, 12:18, 12:18] = True
    cal = MassCalibration.from_inserts(volume, insert, water, insert_density_mg_per_cm3=200.0)
    assert cal.factor_mg_per_cm3_per_hu == pytest.approx(200 / 300)
    assert cal.water_hu == pytest.approx(30.0)
    # 1000 mm^3 of the insert material weighs 200 mg
    assert float(cal.mass_mg(330.0, 1000.0)) == pytest.approx(200.0)
    with pytest.raises(ValueError, match="denser than water"):
        MassCalibration.from_inserts(volume, water, insert)


def test_qrm_large_insert_masses_within_25_percent(qrm_dicom):
    """Real Canon scan of the QRM phantom: masses of the three large inserts (19.6, 39.3, 78.5 mg).

    Positions from the data README: inserts on slices k = 21-23, rows ~150-285, columns ~175-300;
    a 200 mgHA/cm^3 rod and a water rod on slices k = 31-37, in the same cardiac insert.
    """
    from calcscore.io import read_volume

    volume = read_volume(qrm_dicom)
    hu = volume.hu
    rows, cols = slice(120, 316), slice(145, 331)  # the README's region with a margin

    # Calibration rod: the largest >= 130 HU component on k = 31-37 in that region; its core
    # (eroded 2 pixels) on the slices where it is at full strength (away from its ends).
    region = np.zeros(volume.shape, bool)
    region[31:38, rows, cols] = True
    comp, _ = ndimage.label((hu >= 130) & region)
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    rod = comp == sizes.argmax()
    core = ndimage.binary_erosion(rod, structure=np.ones((1, 5, 5), bool))
    per_slice = np.array(
        [hu[k][core[k]].mean() if core[k].any() else np.nan for k in range(volume.shape[0])]
    )
    full = np.isfinite(per_slice) & (per_slice >= 0.95 * np.nanmax(per_slice))
    ks = np.flatnonzero(full)
    insert_mask = core & full[:, None, None]

    # Water rod: the darkest 15-pixel neighbourhood next to the rod (within 3 rod radii).
    rod2d = rod[ks].any(axis=0)
    cy, cx = np.argwhere(rod2d).mean(axis=0)
    r_rod = math.sqrt(rod2d.sum() / math.pi)
    smooth = ndimage.uniform_filter(hu[ks].mean(axis=0), 15)
    yy, xx = np.ogrid[: volume.shape[1], : volume.shape[2]]
    d = np.hypot(yy - cy, xx - cx)
    wy, wx = np.unravel_index(
        np.argmin(np.where((d > r_rod + 15) & (d < 3 * r_rod + 15), smooth, np.inf)), smooth.shape
    )
    water_mask = np.zeros(volume.shape, bool)
    water_mask[ks] = (yy - wy) ** 2 + (xx - wx) ** 2 <= 36
    cal = MassCalibration.from_inserts(
        volume, insert_mask, water_mask, insert_density_mg_per_cm3=200.0
    )
    # MolloiLab's own factor for this scan is 0.000722 mg/mm^3 per HU (reference CSV).
    assert cal.factor_mg_per_cm3_per_hu == pytest.approx(0.722, rel=0.1)

    # Inserts: label everything >= 130 HU around them; the three largest lesions are the large inserts.
    lab = np.zeros(volume.shape, np.uint8)
    lab[20:25, rows, cols] = Label.LAD
    table = lesion_table(volume, LabelVolume.like(volume, lab), calibration=cal)
    large = table.nlargest(3, "n_voxels").sort_values("mean_hu")  # low, medium, high density
    assert large["n_voxels"].min() > 1.5 * table.nlargest(4, "n_voxels")["n_voxels"].iloc[3]
    masses = large["mass_mg"].to_numpy()
    np.testing.assert_allclose(masses, [19.6, 39.3, 78.5], rtol=0.25)


# ------------------------------------------------------------------------------ risk, report, errors
@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0, "I"),
        (10, "I"),
        (10.5, "II"),
        (11, "II"),
        (100, "II"),
        (100.01, "III"),
        (1000, "III"),
        (1000.5, "IV"),
        (5000, "IV"),
    ],
)
def test_risk_category_bounds_are_inclusive(score, category):
    assert risk_category(score) == category


def test_risk_category_rejects_undefined_scores():
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="cac_agatston"):
            risk_category(bad)
    assert list(risk_categories([0, 50, 500, 5000])) == ["I", "II", "III", "IV"]


def test_score_report_has_the_json_shape():
    volume, labels = crafted_case()
    report = score_report(volume, labels, scan="crafted", calibration=MassCalibration(1.0))
    assert set(report) == {
        "scan",
        "labels",
        "risk_category",
        "cac_drs",
        "ordinal_score",
        "beside_cac",
    }
    assert report["cac_drs"]["agatston_category"] == "A1"  # CAC 13.5
    assert list(report["labels"]) == ["LAD", "LCX", "RCA", "TAC", "AV", "MV", "CAC"]
    for entry in report["labels"].values():
        assert set(entry) == {"agatston", "volume_mm3", "mass_mg", "n_lesions"}
        assert isinstance(entry["n_lesions"], int)
    assert report["labels"]["CAC"]["agatston"] == pytest.approx(13.5)
    assert report["risk_category"] == "II"
    # without calibration the mass is None (JSON null), not NaN
    assert score_report(volume, labels, scan=None)["labels"]["LAD"]["mass_mg"] is None


def test_inputs_are_checked():
    volume, labels = crafted_case()
    other = LabelVolume(labels.array, (3.0, 0.5, 0.5))
    with pytest.raises(GeometryMismatchError):
        agatston(volume, other)
    bad = labels.array.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match="holds value 7"):
        agatston(volume, LabelVolume.like(volume, bad))
    with pytest.raises(ValueError, match="unknown Agatston convention"):
        agatston(volume, labels, convention="siemens")
    with pytest.raises(ValueError, match="connectivity"):
        AgatstonConvention(lesions="2d", connectivity=26, min_volume_mm3=0)
    with pytest.raises(ValueError, match="min_volume_mm3"):
        AgatstonConvention(lesions="2d", connectivity=8)


def test_importing_the_analysis_modules_does_not_import_torch():
    code = (
        "import sys, calcscore.scoring, calcscore.lesions, calcscore.metrics, calcscore.stats; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, (
        "importing calcscore.scoring/lesions/metrics/stats imported torch" + r.stderr
    )
