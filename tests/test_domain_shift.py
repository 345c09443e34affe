"""calcscore.domain_shift on tiny arrays whose answers are counted by hand."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from calcscore import domain_shift as ds
from calcscore.labels import Label
from calcscore.regions import AORTA, HEART, ChestRegions
from calcscore.volume import CTVolume, LabelVolume


def _volume(shape=(10, 8, 8), spacing=(5.0, 1.0, 2.0), hu=-1000.0) -> CTVolume:
    return CTVolume(np.full(shape, hu, np.float32), spacing, (100.0, 0.0, 0.0))


def _regions(zone: np.ndarray, top: int | None) -> ChestRegions:
    return ChestRegions(zone, True, 500.0, top, 0.0)


def test_matched_slice_goes_below_the_heart_top():
    v = _volume()
    zone = np.zeros(v.shape, np.uint8)
    # heart top at slice 9 includes the 20 mm margin: (20 + 30) mm / 5 mm = 10 slices down -> 0
    assert ds.matched_slice(v, _regions(zone, 9)) == 0
    assert ds.matched_slice(v, _regions(zone, 9), below_top_mm=0.0) == 5  # (20 + 0) / 5 = 4
    assert ds.matched_slice(v, _regions(zone, None)) == 5  # no heart top: the middle


def test_where_hot_sorts_the_voxels_over_130_hu():
    v = _volume(spacing=(2.0, 1.0, 1.0))  # 2 mm3 voxels
    hu = v.hu.copy()
    hu[0, 0, :3] = 400.0  # three in the heart region
    hu[5, 5, 5] = 1000.0  # one on bone
    hu[6, 6, 6] = 129.0  # below the threshold: not counted
    where = np.full(v.shape, 4, np.uint8)
    where[0, 0, :3] = 1
    where[5, 5, 5] = 3
    table = ds.where_hot(v.with_array(hu), where)
    assert table.loc["heart region", "mL >= 130 HU"] == pytest.approx(0.0)  # 6 mm3 rounds to 0.0
    assert table.loc["heart region", "%"] == 75.0 and table.loc["bone", "%"] == 25.0
    assert table["%"].sum() == 100.0


def test_where_map_and_where_labels():
    v = _volume(shape=(2, 4, 4))
    zone = np.zeros(v.shape, np.uint8)
    zone[0, 0, 0] = AORTA | HEART
    zone[0, 0, 1] = AORTA
    body = np.ones(v.shape, bool)
    body[1, 3, 3] = False
    where = ds.where_map(v, _regions(zone, 1), body)
    assert where[0, 0, 0] == 1 and where[0, 0, 1] == 2 and where[1, 3, 3] == 0
    assert (where == 4).sum() == v.hu.size - 3
    lab = np.zeros(v.shape, np.uint8)
    lab[0, 0, 0] = Label.LAD
    lab[0, 0, 1] = Label.TAC
    lab[1, 2, 2] = Label.TAC  # in the rest of the body: a certain false positive
    table = ds.where_labels(LabelVolume.like(v, lab), where)
    assert table.loc["LAD", "heart region"] == 1
    assert table.loc["TAC", "mediastinum above the heart"] == 1
    assert table.loc["TAC", "rest of the body"] == 1
    assert table.loc["all"].sum() == 3


def test_box_mask_keep_in_region_and_marked_region():
    assert ds.box_mask((4, 5, 6), [[1, 3], [0, 2], [4, 6]]).sum() == 8
    with pytest.raises(ValueError, match="must be"):
        ds.box_mask((4, 5, 6), [[1, 3], [0, 2]])
    v = _volume(shape=(3, 3, 3))
    lab = np.zeros(v.shape, np.uint8)
    lab[0, 0, 0] = Label.LAD
    lab[1, 1, 1:3] = Label.TAC
    region = np.zeros(v.shape, bool)
    region[0, 0, 0] = True
    kept, removed = ds.keep_in_region(LabelVolume.like(v, lab), region)
    assert removed == {"TAC": 2} and int((kept.labels > 0).sum()) == 1
    assert kept.labels[0, 0, 0] == Label.LAD
    marks = np.zeros((5, 4, 4), bool)
    marks[1, 0, 0] = marks[3, 2, 2] = True
    out = ds.marked_region(marks)
    assert not out[0].any() and not out[4].any()
    assert all(out[z, 0, 0] and out[z, 2, 2] and out[z].sum() == 2 for z in (1, 2, 3))
    one = np.zeros((5, 4, 4), bool)
    one[2, 1, 1] = True
    assert ds.marked_region(one).sum() == 5  # one slice marked: every slice
    assert ds.marked_region(one, through_slices=False).sum() == 1


def test_slabs():
    v = _volume()  # 10 slices of 5 mm, origin z 100
    assert ds.slab_around(v, 1, 20.0) == (0, 4)  # moved inside the scan, not shrunk
    assert ds.slab_around(v, 9, 20.0) == (6, 10)
    assert ds.slab_around(v, 5, 1000.0) == (0, 10)
    assert ds.slab_around(v, 5, None) is None
    s = ds.take_slab(v, (2, 5))
    assert s.shape == (3, 8, 8) and s.origin_mm[0] == 110.0
    assert ds.take_slab(v, None) is v
    with pytest.raises(ValueError, match="outside the scan"):
        ds.take_slab(v, (5, 11))


def test_centres_boxes_and_receptive_field():
    mask = np.zeros((3, 9, 9), bool)
    mask[1, 4, 2:5] = True  # a line of three: its centre is (1, 4, 3)
    mask[0, 0, 0] = True
    assert ds.largest_lesion_centre(mask) == (1, 4, 3)
    assert ds.largest_lesion_centre(np.zeros((2, 2, 2), bool)) is None
    zone = np.zeros((3, 9, 9), np.uint8)
    zone[2, 2:5, 6:9] = HEART
    assert ds.heart_centre(_regions(zone, 2), 2) == (2, 3, 7)
    assert ds.heart_centre(_regions(zone, 2), 0) == (0, 4, 4)  # none on that slice: the middle
    v = _volume(shape=(3, 40, 40), spacing=(3.0, 0.5, 0.5))
    assert ds.view_box(v, (1, 20, 2), 10.0) == (slice(1, 2), slice(10, 31), slice(0, 13))
    model = SimpleNamespace(cnn1=SimpleNamespace(receptive_field=131))
    assert ds.receptive_field_mm(model) == pytest.approx(131 * 0.66)


def test_score_table_and_texture_table():
    v = _volume(shape=(4, 16, 16), spacing=(3.0, 1.0, 1.0), hu=40.0)
    empty = LabelVolume.like(v)
    row = ds.score_table(v, {"none": empty}).loc["none"]
    assert row["CAC Agatston"] == 0.0 and row["risk category"] == "I"
    assert row["labelled voxels"] == 0 and row["lesions"] == 0
    hu = v.hu.copy()
    hu[:, :4, :4] = 400.0  # 16 of 256 voxels per slice over 130 HU
    table = ds.texture_table({"flat": v.with_array(hu)})
    assert table.loc["body >= 130 HU (%)", "flat"] == pytest.approx(100 * 16 / 256)
    assert table.loc["soft tissue (HU)", "flat"] == 40.0


def test_receptive_field_figure_without_a_lesion_says_so():
    """A model that labels nothing and a slab without true calcium leave no voxel to centre on:
    the figure says so instead of failing the notebook."""
    vol = CTVolume(np.zeros((3, 20, 20), np.float32), (2.5, 1.0, 1.0))
    fig = ds.receptive_field_figure([("a", vol, None, None), ("b", vol, None, None)], 10.0)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "no labelled voxel to centre on" in texts and "a, b" in texts
    shown = ds.receptive_field_figure([("a", vol, None, (1, 10, 10)), ("b", vol, None, None)], 10.0)
    assert len(shown.axes) >= 1 and not any("centre on" in t.get_text() for t in shown.texts)
