"""The bad-input catalogue (issue 29): every case a small file the test makes, run through the
command line in-process, with the exit code and the words its message must hold.

Each is refused with one line that names the file, the problem and the fix (``path: problem
(fix)``); nothing partial is left in the output folder; the rest of a cohort goes on. A scan the
checks refuse (no heart, NaN or infinite voxels, not HU, slices over 5 mm) is scored with
``--force``, and then its risk category is "not assessable", never I.
"""

from __future__ import annotations

import errno
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from calcscore.cli import main
from calcscore.io import write_dicom_series, write_volume
from calcscore.phantom import make_scan
from calcscore.volume import CTMeta

OUTPUT_SUFFIXES = ("_labels.nii.gz", "_scores.json", "_lesions.csv", "_overlay.png")


@pytest.fixture(scope="module")
def tiny():
    """A tiny phantom CT (16 x 48 x 48 voxels, 40 x 62 x 62 mm): too small to hold a heart."""
    vol, _, _ = make_scan(rng=5, size="small", shape=(16, 48, 48))
    return vol


# ------------------------------------------------------------------------------ file makers
def _series(tmp: Path, vol, name: str = "series") -> Path:
    return write_dicom_series(vol, tmp / name)


def _edit(folder: Path, edit: Callable[[int, pydicom.Dataset], None]) -> Path:
    for i, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        edit(i, ds)
        ds.save_as(f)
    return folder


def _nifti(tmp: Path, arr: np.ndarray, name: str, spacing=(1.0, 1.0, 1.0)) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    p = tmp / name
    sitk.WriteImage(img, str(p))
    return p


def _manifest(tmp: Path, text: str) -> Path:
    p = tmp / "manifest.csv"
    p.write_text(text)
    return p


def missing_path(tmp, vol):
    return tmp / "nope.nii.gz"


def text_file(tmp, vol):
    p = tmp / "notes.txt"
    p.write_text("hello")
    return p


def single_dicom_file(tmp, vol):
    return sorted(_series(tmp, vol).iterdir())[0]


def empty_folder(tmp, vol):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def folder_without_dicom(tmp, vol):
    d = tmp / "docs"
    d.mkdir()
    (d / "a.txt").write_text("x")
    return d


