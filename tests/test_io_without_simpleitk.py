"""NIfTI without SimpleITK: read_volume and read_labels fall back to calcscore.nifti and give the
same arrays, geometry, metadata and refusals as with SimpleITK (a GPU training machine and light
Binder images have no SimpleITK)."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from calcscore.errors import InputError, MissingDependencyError
from calcscore.io import read_labels, read_volume, write_labels, write_volume


def _both(monkeypatch, read: Callable, path: Path):
    """``read(path)`` with SimpleITK, then with its import failing (as where it is not installed):
    each is the result, or the InputError raised."""
    out = []
    for missing in (False, True):
        with monkeypatch.context() as m:
            if missing:
                m.setitem(sys.modules, "SimpleITK", None)  # import SimpleITK raises ImportError
            try:
                out.append(read(path))
            except InputError as exc:
                out.append(exc)
    return out


def _assert_identical(a, b, array: str) -> None:
    assert type(a) is type(b)
    x, y = getattr(a, array), getattr(b, array)
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x, y)  # NaN where NaN, inf of the same sign where inf
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, rtol=0, atol=1e-6)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, rtol=0, atol=1e-4)
    np.testing.assert_allclose(a.direction, b.direction, rtol=0, atol=1e-6)


def test_the_fallback_is_what_reads_when_simpleitk_is_missing(monkeypatch, tmp_path, small_ct):
    write_volume(small_ct, tmp_path / "scan.mha")
    write_volume(small_ct, tmp_path / "scan.nii")
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(MissingDependencyError, match="SimpleITK"):
        read_volume(tmp_path / "scan.mha")  # MetaImage still needs SimpleITK
    np.testing.assert_array_equal(read_volume(tmp_path / "scan.nii").hu, small_ct.hu)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_volume_and_sidecar_metadata_are_identical(monkeypatch, tmp_path, small_ct, suffix):
    path = write_volume(small_ct, tmp_path / f"scan{suffix}")  # int16, oblique, JSON sidecar
    with_itk, without = _both(monkeypatch, read_volume, path)
    _assert_identical(with_itk, without, "hu")
    np.testing.assert_array_equal(without.hu, small_ct.hu)
    assert without.meta == with_itk.meta
    assert without.meta.kernel == "B30f" and without.meta.kvp == 120.0


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_labels_are_identical(monkeypatch, tmp_path, small_labels, suffix):
    path = write_labels(small_labels, tmp_path / f"labels{suffix}")
    with_itk, without = _both(monkeypatch, read_labels, path)
    _assert_identical(with_itk, without, "labels")
    np.testing.assert_array_equal(without.labels, small_labels.labels)


def _nifti(tmp_path: Path, name: str, arr: np.ndarray, slope: float = 0.0, inter: float = 0.0):
    """``arr`` (z, y, x) written by SimpleITK as NIfTI, with scl_slope/scl_inter set in its header."""
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.6, 0.7, 2.5))
    img.SetOrigin((-30.0, 12.5, 400.0))
    plain = tmp_path / "plain.nii"
    sitk.WriteImage(img, str(plain))
    raw = bytearray(plain.read_bytes())
    raw[112:120] = np.array([slope, inter], "<f4").tobytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    return path


@pytest.mark.parametrize("slope", [0.0, -2.0])
def test_nan_and_inf_come_back_as_with_simpleitk(monkeypatch, tmp_path, slope):
    """SimpleITK reads NaN/inf as 0 (scaled: as scl_inter) and calcscore puts the file's values
    back, scaled; the fallback gives the same voxels, also under a negative intensity slope."""
    arr = np.full((3, 4, 5), 40.0, np.float32)
    arr[0, 0, 0], arr[1, 2, 3], arr[2, 3, 4] = np.nan, np.inf, -np.inf
    path = _nifti(tmp_path, "nan.nii", arr, slope=slope, inter=10.0 if slope else 0.0)
    with_itk, without = _both(monkeypatch, read_volume, path)
    _assert_identical(with_itk, without, "hu")
    sign = -1.0 if slope < 0 else 1.0
    assert np.isnan(without.hu[0, 0, 0]) and without.hu[1, 2, 3] == sign * np.inf
    assert without.hu[2, 3, 4] == -sign * np.inf
    assert without.hu[0, 0, 1] == (40.0 * slope + 10.0 if slope else 40.0)


def test_nan_in_a_label_map_is_refused_alike(monkeypatch, tmp_path):
    arr = np.ones((3, 4, 5), np.float32)
    arr[1, 1, 1] = np.nan
    path = _nifti(tmp_path, "nanlabels.nii.gz", arr)
    with_itk, without = _both(monkeypatch, read_labels, path)
    assert isinstance(without, InputError) and str(without) == str(with_itk)
    assert "non-integer" in str(without)


@pytest.mark.parametrize(
    ("read", "arr", "problem"),
    [
        (read_volume, np.zeros((3, 4, 5), np.uint8), "8-bit data"),
        (read_volume, np.zeros((3, 4, 5), np.int8), "8-bit data"),
        (read_labels, np.full((3, 4, 5), 300, np.int16), "outside the label range"),
        (read_labels, np.full((3, 4, 5), -1, np.int16), "outside the label range"),
        (read_labels, np.full((3, 4, 5), 1.5, np.float32), "non-integer values"),
    ],
)
def test_refusals_are_the_same_one_line(monkeypatch, tmp_path, read, arr, problem):
    path = _nifti(tmp_path, "bad.nii.gz", arr)
    with_itk, without = _both(monkeypatch, read, path)
    assert isinstance(with_itk, InputError) and isinstance(without, InputError)
    assert str(without) == str(with_itk)
    assert problem in str(without) and "\n" not in str(without)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_is_one_line_either_way(monkeypatch, tmp_path, small_ct, suffix):
    full = write_volume(small_ct, tmp_path / "full.nii")
    cut = tmp_path / f"cut{suffix}"
    data = full.read_bytes()[:-100]
    if suffix == ".nii.gz":
        data = gzip.compress(full.read_bytes())[:-100]  # the stream ends early
    cut.write_bytes(data)
    with_itk, without = _both(monkeypatch, read_volume, cut)
    for exc in (with_itk, without):
        assert isinstance(exc, InputError), exc
        msg = str(exc)
        assert msg.startswith(str(cut)) and "truncated" in msg and "\n" not in msg
