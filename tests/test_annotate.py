"""The annotation tool without widgets: grow, paint, erase, undo, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.annotate import MASK_VALUE, Annotator, label_value, slice_to_voxel
from calcscore.io import read_labels, write_labels
from calcscore.labels import Label
from calcscore.lesions import grow_to_lesions
from calcscore.viz import plane_slice
from calcscore.volume import CTVolume, GeometryMismatchError, LabelVolume


@pytest.fixture
def scan():
    """A 12 x 20 x 24 scan at (2, 0.5, 1) mm, origin and direction not trivial: water, a
    drawn blob of 400 HU (two 3 x 3 blocks on slices 3 and 4, joined only through a corner, 18
    voxels), a separate 200 HU voxel pair, and a 129 HU voxel touching the blob (below 130)."""
    hu = np.zeros((12, 20, 24), np.float32)
    hu[3, 4:7, 4:7] = 400
    hu[4, 7:10, 7:10] = 400  # touches the first block at (3, 6, 6) - (4, 7, 7): 26- not 6-connected
    hu[3, 7, 3] = 129
    hu[8, 10, 15:17] = 200
    direction = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    vol = CTVolume(hu, (2.0, 0.5, 1.0), (-30.0, 12.5, 100.0), direction)
    return vol


def test_grow_labels_the_26_connected_component(scan):
    a = Annotator(scan)
    assert a.grow(4, 8, 8, Label.LAD) == 18
    assert a.count("LAD") == 18 and a.labels.array[3, 7, 3] == 0
    assert np.array_equal(a.labels.array > 0, scan.hu >= 300)
    # relabelling the same lesion changes all of it; growing it again changes nothing
    assert a.grow(3, 5, 5, "RCA") == 18 and a.count(Label.RCA) == 18
    assert a.grow(3, 5, 5, "RCA") == 0
    assert a.grow(8, 10, 16, "TAC") == 2
    # the same lesion as the section V.H conversion grows from a one-voxel annotation
    seed = np.zeros(scan.shape, np.uint8)
    seed[4, 8, 8] = Label.RCA
    assert np.array_equal(
        grow_to_lesions(scan, LabelVolume.like(scan, seed)).array == Label.RCA,
        a.labels.array == Label.RCA,
    )
    # 6-connectivity splits the blob at the corner
    assert Annotator(scan, connectivity=6).grow(3, 5, 5, "LAD") == 9
    with pytest.raises(ValueError, match="below the calcium threshold"):
        a.grow(3, 7, 3, "LAD")
    with pytest.raises(ValueError, match="outside the scan"):
        a.grow(12, 0, 0, "LAD")


def _gauss_count(radius_mm, sr, sc):
    """Lattice points (i sr, j sc) within the radius, counted by brute force."""
    n = int(radius_mm // min(sr, sc)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    return int((((i * sr) ** 2 + (j * sc) ** 2) <= radius_mm**2).sum())


def test_paint_disk_has_the_analytic_voxel_count():
    vol = CTVolume(np.zeros((9, 40, 40), np.float32), (2.0, 1.0, 1.0))
    # Gauss circle problem: 5, 13, 29, 81 lattice points within radius 1, 2, 3, 5
    for r, n in [(0, 1), (1, 5), (2, 13), (3, 29), (5, 81)]:
        a = Annotator(vol)
        assert a.paint("axial", 4, 20, 20, r, "LAD") == n
        assert _gauss_count(r, 1.0, 1.0) == n
        assert a.count("LAD") == n and (a.labels.array[4] > 0).sum() == n
    # 2 mm rows in the coronal plane: radius 2 mm -> 5 voxels in the centre row + 1 above + 1 below
    a = Annotator(vol)
    assert a.paint("coronal", 10, 4, 20, 2.0, "mask") == 7
    assert a.count("mask") == 7 and a.labels.array[:, 10].sum() == 7 * MASK_VALUE
    assert a.paint("sagittal", 10, 4, 20, 4.5, "AV") == _gauss_count(4.5, 2.0, 1.0)
    # clipped at the corner: one open quadrant of the 29, its two half axes and the centre
    a = Annotator(vol)
    assert a.paint("axial", 4, 0, 0, 3, "TAC") == (29 - 1 - 4 * 3) // 4 + 2 * 3 + 1 == 11


def test_paint_and_erase_follow_the_displayed_slice(scan):
    a = Annotator(scan)
    a.paint("coronal", 5, 0, 2, 0, "MV")  # row 0 of a coronal slice is the top: the last z
    assert a.labels.array[11, 5, 2] == Label.MV
    a.paint("sagittal", 7, 11, 3, 0, "LCX")  # sagittal columns run along y
    assert a.labels.array[0, 3, 7] == Label.LCX
    assert slice_to_voxel(scan.shape, "sagittal", 7, 11, 3) == (0, 3, 7)
    shown = plane_slice(a.labels.array, "coronal", 5)
    assert shown[0, 2] == Label.MV
    # erase everything in a disk, or one label only
    a.paint("axial", 6, 10, 10, 1.0, "LAD")
    a.paint("axial", 6, 10, 12, 0, "mask")
    n_lad = a.count("LAD")
    assert a.erase("axial", 6, 10, 11, 1.0, label="mask") == 1
    assert a.count("LAD") == n_lad and a.count("mask") == 0
    assert a.erase("axial", 6, 10, 10, 10.0) == n_lad
    assert a.erase("axial", 6, 10, 10, 10.0) == 0
    with pytest.raises(ValueError, match="index"):
        a.paint("axial", 12, 0, 0, 1, "LAD")
    with pytest.raises(ValueError, match="calcium label"):
        a.paint("axial", 0, 0, 0, 1, 7)
    with pytest.raises(ValueError, match="unknown label name"):
        label_value("LM")


def test_undo_restores_byte_identical_labels(scan):
    start = np.zeros(scan.shape, np.uint8)
    start[0, 0, :5] = Label.TAC
    a = Annotator(scan, LabelVolume.like(scan, start), max_undo=3)
    snapshots = [a.labels.array.copy()]
    a.grow(3, 5, 5, "LAD")
    snapshots.append(a.labels.array.copy())
    a.paint("axial", 3, 5, 5, 1.0, "mask")
    snapshots.append(a.labels.array.copy())
    a.erase("axial", 0, 0, 0, 2.0)
    assert a.n_undo == 3
    assert a.paint("axial", 0, 19, 23, 0, "LAD") == 1  # the fourth change pushes out the first
    assert a.n_undo == 3
    assert a.undo() == 1
    for snap in reversed(snapshots[1:]):
        a.undo()
        assert a.labels.array.tobytes() == snap.tobytes()
    assert a.n_undo == 0 and a.undo() == 0
    assert start.sum() == 5 * Label.TAC  # the caller's array is never touched
    with pytest.raises(ValueError):
        a.labels.array[0, 0, 0] = 1  # read-only view


def test_save_load_round_trip_keeps_geometry(scan, tmp_path):
    a = Annotator(scan)
    a.grow(3, 5, 5, "LAD")
    a.paint("axial", 8, 2, 2, 1.0, "mask")
    path = a.save(tmp_path / "annotation.nii.gz")
    back = read_labels(path)
    assert back.spacing_mm == scan.spacing_mm and back.origin_mm == scan.origin_mm
    assert np.array_equal(back.direction, scan.direction)
    assert back.array.tobytes() == a.labels.array.tobytes()

    b = Annotator(scan)
    disk = _gauss_count(1.0, 0.5, 1.0)  # rows of 0.5 mm, columns of 1 mm: 5 + 2
    assert disk == 7 and b.load(path) == 18 + disk
    assert b.labels.array.tobytes() == a.labels.array.tobytes()
    assert b.undo() == 25 and not b.labels.array.any()  # loading is undoable

    # the same voxels saved in another layout (z reversed, RAS): loaded onto the scan's grid
    from calcscore.orientation import Orientation

    ras = Orientation((0, 1, 2), (True, True, True))
    std = ras.apply(back)  # the map as a file stored with every axis reversed would hold it
    flipped = LabelVolume.like(std, np.ascontiguousarray(std.array))
    assert not flipped.same_geometry(scan)
    assert b.load(write_labels(flipped, tmp_path / "ras.nii.gz")) == 25
    assert b.labels.array.tobytes() == a.labels.array.tobytes()
    b.undo()

    moved = LabelVolume(back.array, scan.spacing_mm, (0.0, 0.0, 0.0), scan.direction)
    other = write_labels(moved, tmp_path / "other.nii.gz")
    with pytest.raises(GeometryMismatchError, match="other.nii.gz.*do not share a grid"):
        b.load(other)
    assert not b.labels.array.any()
    with pytest.raises(GeometryMismatchError):
        Annotator(scan, LabelVolume(np.zeros((12, 20, 25), np.uint8), scan.spacing_mm))
