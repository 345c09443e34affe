"""Connected lesions and the voxel- to lesion-level conversion, on a case worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.lesions import (
    convert_to_lesion_level,
    grow_to_lesions,
    label_lesions,
    lesion_level_study,
    vote_arteries,
)
from calcscore.volume import CTVolume, LabelVolume


def annotated_case() -> tuple[CTVolume, LabelVolume]:
    """1 mm voxels. Calcium (300 HU):
    X: z 1-2, rows 2-3, cols 2-6 (20 voxels); annotated LAD on (1, 2, 2..4), LCX on (2, 3, 6).
    Y: z 4, rows 8-9, cols 10-11 (4 voxels), not annotated.
    Z: z 4, row 15, cols 15-16 (2 voxels); one LCX, one RCA (a tie).
    An annotated LAD voxel at 100 HU at (0, 18, 2): not calcium.
    """
    hu = np.zeros((6, 20, 20), np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    hu[1:3, 2:4, 2:7] = 300
    lab[1, 2, 2:5] = Label.LAD
    lab[2, 3, 6] = Label.LCX
    hu[4, 8:10, 10:12] = 300
    hu[4, 15, 15:17] = 300
    lab[4, 15, 15] = Label.LCX
    lab[4, 15, 16] = Label.RCA
    hu[0, 18, 2] = 100
    lab[0, 18, 2] = Label.LAD
    volume = CTVolume(hu, (1.0, 1.0, 1.0))
    return volume, LabelVolume.like(volume, lab)


def test_region_growing_labels_by_majority():
    volume, labels = annotated_case()
    grown = grow_to_lesions(volume, labels).array
    expected = np.zeros_like(grown)
    expected[1:3, 2:4, 2:7] = Label.LAD  # 3 LAD votes beat 1 LCX vote
    expected[4, 15, 15:17] = Label.LCX  # tie: the smaller label value wins
    np.testing.assert_array_equal(
        grown, expected
    )  # Y stays background; the 100 HU voxel is dropped


def test_the_artery_vote_gives_each_coronary_lesion_its_majority_artery():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:3, 2:4, 2:7] = Label.LAD  # lesion A: 20 voxels, 3 of them then called LCX, 2 RCA
    lab[2, 3, 4:7] = Label.LCX
    lab[1, 2, 5:7] = Label.RCA
    lab[3, 4, 7] = Label.LCX  # touches A through a corner only: 26-connected, part of A
    lab[4, 8:10, 10:12] = Label.LCX  # lesion B, one artery: left as it is
    lab[4, 15, 15:17] = Label.LCX  # lesion C: a near-even split (3 LCX, 2 RCA): left as it is
    lab[4, 15, 17:19] = Label.RCA
    lab[1:3, 5:7, 2:7] = Label.TAC  # aortic voxels touching A: neither vote nor change
    lab[1, 4, 3] = Label.AV
    out = vote_arteries(lab)
    expected = lab.copy()
    expected[1:3, 2:4, 2:7] = Label.LAD  # 15 LAD votes of 21 (>= 2/3) against 4 LCX and 2 RCA
    expected[3, 4, 7] = Label.LAD
    np.testing.assert_array_equal(out, expected)
    lab[4, 15, 19] = Label.LCX  # 3 LCX of 5: 0.6, below 2/3; any majority takes it
    assert (vote_arteries(lab)[4, 15, 15:20] == lab[4, 15, 15:20]).all()
    assert (vote_arteries(lab, majority=0.5)[4, 15, 15:20] == Label.LCX).all()
    lab[4, 15, 19] = 0
    assert out.dtype == lab.dtype
    cac = (Label.LAD, Label.LCX, Label.RCA)
    assert np.isin(out, cac).sum() == np.isin(lab, cac).sum()  # the CAC voxels stay the same
    assert lab[2, 3, 5] == Label.LCX  # the input is not changed
    tie = np.zeros((1, 1, 2), np.uint8)
    tie[0, 0] = Label.LCX, Label.RCA
    assert (vote_arteries(tie, majority=0.5) == Label.LCX).all()  # ties: the lower value
    assert vote_arteries(out) is out  # nothing left to vote: the same array back
    empty = np.zeros((2, 3, 3), np.uint8)
    assert vote_arteries(empty) is empty


def test_region_growing_connectivity():
    volume, labels = annotated_case()
    hu = volume.hu.copy()
    hu[3, 4, 7] = 300  # touches X only through a corner (26- but not 6-connected)
    lab = labels.array.copy()
    vol2 = volume.with_array(hu)
    grown26 = grow_to_lesions(vol2, LabelVolume.like(vol2, lab), connectivity=26).array
    grown6 = grow_to_lesions(vol2, LabelVolume.like(vol2, lab), connectivity=6).array
    assert grown26[3, 4, 7] == Label.LAD
    assert grown6[3, 4, 7] == 0


def test_conversion_ratio_exclusion_and_agatston_increase():
    volume, labels = annotated_case()
    c = convert_to_lesion_level(volume, labels)
    # annotated calcium: 3 + 1 + 2 = 6 voxels (the 100 HU voxel does not count); grown: 20 + 2
    assert c.voxel_level_volume_mm3 == pytest.approx(6.0)
    assert c.lesion_level_volume_mm3 == pytest.approx(22.0)
    assert c.volume_ratio == pytest.approx(22 / 6)
    assert not c.excluded
    # Voxel level (lessmann2018, 1 mm slices): the 3-voxel LAD line, 3 mm^2 x 3 x 1/3 = 3; the
    # 1-voxel LCX and RCA pieces are under 1.5 mm^3. Lesion level: X 2 slices x 10 mm^2 x 3 / 3 = 20,
    # Z (LCX) 2 mm^2 x 3 / 3 = 2.
    assert c.scores_voxel_level["CAC"].agatston == pytest.approx(3.0)
    assert c.scores_lesion_level["LAD"].agatston == pytest.approx(20.0)
    assert c.scores_lesion_level["LCX"].agatston == pytest.approx(2.0)
    assert c.cac_agatston_increase == pytest.approx(19.0)
    assert c.total_agatston_increase == pytest.approx(19.0)
    assert convert_to_lesion_level(volume, labels, max_volume_ratio=3.0).excluded


def test_conversion_of_an_empty_annotation_is_undefined_not_excluded():
    volume, labels = annotated_case()
    c = convert_to_lesion_level(volume, LabelVolume.like(labels))
    assert math.isnan(c.volume_ratio)
    assert not c.excluded
    assert c.lesion_level_volume_mm3 == 0


def test_lesion_level_study_rows():
    volume, labels = annotated_case()
    df = lesion_level_study(
        [("a", volume, labels), ("b", volume, LabelVolume.like(labels))], max_volume_ratio=3.0
    )
    assert list(df["scan_id"]) == ["a", "b"]
    assert list(df["excluded"]) == [True, False]
    assert df.loc[0, "cac_agatston_increase"] == pytest.approx(19.0)
    assert df.loc[1, "total_agatston_increase"] == 0


def test_label_lesions_counts_by_connectivity():
    mask = np.zeros((3, 6, 6), bool)
    mask[1, 1, 1] = mask[1, 2, 2] = True  # share an edge in-plane: 18-connected
    mask[0, 4, 5] = mask[1, 5, 5] = True  # share an edge in z-y: 18-connected
    mask[0, 0, 5] = mask[1, 1, 4] = True  # share a corner only: 26-connected
    assert label_lesions(mask, connectivity=6)[1] == 6
    assert label_lesions(mask, connectivity=18)[1] == 4
    assert label_lesions(mask, connectivity=26)[1] == 3
    with pytest.raises(ValueError, match="connectivity"):
        label_lesions(mask, connectivity=8)
