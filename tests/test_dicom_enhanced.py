"""Enhanced multi-frame CT files (one file, one frame per slice; calcscore.dicom_enhanced): read
as the same volume as the classic series of the same scan, and refused in one line when their
frames do not stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from calcscore.dicom_enhanced import ENHANCED_CT_STORAGE
from calcscore.errors import InputError
from calcscore.io import read_volume, write_dicom_series
from calcscore.phantom import make_scan
from calcscore.volume import CTMeta, CTVolume


def _seq(**attrs) -> list[Dataset]:
    item = Dataset()
    for k, v in attrs.items():
        setattr(item, k, v)
    return [item]


def write_enhanced_ct(
    volume: CTVolume, path: Path, *, order=None, slope: float = 1.0, intercept: float = -1024.0
) -> Path:
    """``volume`` (standard layout) as one Enhanced CT file, frames in ``order`` (default: as
    stored), stored values = (HU - intercept) / slope; geometry per frame, the rest shared."""
    n = volume.shape[0]
    order = list(range(n)) if order is None else list(order)
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ENHANCED_CT_STORAGE
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = ENHANCED_CT_STORAGE, fm.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.Manufacturer = "CT", "P1", "SIEMENS"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    stored = np.round((volume.hu - intercept) / slope).astype(np.uint16)
    ds.PixelData = stored[order].tobytes()
    sz, sy, sx = volume.spacing_mm
    ds.SharedFunctionalGroupsSequence = _seq(
        PixelMeasuresSequence=_seq(PixelSpacing=[sy, sx], SliceThickness=sz),
        PlaneOrientationSequence=_seq(ImageOrientationPatient=[1, 0, 0, 0, 1, 0]),
        PixelValueTransformationSequence=_seq(
            RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="HU"
        ),
        CTReconstructionSequence=_seq(ConvolutionKernel="Qr36"),
        CTXRayDetailsSequence=_seq(KVP=120),
    )
    ox, oy, oz = volume.origin_mm[2], volume.origin_mm[1], volume.origin_mm[0]
    ds.PerFrameFunctionalGroupsSequence = [
        Dataset() for _ in order
    ]  # one item per frame, in file order
    for item, k in zip(ds.PerFrameFunctionalGroupsSequence, order, strict=True):
        item.PlanePositionSequence = _seq(ImagePositionPatient=[ox, oy, oz + k * sz])
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def phantom() -> CTVolume:
    volume, _, _ = make_scan(rng=5, size="small")
    hu = np.clip(np.round(volume.hu), -1024, 3071).astype(np.float32)  # as 12-bit CT stores it
    return volume.with_array(hu, meta=CTMeta(slice_thickness_mm=volume.spacing_mm[0]))


def test_an_enhanced_ct_file_reads_as_its_classic_series(tmp_path, phantom):
    """Frames stored out of order, each with its own position: the same voxels, geometry and
    HU as the classic single-frame series of the same scan, as a file and as a folder."""
    rng = np.random.default_rng(0)
    order = rng.permutation(phantom.shape[0])
    folder = tmp_path / "enhanced"
    folder.mkdir()
    f = write_enhanced_ct(phantom, folder / "ct.dcm", order=order, slope=0.5, intercept=-1024)
    classic = read_volume(write_dicom_series(phantom, tmp_path / "classic"))
    for got in (read_volume(f), read_volume(folder)):
        np.testing.assert_allclose(got.hu, classic.hu, atol=0.5)  # a slope of 0.5 rounds
        np.testing.assert_allclose(got.spacing_mm, classic.spacing_mm, atol=1e-5)
        np.testing.assert_allclose(got.origin_mm, classic.origin_mm, atol=1e-3)  # 6 digits
        np.testing.assert_allclose(got.direction, classic.direction, atol=1e-6)
        assert got.meta.kernel == "Qr36" and got.meta.kvp == 120.0
        assert got.meta.slice_thickness_mm == pytest.approx(phantom.spacing_mm[0])


def test_frames_that_do_not_stack_are_refused_in_one_line(tmp_path, phantom):
    f = write_enhanced_ct(phantom, tmp_path / "two.dcm", order=[0, 1, 2, 2, 3])
    with pytest.raises(InputError, match="two slices at the same position"):
        read_volume(f)
    ds = pydicom.dcmread(write_enhanced_ct(phantom, tmp_path / "g.dcm"))
    del ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence
    ds.save_as(tmp_path / "nogeo.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="without PlaneOrientationSequence for frame 1"):
        read_volume(tmp_path / "nogeo.dcm")
    ds = pydicom.dcmread(write_enhanced_ct(phantom, tmp_path / "m.dcm"))
    ds.PerFrameFunctionalGroupsSequence[2].PlaneOrientationSequence = _seq(
        ImageOrientationPatient=[1, 0, 0, 0, 0, -1]  # one coronal frame, per frame
    )
    ds.save_as(tmp_path / "mixed.dcm", enforce_file_format=True)
    with pytest.raises(InputError, match="mixes frame orientations \\(frame 3 is oriented"):
        read_volume(tmp_path / "mixed.dcm")


def test_score_takes_an_enhanced_series_and_writes_no_seg_for_it(tmp_path, phantom, model_dir):
    """`calcscore score --dicom` on a folder holding one enhanced file and on the classic series
    of the same scan: the same labels; SEG and SR only for the classic one (they reference its
    slices), said in one warning."""
    import subprocess
    import sys

    from calcscore.io import read_labels

    folder = tmp_path / "enhanced"
    folder.mkdir()
    write_enhanced_ct(phantom, folder / "ct.dcm")
    classic = write_dicom_series(phantom, tmp_path / "classic")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "calcscore.cli", "score", str(folder), str(classic)]
    cmd += ["--out", str(out), "--model", str(model_dir), "--device", "cpu", "--dicom"]
    cmd += ["--no-report", "--no-overlay"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "enhanced is not a folder of a single-frame DICOM series" in r.stderr
    assert (out / "classic_seg.dcm").exists() and not (out / "enhanced_seg.dcm").exists()
    np.testing.assert_array_equal(
        read_labels(out / "enhanced_labels.nii.gz").labels,
        read_labels(out / "classic_labels.nii.gz").labels,
    )
