"""Compressed DICOM series (as PACS exports often are) read as their uncompressed originals; a
compression no installed decoder reads is refused in one line that names it and the fix."""

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
