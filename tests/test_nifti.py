"""calcscore.nifti, the numpy-only NIfTI-1 reader, against SimpleITK on the same files."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from calcscore.errors import InputError
from calcscore.io import _itk_geometry
from calcscore.nifti import read_nifti

sitk = pytest.importorskip("SimpleITK")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "open-chest-ct"


def _same_as_sitk(path: Path) -> None:
    img = sitk.ReadImage(str(path))
    expected = sitk.GetArrayFromImage(img)
    spacing, origin, direction = _itk_geometry(img)
    got = read_nifti(path)
    assert got.array.dtype == expected.dtype
    np.testing.assert_array_equal(got.array, expected)
    np.testing.assert_allclose(got.spacing_mm, spacing, atol=1e-5)
    np.testing.assert_allclose(got.origin_mm, origin, atol=1e-4)
    np.testing.assert_allclose(got.direction, direction, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32, np.int32])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_oblique_volume_matches_simpleitk(tmp_path, dtype, suffix):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 200, size=(5, 7, 9)).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((-120.5, 33.25, 410.0))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    path = tmp_path / f"oblique{suffix}"
    sitk.WriteImage(img, str(path))
    _same_as_sitk(path)


def test_intensity_scaling_is_applied(tmp_path):
    """A header with scl_slope 2 and scl_inter -1024 (as some converters write) reads as HU."""
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = tmp_path / "scaled.nii"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    raw = bytearray(path.read_bytes())
    raw[112:120] = np.array([2.0, -1024.0], "<f4").tobytes()
    path.write_bytes(bytes(raw))
    got = read_nifti(path)
    assert got.scaled and got.array.dtype == np.float32
    np.testing.assert_array_equal(got.array, arr * 2.0 - 1024.0)
    _same_as_sitk(path)  # SimpleITK also reads it as float32 HU


def test_truncated_and_foreign_files_are_refused(tmp_path):
    arr = np.zeros((4, 4, 4), np.int16)
    path = tmp_path / "full.nii"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    cut = tmp_path / "cut.nii.gz"
    with gzip.open(cut, "wb") as fh:
        fh.write(path.read_bytes()[:-20])
    with pytest.raises(InputError, match=r"cut\.nii\.gz.*truncated"):
        read_nifti(cut)
    other = tmp_path / "other.nii"
    other.write_bytes(b"\x00" * 400)
    with pytest.raises(InputError, match="not a NIfTI-1 file"):
        read_nifti(other)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="the open real chest CTs are not beside the repo")
def test_real_chest_cts_match_simpleitk():
    for path in sorted(SHARED.glob("lungdx-*.nii.gz")):
        _same_as_sitk(path)