def truncated_nifti(tmp, vol):
    good = write_volume(vol, tmp / "good.nii.gz").read_bytes()
    p = tmp / "cut.nii.gz"
    p.write_bytes(good[: len(good) // 2])
    return p


def truncated_nifti_uncompressed(tmp, vol):
    good = write_volume(vol, tmp / "good.nii").read_bytes()
    p = tmp / "cut.nii"
    p.write_bytes(good[: len(good) - 1000])
    return p


def mhd_without_raw(tmp, vol):
    p = write_volume(vol, tmp / "scan.mhd")
    for f in tmp.iterdir():
        if f.suffix in (".raw", ".zraw"):
            f.unlink()
    return p


def mhd_truncated_raw(tmp, vol):
    p = tmp / "scan.mhd"
    img = sitk.GetImageFromArray(vol.hu.astype(np.int16))
    sitk.WriteImage(img, str(p), False)  # uncompressed .raw
    raw = tmp / "scan.raw"
    raw.write_bytes(raw.read_bytes()[:1000])
    return p


def dicom_missing_slice(tmp, vol):
    s = _series(tmp, vol)
    sorted(s.iterdir())[5].unlink()
    return s


def dicom_uneven_spacing(tmp, vol):
    def edit(i, ds):
        if i == 4:
            p = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [p[0], p[1], p[2] + 0.4]

    return _edit(_series(tmp, vol), edit)


def dicom_two_series(tmp, vol):
    s = _series(tmp, vol)
    other = _series(tmp, vol.with_array(vol.hu, meta=CTMeta(series_uid="9.9.9")), "other")
    for f in other.iterdir():
        f.rename(s / ("o_" + f.name))
    return s


def dicom_mixed_orientations(tmp, vol):
    def edit(i, ds):
        if i == 7:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # one coronal slice

    return _edit(_series(tmp, vol), edit)


def dicom_gantry_tilt(tmp, vol):
    def edit(i, ds):  # each slice shifted in y by tan(15 deg) of the slice spacing: sheared
        p = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [p[0], p[1] + np.tan(np.radians(15)) * 2.5 * i, p[2]]
        ds.GantryDetectorTilt = 15.0

    return _edit(_series(tmp, vol), edit)


def dicom_scout(tmp, vol):
    def edit(i, ds):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    return _edit(_series(tmp, vol), edit)


def dicom_secondary_captures(tmp, vol):
    def edit(i, ds):
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID

    return _edit(_series(tmp, vol), edit)


def dicom_not_ct(tmp, vol):
    def edit(i, ds):
        ds.Modality = "MR"

    return _edit(_series(tmp, vol), edit)


def dicom_8bit(tmp, vol):
    def edit(i, ds):
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.zeros((ds.Rows, ds.Columns), np.uint8).tobytes()

    return _edit(_series(tmp, vol), edit)


def dicom_corrupt_pixels(tmp, vol):
    def edit(i, ds):
        if i == 3:
            ds.PixelData = ds.PixelData[:100]

    return _edit(_series(tmp, vol), edit)


def dicom_duplicate_slice(tmp, vol):
    s = _series(tmp, vol)
    files = sorted(s.iterdir())
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.save_as(s / "copy.dcm")
    return s


def nifti_2d(tmp, vol):
    return _nifti(tmp, np.zeros((8, 8), np.int16), "slice.nii.gz")


def nifti_4d(tmp, vol):
    frames = [sitk.GetImageFromArray(np.zeros((3, 8, 8), np.int16)) for _ in range(2)]
    p = tmp / "four.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(frames), str(p))
    return p


def nifti_rgb(tmp, vol):
    img = sitk.GetImageFromArray(np.zeros((3, 8, 8, 3), np.uint8), isVector=True)
    p = tmp / "rgb.nii.gz"
    sitk.WriteImage(img, str(p))
    return p


def nifti_8bit(tmp, vol):
    return _nifti(tmp, np.clip(vol.hu / 16 + 64, 0, 255).astype(np.uint8), "eight.nii.gz")


def label_map_as_image(tmp, vol):
    arr = np.zeros(vol.shape, np.int16)
    arr[4:8, 10:20, 10:20] = 4  # TAC
    return write_volume(vol.with_array(arr), tmp / "labels_as_image.nii.gz")


def nan_voxels(tmp, vol):
    hu = vol.hu.copy()
    hu[:, 20:30, 20:30] = np.nan
    return write_volume(vol.with_array(hu), tmp / "nan.nii.gz")


def all_nan(tmp, vol):
    return write_volume(vol.with_array(np.full(vol.shape, np.nan, np.float32)), tmp / "all.nii.gz")


def infinite_voxels(tmp, vol):
    hu = vol.hu.copy()
    hu[3, 5, 5] = np.inf
    hu[4, 5, 5] = -np.inf
    return write_volume(vol.with_array(hu), tmp / "inf.nii.gz")


def normalised_values(tmp, vol):
    return write_volume(vol.with_array((vol.hu + 1000.0) / 4000.0), tmp / "norm.nii.gz")


def raw_stored_values(tmp, vol):
    return write_volume(vol.with_array(vol.hu + 1024.0), tmp / "raw.nii.gz")


def thick_slices(tmp, vol):
    thick = vol.with_array(vol.hu, meta=CTMeta(slice_thickness_mm=6.0))
    return write_volume(thick, tmp / "thick.nii.gz")


def no_heart(tmp, vol):
    return write_volume(vol, tmp / "tiny.nii.gz")


def coronal_slices(tmp, vol):  # the tiny scan stored as coronal slices: not even --force
    from test_orientation import stored_as

    from calcscore.orientation import Orientation

    return write_volume(stored_as(vol, Orientation((1, 0, 2))), tmp / "coronal.nii.gz")


def manifest_missing_column(tmp, vol):
    write_volume(vol, tmp / "a.nii.gz")
    return _manifest(tmp, "id,path\na,a.nii.gz\n")


def manifest_blank_image(tmp, vol):
    write_volume(vol, tmp / "a.nii.gz")
    return _manifest(tmp, "scan_id,image\na,a.nii.gz\nb,\n")


def manifest_duplicate_id(tmp, vol):
    write_volume(vol, tmp / "a.nii.gz")
    return _manifest(tmp, "scan_id,image\na,a.nii.gz\na,a.nii.gz\n")


def manifest_missing_path(tmp, vol):
    return _manifest(tmp, "scan_id,image\ngone,gone.nii.gz\n")


def manifest_unreadable(tmp, vol):
    p = tmp / "manifest.csv"
    p.write_bytes(b"\xff\xfe\x00\x00garbage")
    return p


@dataclass(frozen=True)
class Case:
    """``make(tmp, tiny)`` writes the bad input; ``named`` is the file the message must name
    (None: the input itself); ``level``: "cli" (the command stops, exit 2, one stderr line) or
    "scan" (the scan fails in the summary, exit 1)."""

    make: Callable
    words: tuple[str, ...]
    level: str = "scan"
    named: Callable | None = None

    @property
    def name(self) -> str:
        return self.make.__name__


def _first_file(p: Path) -> Path:
    return sorted(p.iterdir())[0]


CASES = [
    Case(missing_path, ("no such file",), "cli"),
    Case(text_file, ("not an image file", "DICOM folder"), "cli"),
    Case(single_dicom_file, ("single 2D DICOM image", "whole series"), "cli"),
    Case(empty_folder, ("empty folder",)),
    Case(folder_without_dicom, ("no readable DICOM",)),
    Case(truncated_nifti, ("corrupt", "truncated")),
    Case(truncated_nifti_uncompressed, ("truncated", "expected")),
    Case(mhd_without_raw, ("could not be read", "data file scan.zraw is missing")),
    Case(mhd_truncated_raw, ("could not be read", "scan.raw is truncated", "73728 expected")),
    Case(dicom_missing_slice, ("missing slices",)),
    Case(dicom_uneven_spacing, ("non-uniform slice spacing",)),
    Case(dicom_two_series, ("2 series", "--series-uid")),
    Case(dicom_mixed_orientations, ("mixes slice orientations",)),
    Case(dicom_gantry_tilt, ("gantry tilt", "15.0 degrees")),
    Case(dicom_scout, ("scout/localizer",), named=_first_file),
    Case(dicom_secondary_captures, ("secondary capture",), named=_first_file),
    Case(dicom_not_ct, ("not CT",)),
    Case(dicom_8bit, ("8-bit",)),
    Case(dicom_corrupt_pixels, ("could not decode",), named=lambda p: sorted(p.iterdir())[3]),
    Case(dicom_duplicate_slice, ("two slices at the same position",)),
    Case(nifti_2d, ("single 2D image",)),
    Case(nifti_4d, ("4 dimensions",)),
    Case(nifti_rgb, ("multi-component",)),
    Case(nifti_8bit, ("8-bit",)),
    Case(label_map_as_image, ("Hounsfield units",)),
    Case(nan_voxels, ("refused", "not numbers", "NaN", "--force")),
    Case(all_nan, ("refused", "NaN")),
    Case(infinite_voxels, ("refused", "2 infinite")),
    Case(normalised_values, ("refused", "Hounsfield units", "normalised")),
    Case(raw_stored_values, ("refused", "Hounsfield units", "rescale intercept")),
    Case(thick_slices, ("refused", "6 mm thick", "more than 5 mm")),
    Case(no_heart, ("refused", "does not cover the heart")),
    Case(coronal_slices, ("refused", "slices are not axial", "reformat the scan")),
    Case(manifest_missing_column, ("lacks the column", "scan_id, image"), "cli"),
    Case(manifest_blank_image, ("no image on line(s) 3",), "cli"),
    Case(manifest_duplicate_id, ("more than once",), "cli"),
    Case(manifest_unreadable, ("not a readable CSV",), "cli"),
    Case(manifest_missing_path, ("no such file",), named=lambda p: p.parent / "gone.nii.gz"),
]
#: the refusals ``--force`` turns into a scored, not assessable scan
FORCEABLE = {
    "nan_voxels",
    "all_nan",
    "infinite_voxels",
    "normalised_values",
    "thick_slices",
    "no_heart",
    "label_map_as_image",
}


def _score(capsys, *argv) -> tuple[int, str, str]:
    code = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(stderr: str, prefix: str = "calcscore: error: ") -> str:
    """The command's one error line (the progress bar may share stderr, on lines of its own)."""
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.startswith("calcscore:")]
    assert len(lines) == 1 and lines[0].startswith(prefix), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _assert_one_line(line: str, named: Path, words: tuple[str, ...]) -> None:
    assert "\n" not in line.strip()
    assert str(named) in line, line
    for w in words:
        assert w in line, (w, line)
    assert line.rstrip().endswith(")"), f"no fix in parentheses: {line}"  # "(fix)"
    assert "Traceback" not in line


def _no_partial_outputs(out: Path) -> None:
    if out.is_dir():
        assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
        assert not [p for p in out.iterdir() if p.name.endswith(OUTPUT_SUFFIXES)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_is_refused_in_one_line(tmp_path, tiny, model_dir, case, capsys):
    (tmp_path / "in").mkdir()
    bad = case.make(tmp_path / "in", tiny)
    named = case.named(bad) if case.named else bad
    out = tmp_path / "out"
    code, stdout, stderr = _score(capsys, bad, "--out", out, "--model", model_dir, "--no-overlay")
    if case.level == "cli":
        assert code == 2
        _assert_one_line(_error_line(stderr), named, case.words)
    else:
        assert code == 1, stdout
        summary = pd.read_csv(out / "cohort_summary.csv")
        assert len(summary) == 1 and summary.loc[0, "status"] == "failed"
        _assert_one_line(summary.loc[0, "error"], named, case.words)
        assert "1 failed" in stdout
    _no_partial_outputs(out)


def test_the_catalogue_holds_at_least_30_cases():
    assert len(CASES) + len(CLI_CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:slice thickness")  # the 6 mm case, scored anyway
def test_the_rest_of_a_cohort_goes_on_and_forced_scans_are_not_assessable(
    tmp_path, tiny, model_dir, capsys
):
    """One cohort of every scan-level case, forced: those that cannot be read fail, each in its
    row; the refused ones are scored, as not assessable, never with a risk category."""
    # (raw stored values, 0..4095, make every voxel a calcium candidate for CNN2: slow, left out)
    scan_cases = [
        c
        for c in CASES
        if c.level == "scan" and c.make not in (manifest_missing_path, raw_stored_values)
    ]
    rows = []
    for c in scan_cases:
        folder = tmp_path / "in" / c.name
        folder.mkdir(parents=True)
        rows.append({"scan_id": c.name, "image": str(c.make(folder, tiny))})
    manifest = tmp_path / "cohort.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp_path / "out"
    code, stdout, _ = _score(
        capsys, manifest, "--out", out, "--model", model_dir, "--no-overlay", "--force"
    )
    assert code == 1
    summary = pd.read_csv(out / "cohort_summary.csv")
    print(summary[["scan_id", "status", "seconds"]].to_string())
    assert len(summary) == len(scan_cases)  # every scan has its row, once
    for c, row in zip(scan_cases, summary.itertuples(index=False)):
        if c.name in FORCEABLE:
            assert row.status == "ok", (c.name, row.error)
            assert row.risk_category == "not assessable" and str(row.assessable) == "False"
            report = json.loads((out / f"{row.scan_id}_scores.json").read_text())
            assert report["risk_category"] == "not assessable" and report["assessable"] is False
            assert report["not_assessable_reason"] == row.not_assessable_reason
            assert f"{row.scan_id}: not assessable: " in stdout
        else:
            assert row.status == "failed", c.name
            assert not list(out.glob(f"{row.scan_id}_*"))
    nan_row = summary[summary["scan_id"] == "nan_voxels"].iloc[0]
    assert "NaN" in nan_row.not_assessable_reason and "-1024 HU" in nan_row.not_assessable_reason
    assert "does not cover the heart" in nan_row.not_assessable_reason  # the tiny scan has none
    n_ok = len(FORCEABLE)
    assert f"{n_ok} scans scored, {len(scan_cases) - n_ok} failed; {n_ok} not assessable" in stdout


# ------------------------------------------------------------ model, outputs, disk, Ctrl-C
def truncated_model(tmp: Path, model_dir: Path) -> tuple[list, Path]:
    folder = tmp / "model"
    folder.mkdir()
    data = (model_dir / "cnn1.pt").read_bytes()
    (folder / "cnn1.pt").write_bytes(data[: len(data) // 2])
    (folder / "cnn2.pt").write_bytes((model_dir / "cnn2.pt").read_bytes())
    return ["--model", folder], folder / "cnn1.pt"


def model_without_cnn1(tmp: Path, model_dir: Path) -> tuple[list, Path]:
    (tmp / "model").mkdir()
    return ["--model", tmp / "model"], tmp / "model"


def out_is_a_file(tmp: Path, model_dir: Path) -> tuple[list, Path]:
    (tmp / "taken").write_text("x")
    return ["--model", model_dir, "--out", tmp / "taken" / "out"], tmp / "taken" / "out"


def out_overwrites_input(tmp: Path, model_dir: Path) -> tuple[list, Path]:
    return ["--model", model_dir, "--out", tmp / "in"], tmp / "in" / "tiny_labels.nii.gz"


CLI_CASES = {
    truncated_model: ("could not be read", "truncated or corrupt model file"),
    model_without_cnn1: ("holds no cnn1.pt",),
    out_is_a_file: ("cannot be written", "writable --out"),
    out_overwrites_input: ("is an input and would be overwritten",),
}


@pytest.mark.parametrize("make", list(CLI_CASES), ids=lambda f: f.__name__)
def test_bad_model_or_output_folder_is_one_line(tmp_path, tiny, model_dir, make, capsys):
    (tmp_path / "in").mkdir()
    scan = write_volume(tiny, tmp_path / "in" / "tiny.nii.gz")
    # the scan's labels as another input, so that --out in/ would overwrite an input
    (tmp_path / "in" / "tiny_labels.nii.gz").write_bytes(scan.read_bytes())
    args, named = make(tmp_path, model_dir)
    if "--out" not in args:
        args += ["--out", tmp_path / "out"]
    inputs = [scan] + ([tmp_path / "in" / "tiny_labels.nii.gz"] if "in" in str(named) else [])
    code, _, stderr = _score(capsys, *inputs, *args, "--force")
    assert code == 2
    _assert_one_line(_error_line(stderr), named, CLI_CASES[make])
    assert (tmp_path / "in" / "tiny_labels.nii.gz").read_bytes() == scan.read_bytes()


def test_image_passed_as_labels_is_one_line(tmp_path, tiny, capsys):
    image = write_volume(tiny, tmp_path / "scan.nii.gz")
    assert main(["agatston", str(image), str(image)]) == 2
    line = capsys.readouterr().err.strip()
    _assert_one_line(line, image, ("outside the label range",))
    float_image = write_volume(tiny.with_array(tiny.hu + 0.5), tmp_path / "f.nii.gz")
    assert main(["agatston", str(image), str(float_image)]) == 2
    _assert_one_line(capsys.readouterr().err.strip(), float_image, ("non-integer values",))


def test_a_full_disk_leaves_nothing_half_written(tmp_path, tiny, model_dir, monkeypatch, capsys):
    """Every output is written in a temporary folder and moved into place; with the disk full
    (the move, the commit point of every write, fails with ENOSPC) no scan output and no
    temporary folder is left, and the command says so in one line."""
    import calcscore.io

    scan = write_volume(tiny, tmp_path / "tiny.nii.gz")
    out = tmp_path / "out"

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(calcscore.io.os, "replace", full)
    code, _, stderr = _score(capsys, scan, "--out", out, "--model", model_dir, "--force")
    assert code == 2
    _assert_one_line(_error_line(stderr), out, ("could not be written", "No space left on device"))
    assert not list(out.iterdir())  # no outputs, no summary, no temporary folders


def test_ctrl_c_keeps_finished_scans_and_leaves_nothing_half_written(
    tmp_path, tiny, model_dir, monkeypatch, capsys
):
    import calcscore.inference

    first = write_volume(tiny, tmp_path / "first.nii.gz")
    second = write_volume(tiny, tmp_path / "second.nii.gz")
    real_segment = calcscore.inference.segment
    calls = []

    def segment(volume, model, opts):
        calls.append(1)
        seg = real_segment(volume, model, opts)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second scan is being scored
        return seg

    monkeypatch.setattr(calcscore.inference, "segment", segment)
    out = tmp_path / "out"
    code, _, stderr = _score(capsys, first, second, "--out", out, "--model", model_dir, "--force")
    assert code == 130
    line = _error_line(stderr, "calcscore: interrupted")
    assert "Ctrl-C" in line and "rerun" in line
    names = {p.name for p in out.iterdir()}
    assert {f"first{s}" for s in OUTPUT_SUFFIXES} <= names  # the first scan whole
    assert all(n.startswith("first") for n in names), names  # nothing of the second, no staging
    assert json.loads((out / "first_scores.json").read_text())["scan"] == "first"


def test_nifti_truncation_check_reads_the_header(tmp_path, tiny):
    """The truncated-NIfTI case really is truncated: its header promises more bytes than it has."""
    good = write_volume(tiny, tmp_path / "good.nii")
    head = good.read_bytes()[:352]
    vox_offset = struct.unpack("<f", head[108:112])[0]
    bitpix = struct.unpack("<h", head[72:74])[0]
    assert good.stat().st_size == int(vox_offset) + tiny.hu.size * bitpix // 8
    assert truncated_nifti_uncompressed(tmp_path, tiny).stat().st_size < good.stat().st_size
