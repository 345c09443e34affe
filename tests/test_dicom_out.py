"""DICOM SEG and SR of a phantom, read back."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from calcscore.dicom_out import read_seg, read_sr_scores, write_seg, write_sr
from calcscore.errors import InputError
from calcscore.io import read_volume, write_dicom_series
from calcscore.labels import Label
from calcscore.phantom import make_scan
from calcscore.scoring import agatston
from calcscore.volume import LabelVolume

pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    volume, labels, _ = make_scan(rng=4, kernel="soft", size="small", cac_category=3)
    folder = write_dicom_series(volume, tmp_path_factory.mktemp("dicom") / "ct", patient_id="P0004")
    return folder, labels


def test_seg_reads_back_to_the_same_label_map(tmp_path, series):
    folder, labels = series
    present = set(np.unique(labels.array)) - {0}
    assert len(present) >= 3  # LAD, LCX, RCA, TAC ... in this phantom
    path = write_seg(labels, folder, tmp_path / "labels.seg.dcm")
    back = read_seg(path, folder)
    np.testing.assert_array_equal(back.array, labels.array)
    assert back.same_geometry(labels)
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(next(folder.iterdir()))
    assert ds.Modality == "SEG" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == "P0004"
    # one segment per label present, numbered 1..n in label order
    names = [Label(v).name for v in sorted(present)]
    assert [s.SegmentLabel for s in ds.SegmentSequence] == names
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == list(range(1, len(names) + 1))
    frames_with = {
        int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for f in ds.PerFrameFunctionalGroupsSequence
    }
    assert frames_with == set(range(1, len(names) + 1))  # empty frames are left out
    # the frames of each segment are the slices that hold its label
    for number, value in enumerate(sorted(present), start=1):
        n_frames = sum(
            int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) == number
            for f in ds.PerFrameFunctionalGroupsSequence
        )
        assert n_frames == int((labels.array == value).any(axis=(1, 2)).sum())


def test_empty_label_map_round_trips(tmp_path, series):
    folder, labels = series
    empty = LabelVolume.like(labels)
    path = write_seg(empty, folder, tmp_path / "empty.dcm", manual=True)
    back = read_seg(path, folder)
    assert not back.array.any() and back.shape == labels.shape
    # nothing present: all six labels are declared, with empty frames
    assert [s.SegmentLabel for s in pydicom.dcmread(path).SegmentSequence] == [
        lab.name for lab in Label if lab
    ]


def test_label_map_on_another_grid_is_refused(tmp_path, series):
    folder, labels = series
    other = LabelVolume(labels.array[:-1], labels.spacing_mm, labels.origin_mm)
    with pytest.raises(InputError, match="do not share a grid"):
        write_seg(other, folder, tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_sr_holds_the_scores_and_references_the_series(tmp_path, series):
    folder, labels = series
    scores = agatston(read_volume(folder), labels, calibration=0.8)
    seg = write_seg(labels, folder, tmp_path / "labels.seg.dcm")
    path = write_sr(scores, folder, tmp_path / "scores.sr.dcm", seg_path=seg, scan_id="P0004_soft")
    back = read_sr_scores(path)
    assert set(back) == {lab.name for lab in Label if lab} | {"CAC"}
    for name, values in back.items():
        assert values["agatston"] == pytest.approx(scores[name].agatston, rel=1e-6, abs=1e-6)
        assert values["volume_mm3"] == pytest.approx(scores[name].volume_mm3, rel=1e-6, abs=1e-6)
        assert values["mass_mg"] == pytest.approx(scores[name].mass_mg, rel=1e-6, abs=1e-6)
    assert back["CAC"]["agatston"] > 0
    ds = pydicom.dcmread(path)
    source = pydicom.dcmread(next(folder.iterdir()))
    assert ds.Modality == "SR" and ds.StudyInstanceUID == source.StudyInstanceUID
    evidence = {
        s.SeriesInstanceUID
        for st in ds.CurrentRequestedProcedureEvidenceSequence
        for s in st.ReferencedSeriesSequence
    }
    seg_ds = pydicom.dcmread(seg)
    assert evidence == {source.SeriesInstanceUID, seg_ds.SeriesInstanceUID}


def test_sr_without_calibration_or_seg(tmp_path, series):
    folder, labels = series
    scores = agatston(read_volume(folder), labels)
    back = read_sr_scores(write_sr(scores, folder, tmp_path / "s.dcm"))
    assert "mass_mg" not in back["LAD"]
    assert back["CAC"]["agatston"] == pytest.approx(scores.cac_agatston, rel=1e-6)


def test_reading_a_non_sr_is_a_clear_error(tmp_path, series):
    folder, _ = series
    with pytest.raises(InputError, match="no calcium score"):
        read_sr_scores(next(folder.iterdir()))


def test_sr_from_a_scores_json_dict(tmp_path, series):
    from calcscore.scoring import score_report

    folder, labels = series
    report = score_report(read_volume(folder), labels, scan="P0004_soft")
    back = read_sr_scores(write_sr(report, folder, tmp_path / "r.dcm"))
    for name, values in report["labels"].items():
        assert back[name]["agatston"] == pytest.approx(values["agatston"], rel=1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="score_report dict"):
        write_sr({"labels": {}}, folder, tmp_path / "bad.dcm")


def test_one_label_seg_and_named_scores_in_the_sr(tmp_path, series):
    """A SEG of one segment (highdicom shares its segment number across frames) is still
    referenced by the SR; named scores (a text, a number) are written and read back; the
    model's name and version replace calcscore's."""
    folder, labels = series
    only_tac = LabelVolume.like(labels, np.where(labels.array == Label.TAC, Label.TAC, 0))
    assert only_tac.array.any()
    model = {"name": "calcscore-test", "version": "abc123"}
    seg = write_seg(only_tac, folder, tmp_path / "tac.dcm", model=model)
    seg_ds = pydicom.dcmread(seg)
    assert [s.SegmentLabel for s in seg_ds.SegmentSequence] == ["TAC"]
    algorithm = seg_ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("calcscore-test", "abc123")
    np.testing.assert_array_equal(read_seg(seg, folder).array, only_tac.array)
    scores = agatston(read_volume(folder), only_tac)
    named = {"Risk category": "II", "CAC-DRS": "A2/N3", "Ordinal score": 5}
    path = write_sr(
        scores, folder, tmp_path / "sr.dcm", seg_path=seg, model=model, named_scores=named
    )
    back = read_sr_scores(path)
    assert {k: back["CAC"][k] for k in named} == {**named, "Ordinal score": 5.0}
    assert "Risk category" not in back["TAC"]
    ds = pydicom.dcmread(path)
    refs = [
        item
        for group in ds.ContentSequence
        if group.ValueType == "CONTAINER"
        for g in getattr(group, "ContentSequence", [])
        for item in getattr(g, "ContentSequence", [])
        if item.ValueType == "IMAGE" and item.ConceptNameCodeSequence[0].CodeValue == "121191"
    ]
    assert len(refs) == 1  # the TAC group references segment 1 of the SEG
    assert int(refs[0].ReferencedSOPSequence[0].ReferencedSegmentNumber) == 1
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99CALCSCORE"
