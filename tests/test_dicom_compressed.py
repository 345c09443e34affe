"""Compressed DICOM series (as PACS exports often are) and bare datasets without the Part 10
header (older archives) read as their originals; a compression no installed decoder reads is
refused in one line that names it and the fix."""

from __future__ import annotations

from pathlib import Path

import gdcm  # python-gdcm: a dependency of calcscore (pyproject.toml), which reads them
import numpy as np
import pydicom
import pytest

from calcscore.errors import InputError
from calcscore.io import read_volume, write_dicom_series
from calcscore.volume import CTVolume

SYNTAXES = {
    "1.2.840.10008.1.2.4.70": "JPEGLosslessProcess14_1",  # JPEG Lossless SV1, the PACS default
    "1.2.840.10008.1.2.4.80": "JPEGLSLossless",
    "1.2.840.10008.1.2.4.90": "JPEG2000Lossless",
    "1.2.840.10008.1.2.5": "RLELossless",
}


def transcode(src: Path, dst: Path, syntax: str) -> Path:
    """Every file of the series ``src`` compressed with gdcm's ``syntax`` into ``dst``."""
    dst.mkdir()
    for f in sorted(src.iterdir()):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(f))
        assert reader.Read()
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
        change.SetInput(reader.GetImage())
        assert change.Change()
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(dst / f.name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
    return dst


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)  # CT values from air to dense bone, negative ones included
    hu = rng.integers(-1024, 2000, size=(4, 32, 40)).astype(np.float32)
    return write_dicom_series(CTVolume(hu, (3.0, 0.5, 0.5)), tmp_path_factory.mktemp("plain") / "s")


@pytest.mark.parametrize("uid", list(SYNTAXES))
def test_a_compressed_series_reads_as_its_original(tmp_path, series, uid):
    packed = transcode(series, tmp_path / "packed", SYNTAXES[uid])
    assert pydicom.dcmread(next(packed.iterdir())).file_meta.TransferSyntaxUID == uid
    want, got = read_volume(series), read_volume(packed)
    np.testing.assert_array_equal(got.hu, want.hu)  # lossless: every voxel
    assert got.same_geometry(want)


def test_a_compression_without_a_decoder_names_itself_and_the_fix(tmp_path, series, monkeypatch):
    packed = transcode(series, tmp_path / "packed", SYNTAXES["1.2.840.10008.1.2.4.70"])

    class Unavailable:
        is_available = False

    def no_pixels(self):
        raise RuntimeError("Unable to decompress: missing required dependencies")

    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda uid: Unavailable())
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(no_pixels))
    with pytest.raises(InputError) as err:
        read_volume(packed)
    text = str(err.value)
    assert "JPEG Lossless" in text and "no installed decoder" in text and "python-gdcm" in text


def test_raw_datasets_without_the_part10_header_read_as_their_series(tmp_path, series):
    """Older archives store CT slices as bare datasets (no 128-byte preamble, no "DICM", no file
    meta): read as the Part 10 files they came from, and a SEG can reference them; a folder of
    other files is still refused."""
    from calcscore.dicom_out import write_seg
    from calcscore.volume import LabelVolume

    raw = tmp_path / "raw"
    raw.mkdir()
    for f in sorted(series.iterdir()):
        ds = pydicom.dcmread(f)
        ds.preamble = None
        del ds.file_meta
        ds.save_as(raw / f.name, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert (raw / f.name).read_bytes()[128:132] != b"DICM"
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(raw / f.name)  # what pydicom alone says
    want, got = read_volume(series), read_volume(raw)
    np.testing.assert_array_equal(got.hu, want.hu)
    assert got.same_geometry(want)
    labels = np.zeros(got.shape, np.uint8)
    labels[1, 10:14, 10:14] = 1
    seg = pydicom.dcmread(write_seg(LabelVolume.like(got, labels), raw, tmp_path / "seg.dcm"))
    assert len(seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == got.shape[0]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("SOPClassUID Rows\n" * 20)
    with pytest.raises(InputError, match="no readable DICOM"):
        read_volume(other)


def test_a_study_folder_with_a_scout_and_a_dose_page_reads_its_one_ct_stack(tmp_path, series):
    """A calcium-scoring study as exported: the axial series, a scout (LOCALIZER) and a dose
    page (secondary capture), each its own series: the axial series is read and referenced by
    the SEG; two axial series still need --series-uid."""
    import shutil

    from pydicom.uid import generate_uid

    from calcscore.dicom_out import write_seg
    from calcscore.volume import LabelVolume

    study = tmp_path / "study"
    shutil.copytree(series, study / "axial")
    first = sorted(series.iterdir())[0]
    for name, edit in (
        ("scout", {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}),
        ("dose", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "ImageType": ["DERIVED"]}),
    ):
        ds = pydicom.dcmread(first)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        for k, v in edit.items():
            setattr(ds, k, v)
        (study / name).mkdir()
        ds.save_as(study / name / "1.dcm", enforce_file_format=True)
    want, got = read_volume(series), read_volume(study)
    np.testing.assert_array_equal(got.hu, want.hu)
    labels = np.zeros(got.shape, np.uint8)
    labels[2, 5:9, 5:9] = 1
    seg = pydicom.dcmread(write_seg(LabelVolume.like(got, labels), study, tmp_path / "seg.dcm"))
    refs = seg.ReferencedSeriesSequence
    assert len(refs) == 1 and refs[0].SeriesInstanceUID == want.meta.series_uid
    shutil.copytree(series, study / "again")  # a second CT stack (another UID) ...
    for f in (study / "again").iterdir():
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.3.999"
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(InputError, match="--series-uid"):  # ... is the user's choice
        read_volume(study)
