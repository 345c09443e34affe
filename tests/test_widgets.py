"""The slice viewer and the slice rendering behind it, without a browser."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest

from calcscore.annotate import Annotator
from calcscore.io import read_labels, write_labels
from calcscore.labels import COLOURS, Label
from calcscore.viz import (
    THRESHOLD_COLOUR,
    WINDOWS,
    box_around,
    crop,
    disagreement_boxes,
    largest_lesion,
    plane_slice,
    png_bytes,
    render_slice,
)
from calcscore.volume import CTVolume, LabelVolume
from calcscore.widgets import MASK_COLOUR, SliceViewer


@pytest.fixture
def scan():
    """A 10 x 20 x 30 scan at (2, 1, 1) mm: water, one 400 HU block labelled LAD on slices
    4-5 and one 200 HU block labelled TAC on slice 7."""
    hu = np.zeros((10, 20, 30), np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    hu[4:6, 5:8, 10:14] = 400
    lab[4:6, 5:8, 10:14] = Label.LAD
    hu[7, 12:15, 20:25] = 200
    lab[7, 12:15, 20:25] = Label.TAC
    vol = CTVolume(hu, (2.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    return vol, LabelVolume.like(vol, lab)


def _colour(rgb):
    return tuple(int(v) for v in rgb)


def test_plane_slices_are_oriented_and_stretched(scan):
    vol, _ = scan
    assert plane_slice(vol.hu, "axial", 4).shape == (20, 30)
    assert plane_slice(vol.hu, "coronal", 5).shape == (10, 30)
    # head up: the last z slice is the first row
    arr = np.arange(10)[:, None, None] * np.ones((10, 20, 30))
    assert plane_slice(arr, "sagittal", 0)[0, 0] == 9
    # 2 mm slices against 1 mm pixels: coronal rows are doubled
    assert render_slice(vol, plane="coronal", index=5).shape == (20, 30, 3)
    assert render_slice(vol, plane="sagittal", index=5, square_pixels=False).shape == (10, 20, 3)
    with pytest.raises(ValueError, match="plane"):
        render_slice(vol, plane="oblique", index=0)
    with pytest.raises(ValueError, match="index"):
        render_slice(vol, plane="axial", index=10)


def test_render_slice_colours(scan):
    vol, labels = scan
    img = render_slice(vol, labels, index=4, preset="mediastinum", alpha=1.0)
    assert img.dtype == np.uint8 and img.shape == (20, 30, 3)
    assert _colour(img[6, 11]) == tuple(round(255 * c) for c in COLOURS[Label.LAD])
    # water in the mediastinum window (level 40, width 400): grey 0.4
    assert _colour(img[0, 0]) == (102, 102, 102)
    hidden = render_slice(vol, labels, index=4, visible={int(Label.TAC)}, alpha=1.0)
    assert _colour(hidden[6, 11]) == (255, 255, 255)  # 400 HU is white in this window
    over = render_slice(vol, None, index=4, threshold_hu=130)
    expected = np.round((0.45 * 1.0 + 0.55 * np.asarray(THRESHOLD_COLOUR)) * 255)
    assert _colour(over[6, 11]) == tuple(int(v) for v in expected)
    assert _colour(over[0, 0]) == (102, 102, 102)  # below the threshold: untouched
    # deterministic
    assert np.array_equal(img, render_slice(vol, labels, index=4, preset="mediastinum", alpha=1.0))


def test_png_bytes_round_trip_and_scale(scan):
    vol, labels = scan
    img = render_slice(vol, labels, index=4)
    data = png_bytes(img, scale=3)
    assert data == png_bytes(img, scale=3)  # no time stamps
    back = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert back.shape[:2] == (60, 90)
    assert np.array_equal(np.round(back[::3, ::3, :3] * 255).astype(np.uint8), img)


def test_crop_keeps_physical_positions(scan):
    vol, labels = scan
    box = box_around(labels, margin_mm=2.0)
    assert box == (slice(3, 9), slice(3, 17), slice(8, 27))
    small = crop(vol, box)
    assert small.shape == (6, 14, 19)
    np.testing.assert_allclose(
        small.index_to_physical([[0, 0, 0]]), vol.index_to_physical([[3, 3, 8]])
    )
    assert crop(labels, box).labels.sum() == labels.labels.sum()


def test_largest_lesion(scan):
    vol, labels = scan
    z, box = largest_lesion(labels, margin_mm=1.0)  # the LAD block (24 voxels) beats TAC (15)
    assert z == 4 and box == (slice(3, 7), slice(4, 9), slice(9, 15))
    with pytest.raises(ValueError, match="no calcium"):
        largest_lesion(LabelVolume.like(vol))


def test_disagreement_boxes_find_the_changed_lesion(scan):
    vol, labels = scan
    other = labels.labels.copy()
    other[7][other[7] == Label.TAC] = Label.AV
    found = disagreement_boxes(labels, LabelVolume.like(vol, other), n=3, margin_mm=1.0)
    assert len(found) == 1
    z, box = found[0]
    assert z == 7 and box[1] == slice(11, 16) and box[2] == slice(19, 26)
    assert disagreement_boxes(labels, labels) == []


def test_viewer_side_by_side_and_controls(scan):
    vol, labels = scan
    other = LabelVolume.like(vol)
    v = SliceViewer(vol, {"reference": labels, "observer 2": other}, display_px=60)
    assert v.index == 7  # starts on the slice with the most labelled voxels
    v.set_slice(4)
    view = v.render()
    assert view.shape == (20, 30 + 4 + 30, 3)
    lad = tuple(round(255 * (0.3 * 1.0 + 0.7 * c)) for c in COLOURS[Label.LAD])  # on white
    assert _colour(view[6, 11]) == lad
    assert _colour(view[6, 34 + 11]) == (255, 255, 255)  # the empty map shows the CT
    before = v.images[0].value
    assert before[:8] == b"\x89PNG\r\n\x1a\n"

    v.set_slice(7)
    assert v.images[0].value != before and "axial slice 8 of 10" in v.position.value
    tac = tuple(
        round(255 * (0.3 * 0.9 + 0.7 * c)) for c in COLOURS[Label.TAC]
    )  # on 200 HU: grey 0.9
    assert _colour(v.render()[13, 22]) == tac
    v.show_label("TAC", False)
    assert _colour(v.render()[13, 22]) == (230, 230, 230)
    v.show_threshold(True)
    assert _colour(v.render()[13, 22]) != (230, 230, 230)

    v.set_window("lung")
    assert v.window == WINDOWS["lung"] and v.level.value == -600
    v.set_window((0, 100))
    assert v.preset.value == "custom" and v.window == (0.0, 100.0)
    v.level.value = 50  # dragging level or width leaves the preset
    assert v.preset.value == "custom"


def test_viewer_planes_keep_their_own_slice(scan):
    vol, labels = scan
    v = SliceViewer(vol, labels)
    v.set_slice(5)
    v.set_plane("sagittal")
    assert v.slider.max == 29 and v.render().shape == (20, 20, 3)
    v.set_slice(11)
    assert "sagittal slice 12 of 30 (x = 11.0 mm)" == v.describe()
    v.set_plane("coronal")
    assert v.slider.max == 19
    v.set_plane("axial")
    assert v.index == 5 and v.slider.max == 9
    v.set_plane("sagittal")
    assert v.index == 11


def test_viewer_checks_inputs(scan):
    vol, labels = scan
    wrong = LabelVolume(np.zeros((10, 20, 31), np.uint8), vol.spacing_mm)
    with pytest.raises(ValueError, match="do not share a grid"):
        SliceViewer(vol, [labels, wrong])
    with pytest.raises(ValueError, match="plane"):
        SliceViewer(vol, plane="oblique")
    v = SliceViewer(vol)  # the CT alone
    assert v.render().shape == (20, 30, 3)
    with pytest.raises(ValueError, match="calcium label"):
        v.show_label(0)


def test_annotation_clicks_map_to_voxels_through_the_stretch(scan):
    vol, _ = scan
    v = SliceViewer(vol, annotate=True, display_px=60)
    assert list(v.panels) == ["annotation"] and v.tool.value == "grow"
    v.set_slice(4)
    # axial: 30 columns shown 2 x enlarged; pixel (13, 22) shows slice pixel (6, 11) = voxel (4, 6, 11)
    v.annot_label.value = "RCA"
    assert v.click(13, 22) == 24 and v.cursor_voxel == (4, 6, 11)
    assert v.annotator.count("RCA") == 24  # the whole 2 x 3 x 4 block at 400 HU
    rca = tuple(round(255 * (0.3 * 1.0 + 0.7 * c)) for c in COLOURS[Label.RCA])
    assert _colour(v.render()[5, 10]) == rca

    # coronal: 2 mm rows doubled, then 2 x enlarged; head up, so display rows 8-11 show z = 7
    v.set_plane("coronal")
    v.set_slice(13)
    v.annot_label.value = "TAC"
    assert v.display_to_slice(8, 44) == (2, 22) and v.display_to_slice(11, 45) == (2, 22)
    assert v.display_to_slice(0, 0) == (0, 0) and v.display_to_slice(39, 59) == (9, 29)
    assert v.click(10, 44) == 15 and v.cursor_voxel == (7, 13, 22)
    with pytest.raises(ValueError, match="outside the displayed slice"):
        v.display_to_slice(40, 0)

    # below 130 HU nothing grows, and the message says why
    assert v.click(0, 0) == 0 and "below the calcium threshold" in v.message.value
    assert v.annotator.n_undo == 2


def test_annotation_paint_undo_save_load_with_the_buttons(scan, tmp_path):
    vol, labels = scan
    v = SliceViewer(vol, {"edited": labels, "reference": labels}, annotate=True, display_px=60)
    assert list(v.panels) == ["edited", "reference"] and v.panels["reference"] is labels
    before = v.annotator.labels.array.copy()
    v.set_plane("sagittal")  # rows z (2 mm), columns y (1 mm)
    v.set_slice(2)
    v.tool.value, v.annot_label.value, v.radius.value = "paint", "mask", 2.0
    v.set_cursor(4, 10)
    v.apply_button.click()
    assert v.annotator.count("mask") == 7  # 5 along y, 1 above and 1 below
    assert v.annotator.labels.array[5, 10, 2] == 255  # display row 4 is z = 9 - 4
    view = v.render()  # the 2 mm rows are doubled: slice row 4 is rendered rows 8-9
    mask = tuple(int(round(0.3 * 102 + 0.7 * 255 * c)) for c in MASK_COLOUR)
    assert _colour(view[8, 10]) == mask and _colour(view[9, 10]) == mask
    assert _colour(view[8, 14]) == (255, 255, 255)  # the cursor's cross, right of the pixel
    assert _colour(view[8, 10 + 1]) == mask  # the cross leaves the neighbours visible

    v.undo_button.click()
    assert v.annotator.labels.array.tobytes() == before.tobytes()
    assert labels.array[labels.array > 0].size == 39  # the caller's map is never edited

    v.set_cursor(4, 10)
    v.apply_button.click()
    v.path.value = str(tmp_path / "edited.nii.gz")
    v.save_button.click()
    assert "saved" in v.message.value
    saved = read_labels(tmp_path / "edited.nii.gz")
    assert saved.same_geometry(vol) and saved.array.tobytes() == v.annotator.labels.array.tobytes()
    v.tool.value = "erase"
    v.apply_button.click()
    assert v.annotator.count("mask") == 0
    v.load_button.click()
    assert v.annotator.count("mask") == 7 and "loaded" in v.message.value

    other = tmp_path / "other.nii.gz"
    write_labels(LabelVolume(saved.array, (1.0, 1.0, 1.0)), other)
    v.path.value = str(other)
    v.load_button.click()
    assert "do not share a grid" in v.message.value and "other.nii.gz" in v.message.value
    assert v.annotator.count("mask") == 7
    v.set_plane("axial")  # the cursor stays inside the smaller axial slice
    assert v.cursor == (4, 10) and v.cursor_col.max == 29


def test_annotation_with_a_given_annotator(scan):
    vol, labels = scan
    ann = Annotator(vol)
    ann.grow(7, 13, 22, "TAC")
    v = SliceViewer(vol, {"reference": labels}, annotate=ann)
    assert list(v.panels) == ["annotation", "reference"] and v.annotator is ann
    assert v.panels["annotation"].array.sum() == 15 * Label.TAC  # a live view of its labels
    ann.undo()
    assert not v.panels["annotation"].array.any()
    with pytest.raises(ValueError, match="do not share a grid"):
        SliceViewer(
            vol, annotate=Annotator(CTVolume(np.zeros((10, 20, 31), np.float32), (2, 1, 1)))
        )
    with pytest.raises(TypeError, match="annotate"):
        SliceViewer(vol, annotate="yes")
    assert SliceViewer(vol).annotator is None and not hasattr(SliceViewer(vol), "tool")


def test_viewer_shows_a_reversed_scan_as_the_standard_one(scan):
    """A scan and its labels stored with y to anterior (as dcm2niix stores a CT) are shown
    anterior up, pixel for pixel as the scan stored as DICOM stores it."""
    from calcscore.orientation import Orientation

    vol, labels = scan
    rows_up = Orientation((0, 1, 2), (False, True, False))  # a reversal is its own inverse
    stored, stored_labels = rows_up.apply(vol), rows_up.apply(labels)
    assert not np.array_equal(stored.hu, vol.hu)
    want = SliceViewer(vol, labels, display_px=60)
    got = SliceViewer(stored, stored_labels, display_px=60)
    for v in (want, got):
        v.set_slice(4)
    np.testing.assert_array_equal(got.render(), want.render())
