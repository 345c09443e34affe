"""`calcscore score --dicom`: a DICOM SEG and a TID 1500 SR beside the other outputs of a DICOM
input, read back with highdicom and pydicom and checked by dicom3tools' dciodvfy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from calcscore.bundle import model_identity
from calcscore.cli import main
from calcscore.dicom_out import read_seg, read_sr_scores
from calcscore.io import read_labels, write_dicom_series, write_volume
from calcscore.labels import Label
from calcscore.networks import build_network
from calcscore.phantom import make_scan
from calcscore.training import get_config, save_model
from calcscore.volume import CTVolume

hd = pytest.importorskip("highdicom")

DCIODVFY = shutil.which("dciodvfy")


@pytest.fixture(scope="module")
def labelling_model(tmp_path_factory) -> Path:
    """A CNN1 alone (no CNN2) whose biases make it call every calcium candidate TAC or AV: a
    fast model that gives a label map with two labels on the scan below."""
    torch.manual_seed(2)
    folder = tmp_path_factory.mktemp("model")
    config = get_config("workshop", "cnn1", width=4, head_width=8)
    cnn1 = build_network("cnn1", config.network_params())
    with torch.no_grad():
        for bias in [cnn1.head_layers[-1].bias] + [s.aux_classifier[-1].bias for s in cnn1.subnets]:
            bias.zero_()
            bias[1], bias[4], bias[5] = 4.0, 4.05, 4.025
    save_model(cnn1, config, folder / "cnn1.pt")
    return folder


@pytest.fixture(scope="module")
def scored(tmp_path_factory, labelling_model):
    """`calcscore score` of one scan as a DICOM folder and as NIfTI, with --dicom."""
    root = tmp_path_factory.mktemp("dicom")
    vol, _, _ = make_scan(rng=11, size="small")
    slab = CTVolume(
        vol.hu[22:38, 24:104, 24:104].copy(), vol.spacing_mm, vol.origin_mm, vol.direction
    )
    folder = write_dicom_series(slab, root / "scan", patient_id="P0011")
    nii = write_volume(slab, root / "other.nii.gz")
    out = root / "out"
    args = ["score", str(folder), str(nii), "--out", str(out), "--model", str(labelling_model)]
    args += ["--device", "cpu", "--precision", "fp32", "--no-overlay", "--no-safety-net"]
    args += ["--force"]  # a slab of a phantom, too small to hold the heart (issue 29)
    proc = subprocess.run(
        [sys.executable, "-m", "calcscore.cli", *args, "--dicom"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder, out, proc


def _text_items(ds, code: str) -> list[str]:
    """The TEXT values of the SR's content items named ``code`` (DCM), anywhere in the tree."""
    found = []
    for item in getattr(ds, "ContentSequence", []):
        if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == code:
            found.append(str(item.TextValue))
        found += _text_items(item, code)
    return found


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_dicom_input_gets_a_seg_and_the_nifti_one_line(scored):
    folder, out, proc = scored
    assert (out / "scan_seg.dcm").is_file() and (out / "scan_sr.dcm").is_file()
    assert not list(out.glob("other_*.dcm"))  # a NIfTI input gets no SEG/SR ...
    assert (out / "other_scores.json").is_file()  # ... and the rest of its outputs
    lines = [line for line in proc.stderr.splitlines() if "--dicom" in line]
    assert (
        len(lines) == 1
        and "other.nii.gz is not a folder of a single-frame DICOM series" in lines[0]
    )
    provenance = json.loads((out / "scan_provenance.json").read_text())
    assert {"scan_seg.dcm", "scan_sr.dcm"} <= set(provenance["outputs"])


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_seg_holds_one_segment_per_label_present(scored, labelling_model):
    folder, out, _ = scored
    labels = read_labels(out / "scan_labels.nii.gz")
    present = [Label(v).name for v in np.unique(labels.array) if v]
    assert len(present) >= 2, "the test model should find two labels on this scan"
    seg = hd.seg.segread(out / "scan_seg.dcm")
    numbers = seg.get_segment_numbers()
    assert [seg.get_segment_description(n).segment_label for n in numbers] == present
    algorithm = seg.get_segment_description(numbers[0]).algorithm_identification
    identity = model_identity(labelling_model)
    assert (
        str(algorithm[0].AlgorithmName) == identity["name"] == f"calcscore-{labelling_model.name}"
    )
    assert str(algorithm[0].AlgorithmVersion) == identity["version"]
    source = pydicom.dcmread(next(folder.iterdir()))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == "P0011"
    np.testing.assert_array_equal(read_seg(out / "scan_seg.dcm", folder).array, labels.array)


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_sr_holds_the_scores_of_the_json_and_the_model(scored, labelling_model):
    folder, out, _ = scored
    report = json.loads((out / "scan_scores.json").read_text())
    sr = hd.sr.srread(out / "scan_sr.dcm")
    groups = {g.tracking_identifier: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    groups |= {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    assert set(groups) == set(report["labels"])  # LAD ... MV and CAC
    seg = pydicom.dcmread(out / "scan_seg.dcm")
    for name, group in groups.items():
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Calcium score"] == pytest.approx(report["labels"][name]["agatston"])
        assert values["Calcium Volume"] == pytest.approx(report["labels"][name]["volume_mm3"])
        if report["labels"][name]["agatston"] > 0 and name != "CAC":  # points at its segment
            ref = group.referenced_segment[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == seg.SOPInstanceUID
            number = int(ref.ReferencedSegmentNumber)
            assert seg.SegmentSequence[number - 1].SegmentLabel == name
    evaluations = groups["CAC"].get_qualitative_evaluations()
    assert {(q.name.meaning, q.value.meaning) for q in evaluations} == {
        ("Risk category", report["risk_category"]),
        ("CAC-DRS", report["cac_drs"]["label"]),
    }
    cac = {m.name.meaning: m.value for m in groups["CAC"].get_measurements()}
    assert cac["Ordinal score"] == report["ordinal_score"]["total"]
    back = read_sr_scores(out / "scan_sr.dcm")
    assert back["CAC"]["Risk category"] == report["risk_category"]
    assert back["CAC"]["CAC-DRS"] == report["cac_drs"]["label"]
    identity = model_identity(labelling_model)
    ds = pydicom.dcmread(out / "scan_sr.dcm")
    assert set(_text_items(ds, "111001")) == {identity["name"]}  # Algorithm Name
    assert set(_text_items(ds, "111003")) == {identity["version"]}  # Algorithm Version
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR


def _dciodvfy_errors(path: Path) -> list[str]:
    r = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not found (apt-get install dicom3tools)")
def test_dciodvfy_finds_no_error(scored):
    _, out, _ = scored
    assert _dciodvfy_errors(out / "scan_seg.dcm") == []
    assert _dciodvfy_errors(out / "scan_sr.dcm") == []


@pytest.mark.slow
def test_real_qrm_series_with_the_shipped_model(tmp_path, qrm_dicom):
    """The QRM phantom scan (Canon, 47 slices) with the shipped model: SEG, SR, report page and
    (where Chromium is) its PDF; dciodvfy finds no error; the SR holds the JSON's scores."""
    from calcscore.errors import MissingDependencyError
    from calcscore.report_pdf import find_pdf_engine

    try:
        pdf = [] if find_pdf_engine() is None else ["--pdf"]
    except MissingDependencyError:
        pdf = []
    out = tmp_path / "out"
    args = ["score", str(qrm_dicom), "--out", str(out), "--device", "cpu", "--dicom", *pdf]
    assert main(args) == 0
    scan = qrm_dicom.name
    assert (out / f"{scan}_report.html").is_file()
    if pdf:
        assert (out / f"{scan}_report.pdf").read_bytes()[:5] == b"%PDF-"
    labels = read_labels(out / f"{scan}_labels.nii.gz")
    seg = hd.seg.segread(out / f"{scan}_seg.dcm")
    present = [Label(v).name for v in np.unique(labels.array) if v] or [
        lab.name for lab in Label if lab
    ]
    labels_in_seg = [
        seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()
    ]
    assert labels_in_seg == present
    report = json.loads((out / f"{scan}_scores.json").read_text())
    back = read_sr_scores(out / f"{scan}_sr.dcm")
    for name, values in report["labels"].items():
        assert back[name]["agatston"] == pytest.approx(values["agatston"])
    assert back["CAC"]["CAC-DRS"] == report["cac_drs"]["label"]
    if DCIODVFY is not None:
        assert _dciodvfy_errors(out / f"{scan}_seg.dcm") == []
        assert _dciodvfy_errors(out / f"{scan}_sr.dcm") == []


def test_dicom_without_highdicom_is_one_line_before_any_scan(tmp_path, monkeypatch, capsys):
    vol, _, _ = make_scan(rng=11, size="small")
    nii = write_volume(vol, tmp_path / "a.nii.gz")
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom fails
    out = tmp_path / "out"
    assert main(["score", str(nii), "--out", str(out), "--dicom"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'calcscore[dicom]'" in err[0]
    assert not out.exists()
