"""Round trips for every format, the real scanner series, and every refused input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from calcscore.errors import InputError
from calcscore.io import read_labels, read_volume, write_dicom_series, write_labels, write_volume
from calcscore.volume import CTVolume, LabelVolume

FORMATS = ["nii.gz", "nii", "mha", "mhd", "nrrd"]


def assert_same_geometry(a, b):
    assert a.shape == b.shape
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, atol=1e-5)


@pytest.mark.parametrize("fmt", FORMATS)
def test_volume_round_trip(tmp_path, small_ct, fmt):
    path = write_volume(small_ct, tmp_path / f"scan.{fmt}")
    back = read_volume(path)
    assert_same_geometry(small_ct, back)
    np.testing.assert_array_equal(back.hu, small_ct.hu)
    assert back.meta.kernel == "B30f" and back.meta.kvp == 120.0
    assert back.meta.slice_thickness_mm == 2.0 and back.meta.manufacturer == "SIEMENS"
    # nothing but the outputs is left behind (no temporary folders)
    assert all(not p.name.startswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_round_trip(tmp_path, small_labels, fmt):
    back = read_labels(write_labels(small_labels, tmp_path / f"lab.{fmt}"))
    assert_same_geometry(small_labels, back)
    np.testing.assert_array_equal(back.labels, small_labels.labels)


def test_fractional_hu_is_kept_as_float(tmp_path, small_ct):
    v = small_ct.with_array(small_ct.hu + 0.25)
    np.testing.assert_array_equal(read_volume(write_volume(v, tmp_path / "f.mha")).hu, v.hu)


def test_itk_axis_order_is_reversed_exactly_once(tmp_path):
    """A volume written by SimpleITK directly, with (x, y, z) spacing, reads back as (z, y, x)."""
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.75, 2.5))  # x, y, z
    img.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(img, str(tmp_path / "a.mha"))
    v = read_volume(tmp_path / "a.mha")
    assert v.spacing_mm == (2.5, 0.75, 0.5)
    assert v.origin_mm == (3.0, 2.0, 1.0)
    assert v.hu[1, 2, 3] == arr[1, 2, 3]
    # physical point of voxel (z=1, y=2, x=3) agrees with ITK's
    itk_point = img.TransformIndexToPhysicalPoint((3, 2, 1))
    np.testing.assert_allclose(v.index_to_physical([1, 2, 3])[0], itk_point[::-1])


def test_dicom_series_round_trip(tmp_path, small_ct):
    vol = small_ct.with_array(np.round(small_ct.hu))
    folder = write_dicom_series(vol, tmp_path / "series")
    assert len(list(folder.iterdir())) == vol.shape[0]
    back = read_volume(folder)
    assert_same_geometry(vol, back)
    np.testing.assert_array_equal(back.hu, vol.hu)
    assert back.meta.kernel == "B30f" and back.meta.series_uid == "1.2.3.4.5"
    # and the same series read by SimpleITK gives the same geometry (independent reader)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    np.testing.assert_allclose(img.GetSpacing()[::-1], back.spacing_mm, atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), back.origin_mm[::-1], atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), back.hu)
    np.testing.assert_allclose(
        np.reshape(img.GetDirection(), (3, 3))[::-1, ::-1], back.direction, atol=1e-5
    )


def test_dicom_slices_are_sorted_by_position_not_file_name(tmp_path, small_ct):
    vol = small_ct.with_array(np.round(small_ct.hu))
    folder = write_dicom_series(vol, tmp_path / "s")
    files = sorted(folder.iterdir())
    for i, f in enumerate(files):  # rename so that name order is reversed
        f.rename(folder / f"img{len(files) - i:03d}")
    np.testing.assert_array_equal(read_volume(folder).hu, vol.hu)


def test_real_scanner_series(qrm_dicom):
    v = read_volume(qrm_dicom)
    assert v.shape == (47, 512, 512)
    np.testing.assert_allclose(v.spacing_mm, (3.0, 0.488, 0.488), atol=1e-3)
    assert v.meta.kernel == "FC12" and v.meta.slice_thickness_mm == 3.0 and v.meta.kvp == 120
    assert v.hu.min() == -2048  # outside the field of view, after rescale


def test_info_command_on_real_series(qrm_dicom):
    out = subprocess.run(
        [sys.executable, "-m", "calcscore.cli", "info", str(qrm_dicom)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "512 × 512 × 47" in out
    assert "0.488 × 0.488 mm" in out
    assert "slice thickness  3 mm" in out
    assert "FC12" in out and "TOSHIBA" in out and "kVp              120" in out
    assert "layout           z to superior, y to posterior, x to left (standard)" in out


# ------------------------------------------------------------------------------- refused inputs
def _series(tmp_path, small_ct) -> Path:
    return write_dicom_series(small_ct.with_array(np.round(small_ct.hu)), tmp_path / "series")


def _edit_slice(path: Path, **changes) -> None:
    ds = pydicom.dcmread(path)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(path)


def make_missing_path(tmp_path, small_ct):
    return tmp_path / "nope.nii.gz", "no such file"


def make_empty_folder(tmp_path, small_ct):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "empty folder"


def make_non_image_file(tmp_path, small_ct):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    return p, "not a supported image file"


def make_folder_without_dicom(tmp_path, small_ct):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.txt").write_text("x")
    return d, "no readable DICOM"


def make_corrupt_file(tmp_path, small_ct):
    good = write_volume(small_ct, tmp_path / "good.nii.gz").read_bytes()
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(good[: len(good) // 3])
    return p, "could not be read"


def make_missing_slices(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    sorted(s.iterdir())[2].unlink()
    return s, "missing slices"


def make_nonuniform_spacing(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    f = sorted(s.iterdir())[3]
    pos = [float(v) for v in pydicom.dcmread(f).ImagePositionPatient]
    _edit_slice(f, ImagePositionPatient=[pos[0], pos[1], pos[2] + 0.3])
    return s, "non-uniform slice spacing"


def make_non_ct(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    for f in s.iterdir():
        _edit_slice(f, Modality="MR")
    return s, "not CT"


def make_single_dicom(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    return sorted(s.iterdir())[0], "single 2D"


def make_single_2d_nifti(tmp_path, small_ct):
    p = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((8, 8), np.int16)), str(p))
    return p, "single 2D"


def make_8bit_nifti(tmp_path, small_ct):
    p = tmp_path / "eight.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.uint8)), str(p))
    return p, "8-bit"


def make_8bit_dicom(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    for f in s.iterdir():
        ds = pydicom.dcmread(f)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint8).tobytes()
        ds.save_as(f)
    return s, "8-bit"


def make_two_series(tmp_path, small_ct):
    s = _series(tmp_path, small_ct)
    other = small_ct.with_array(
        np.round(small_ct.hu), meta=small_ct.meta.__class__(series_uid="9.9.9")
    )
    write_dicom_series(other, tmp_path / "other")
    for f in (tmp_path / "other").iterdir():
        f.rename(s / ("o_" + f.name))
    return s, "--series-uid"


BAD_INPUTS = [
    make_missing_path,
    make_empty_folder,
    make_non_image_file,
    make_folder_without_dicom,
    make_corrupt_file,
    make_missing_slices,
    make_nonuniform_spacing,
    make_non_ct,
    make_single_dicom,
    make_single_2d_nifti,
    make_8bit_nifti,
    make_8bit_dicom,
    make_two_series,
]


@pytest.mark.parametrize("make", BAD_INPUTS, ids=lambda f: f.__name__[5:])
def test_bad_input_is_refused_in_one_line(tmp_path, small_ct, make):
    path, problem = make(tmp_path, small_ct)
    with pytest.raises(InputError, match=problem):
        read_volume(path)
    r = subprocess.run(
        [sys.executable, "-m", "calcscore.cli", "info", str(path)], capture_output=True, text=True
    )
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and problem in lines[0]
    assert "Traceback" not in r.stderr


def test_two_series_can_be_picked_by_uid(tmp_path, small_ct):
    s, _ = make_two_series(tmp_path, small_ct)
    assert read_volume(s, series_uid="9.9.9").meta.series_uid == "9.9.9"
    assert read_volume(s, series_uid="1.2.3.4.5").meta.series_uid == "1.2.3.4.5"


def test_writers_refuse_unknown_suffix(tmp_path, small_ct):
    with pytest.raises(InputError, match="suffix"):
        write_volume(small_ct, tmp_path / "x.png")


def test_label_reader_rejects_non_integer_maps(tmp_path):
    p = tmp_path / "f.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 3, 3), 0.5, np.float32)), str(p))
    with pytest.raises(InputError, match="non-integer"):
        read_labels(p)
    assert isinstance(
        read_labels(
            write_labels(
                LabelVolume(np.ones((2, 3, 3), np.uint8), (1, 1, 1)), tmp_path / "ok.nii.gz"
            )
        ),
        LabelVolume,
    )


def test_ct_volume_float_dtype():
    assert CTVolume(np.zeros((1, 2, 2), np.int16), (1, 1, 1)).hu.dtype == np.float32


@pytest.mark.parametrize("suffix", ["nii.gz", "mha", "nrrd"])
def test_one_volume_stored_as_4d_reads_as_3d(tmp_path, suffix):
    """Some converters store a scan as 4D with one time point: it is the 3D scan (more than one
    time point is still refused, tests/test_bad_inputs.py)."""
    arr = np.random.default_rng(0).integers(-1024, 1000, (5, 8, 9)).astype(np.int16)
    frame = sitk.GetImageFromArray(arr)
    frame.SetSpacing((0.7, 0.6, 2.5))
    frame.SetOrigin((1.0, 2.0, 3.0))
    path = tmp_path / f"one.{suffix}"
    sitk.WriteImage(sitk.JoinSeries([frame]), str(path))
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.hu, arr)
    np.testing.assert_allclose(volume.spacing_mm, (2.5, 0.6, 0.7), rtol=1e-6)
    np.testing.assert_allclose(volume.origin_mm, (3.0, 2.0, 1.0))
