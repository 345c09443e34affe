"""CAC-DRS and the ordinal score (calcscore.standards, re-exported by calcscore.scoring) on
hand-made label maps whose Agatston scores and lesion lengths are worked out by hand.

Geometry: 3 mm slices, 1 x 1 mm pixels, so a voxel's area is 1 mm^2 and the lessmann2018
normalisation (slice spacing / 3 mm) is 1: a lesion in one slice scores its pixel count times
the density factor of its maximum (1 for 130-199 HU, 2 for 200-299, 4 for >= 400)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.scoring import (
    agatston,
    cac_drs,
    cac_drs_category,
    ordinal_score,
    score_report,
)
from calcscore.standards import ordinal_grade
from calcscore.volume import CTVolume, LabelVolume

SPACING = (3.0, 1.0, 1.0)
SHAPE = (3, 40, 80)


def _scan(lesions: list[tuple[Label, tuple[slice, slice], float]]):
    """A scan with one-slice lesions: (label, (rows, columns) in slice 1, HU)."""
    hu = np.zeros(SHAPE, np.float32)
    lab = np.zeros(SHAPE, np.uint8)
    for label, (rows, cols), value in lesions:
        hu[1, rows, cols] = value
        lab[1, rows, cols] = int(label)
    volume = CTVolume(hu, SPACING)
    return volume, LabelVolume.like(volume, lab)


def _block(r0: int, n_rows: int, c0: int, n_cols: int) -> tuple[slice, slice]:
    return slice(r0, r0 + n_rows), slice(c0, c0 + n_cols)


# Each case: lesions, the CAC Agatston worked out by hand, the CAC-DRS label.
CASES = {
    "no calcium at all": ([], 0.0, "A0"),
    "aortic calcium only (not CAC)": ([(Label.TAC, _block(2, 10, 2, 10), 450.0)], 0.0, "A0"),
    "1: one voxel of 150 HU": ([(Label.LAD, _block(2, 1, 2, 1), 150.0)], 1.0, "A1/N1"),
    "99: 9 x 11 pixels of 150 HU": ([(Label.RCA, _block(2, 9, 2, 11), 150.0)], 99.0, "A1/N1"),
    "100: 5 x 5 pixels of 450 HU (factor 4)": (
        [(Label.LCX, _block(2, 5, 2, 5), 450.0)],
        100.0,
        "A2/N1",
    ),
    "100: 50 in the LAD and 50 in the LCX": (
        [
            (Label.LAD, _block(2, 5, 2, 10), 150.0),
            (Label.LCX, _block(20, 5, 2, 5), 250.0),  # 25 pixels x factor 2
        ],
        100.0,
        "A2/N2",
    ),
    "299: 13 x 23 pixels of 150 HU": ([(Label.LAD, _block(2, 13, 2, 23), 150.0)], 299.0, "A2/N1"),
    "300: 100 in each artery, aorta and valves beside": (
        [
            (Label.LAD, _block(2, 5, 2, 5), 450.0),
            (Label.LCX, _block(2, 10, 20, 10), 150.0),
            (Label.RCA, _block(20, 5, 2, 10), 250.0),
            (Label.TAC, _block(20, 10, 40, 10), 450.0),
            (Label.AV, _block(2, 3, 40, 3), 300.0),
            (Label.MV, _block(2, 3, 60, 3), 300.0),
        ],
        300.0,
        "A3/N3",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cac_drs_at_every_category_boundary(case):
    lesions, expected_cac, expected_label = CASES[case]
    volume, labels = _scan(lesions)
    scores = agatston(volume, labels)
    assert scores.cac_agatston == pytest.approx(expected_cac, abs=1e-9)
    report = score_report(volume, labels, scan="s")
    assert report["cac_drs"]["label"] == expected_label
    n = 0 if expected_label == "A0" else int(expected_label[-1])
    assert report["cac_drs"]["n_vessels"] == n
    assert report["cac_drs"]["vessels_counted"] == ["LAD", "LCX", "RCA"]
    assert "left main" in report["cac_drs"]["note"]
    assert report["beside_cac"]["labels"] == ["TAC", "AV", "MV"]


def test_aorta_and_valves_stay_beside_cac():
    volume, labels = _scan(CASES["300: 100 in each artery, aorta and valves beside"][0])
    report = score_report(volume, labels, scan="s")
    assert report["labels"]["TAC"]["agatston"] == pytest.approx(400.0)  # 100 pixels x 4
    assert report["labels"]["AV"]["agatston"] == pytest.approx(27.0)  # 9 pixels x 3
    assert report["labels"]["CAC"]["agatston"] == pytest.approx(300.0)


@pytest.mark.parametrize(
    ("score", "category"),
    [
        (0.0, "A0"),
        (0.4, "A1"),
        (1.0, "A1"),
        (99.0, "A1"),
        (99.6, "A1"),
        (100.0, "A2"),
        (299.0, "A2"),
        (299.9, "A2"),
        (300.0, "A3"),
        (5000.0, "A3"),
    ],
)
def test_cac_drs_category_bounds(score, category):
    assert cac_drs_category(score) == category


def test_cac_drs_writes_a0_without_n_and_rejects_bad_scores():
    assert cac_drs({"LAD": 0.0, "LCX": 0.0, "RCA": 0.0}).label == "A0"
    assert cac_drs({"LAD": 150.0, "LCX": 0.0, "RCA": 200.0}).label == "A3/N2"
    with pytest.raises(ValueError, match="finite score"):
        cac_drs_category(math.nan)
    with pytest.raises(ValueError, match="LCX"):
        cac_drs({"LAD": 1.0, "RCA": 1.0})


# ------------------------------------------------------------------------------ ordinal score
NOMINAL = {"LAD": 90.0, "LCX": 90.0, "RCA": 90.0}  # a third is 30 mm, two thirds 60 mm


def _lines(segments: dict[Label, list[int]]):
    """Straight one-voxel-thick lesions along x (1 mm pixels, 150 HU), one row each: a lesion
    of n voxels covers exactly n mm of its artery."""
    lesions, row = [], 2
    for label, lengths in segments.items():
        for n in lengths:
            lesions.append((label, _block(row, 1, 2, n), 150.0))
            row += 3
    return _scan(lesions)


def _ordinal(volume, labels):
    scores = agatston(volume, labels)
    per_artery = {k: scores[k].agatston for k in ("LAD", "LCX", "RCA")}
    return ordinal_score(volume, labels, per_artery, artery_length_mm=NOMINAL)


@pytest.mark.parametrize(
    ("lengths", "grade"),
    [
        ([1], 1),  # any calcium is at least mild
        ([29], 1),  # 29 / 90 < 1/3
        ([30], 2),  # exactly 1/3: moderate
        ([15, 15], 2),  # two lesions add up to 1/3
        ([60], 2),  # exactly 2/3: still moderate
        ([61], 3),  # more than 2/3: severe
        ([40, 30], 3),
    ],
)
def test_ordinal_grade_boundaries_from_label_maps(lengths, grade):
    volume, labels = _lines({Label.LAD: lengths})
    result = _ordinal(volume, labels)
    lad = result["arteries"]["LAD"]
    assert lad["calcified_length_mm"] == pytest.approx(sum(lengths))
    assert lad["grade"] == grade
    assert result["arteries"]["LCX"]["grade"] == 0 and result["arteries"]["RCA"]["grade"] == 0
    assert result["total"] == grade and result["max"] == 9


def test_ordinal_total_over_three_arteries():
    volume, labels = _lines({Label.LAD: [61], Label.LCX: [30], Label.RCA: [10]})
    result = _ordinal(volume, labels)
    assert [result["arteries"][a]["grade"] for a in ("LAD", "LCX", "RCA")] == [3, 2, 1]
    assert result["total"] == 6
    assert [result["arteries"][a]["extent"] for a in ("LAD", "LCX", "RCA")] == [
        "severe",
        "moderate",
        "mild",
    ]


def test_ordinal_length_follows_the_lesion_not_the_grid():
    """A diagonal line of n voxels (1 mm pixels) covers n x sqrt(2) mm: the principal axis is
    the diagonal, and one voxel adds |a_y| + |a_x| = sqrt(2) mm along it."""
    n = 22  # 22 sqrt(2) = 31.1 mm > 30: moderate; along x it would be 22 mm: mild
    hu = np.zeros(SHAPE, np.float32)
    lab = np.zeros(SHAPE, np.uint8)
    idx = np.arange(n)
    hu[1, 5 + idx, 5 + idx] = 150.0
    lab[1, 5 + idx, 5 + idx] = int(Label.RCA)
    volume = CTVolume(hu, SPACING)
    labels = LabelVolume.like(volume, lab)
    rca = _ordinal(volume, labels)["arteries"]["RCA"]
    assert rca["calcified_length_mm"] == pytest.approx(n * math.sqrt(2), abs=0.01)
    assert rca["grade"] == 2


def test_ordinal_in_the_scores_json_uses_the_nominal_lengths():
    volume, labels = _lines({Label.LCX: [20]})
    report = score_report(volume, labels, scan="s")
    lcx = report["ordinal_score"]["arteries"]["LCX"]
    assert lcx["artery_length_mm"] == 55.0  # NOMINAL_ARTERY_LENGTH_MM
    assert lcx["fraction"] == pytest.approx(20 / 55, abs=1e-4)
    assert lcx["grade"] == 2  # 20 mm of 55 is more than a third
    assert "0-9" in report["ordinal_score"]["note"]


def test_ordinal_grade_rejects_a_bad_length():
    assert ordinal_grade(10.0, 30.0) == 2
    with pytest.raises(ValueError, match="artery_length_mm"):
        ordinal_grade(1.0, 0.0)
