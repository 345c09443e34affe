"""`calcscore score` on a NIfTI file, a DICOM folder and a manifest, with a small random model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calcscore.batch import resolve_inputs
from calcscore.errors import InputError
from calcscore.io import read_labels, read_volume, write_dicom_series, write_volume
from calcscore.manifest import write_manifest
from calcscore.phantom import make_scan
from calcscore.scoring import score_report

LABEL_KEYS = {"LAD", "LCX", "RCA", "TAC", "AV", "MV", "CAC"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    vol, lab, _ = make_scan(rng=11, size="small")
    nii = write_volume(vol, root / "a.nii.gz")
    dcm = write_dicom_series(vol, root / "b_dicom")
    vol2, _, _ = make_scan(rng=12, size="small", kernel="sharp")
    write_volume(vol2, root / "c.mha")
    manifest = write_manifest(
        pd.DataFrame(
            {"scan_id": ["m1", "m2"], "image": [str(root / "a.nii.gz"), str(root / "c.mha")]}
        ),
        root / "manifest.csv",
    )
    broken = root / "broken.nii.gz"
    broken.write_bytes(nii.read_bytes()[:200])
    return {"nii": nii, "dicom": dcm, "manifest": manifest, "broken": broken}


def _score(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calcscore.cli", "score", *map(str, args)],
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_score_nifti_dicom_and_manifest(tmp_path, model_dir, inputs):
    out = tmp_path / "out"
    r = _score(
        inputs["nii"],
        inputs["dicom"],
        inputs["manifest"],
        "--out",
        out,
        "--model",
        model_dir,
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    summary = pd.read_csv(out / "cohort_summary.csv")
    assert list(summary["scan_id"]) == ["a", "b_dicom", "m1", "m2"]
    assert (summary["status"] == "ok").all()
    for scan_id, image in [("a", inputs["nii"]), ("b_dicom", inputs["dicom"])]:
        labels = read_labels(out / f"{scan_id}_labels.nii.gz")
        volume = read_volume(image)
        assert labels.same_geometry(volume)  # the scan's own grid
        report = json.loads((out / f"{scan_id}_scores.json").read_text())
        assert set(report["labels"]) == LABEL_KEYS and report["risk_category"] in {
            "I",
            "II",
            "III",
            "IV",
        }
        net = report.pop("safety_net")  # what the anatomical safety net did (calcscore.regions)
        assert set(net) >= {"applied"} and (net["applied"] or net["reason"])
        assert report.pop("heart_coverage")["status"] == "covered"  # calcscore.coverage
        assert report.pop("assessable") is True and report.pop("not_assessable_reason") is None
        assert report == json.loads(json.dumps(score_report(volume, labels, scan=scan_id)))
        lesions = pd.read_csv(out / f"{scan_id}_lesions.csv")
        assert "label" in lesions.columns
        assert (out / f"{scan_id}_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same scan as NIfTI and as DICOM gives the same labels
    np.testing.assert_array_equal(
        read_labels(out / "a_labels.nii.gz").labels,
        read_labels(out / "b_dicom_labels.nii.gz").labels,
    )


@pytest.mark.slow
def test_a_failing_scan_is_reported_and_the_rest_go_on(tmp_path, model_dir, inputs):
    out = tmp_path / "out"
    r = _score(
        inputs["broken"],
        inputs["nii"],
        "--out",
        out,
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--no-overlay",
    )
    assert r.returncode == 1
    summary = pd.read_csv(out / "cohort_summary.csv").set_index("scan_id")
    assert (
        summary.loc["broken", "status"] == "failed"
        and "truncated" in summary.loc["broken", "error"]
    )
    assert summary.loc["a", "status"] == "ok" and (out / "a_scores.json").is_file()
    assert "Traceback" not in r.stderr


def _record_options(monkeypatch, attribute: str) -> list:
    """Replace segment by a stub that records ``opts.<attribute>`` and fails the scan."""
    import calcscore.inference
    from calcscore.errors import CalcscoreError

    seen = []

    def fake_segment(volume, model, opts):
        seen.append(getattr(opts, attribute))
        raise CalcscoreError("stopped by the test")

    monkeypatch.setattr(calcscore.inference, "segment", fake_segment)
    return seen


def test_cnn2_threshold_reaches_the_inference(tmp_path, model_dir, inputs, monkeypatch):
    """--cnn2-threshold is handed to segment (what segment does with it: test_calibration.py)."""
    from calcscore.batch import score_cohort
    from calcscore.cli import main

    seen = _record_options(monkeypatch, "cnn2_threshold")
    for threshold in (0.25, None):
        summary = score_cohort(
            [inputs["nii"]],
            tmp_path / "o",
            model_path=model_dir,
            device="cpu",
            progress=False,
            cnn2_threshold=threshold,
        )
        assert summary["error"].iloc[0] == "stopped by the test"
    assert (
        main(
            [
                "score",
                str(inputs["nii"]),
                "--out",
                str(tmp_path / "o2"),
                "--model",
                str(model_dir),
                "--cnn2-threshold",
                "0.7",
            ]
        )
        == 1
    )
    assert seen == [0.25, None, 0.7]
    r = _score(
        inputs["nii"], "--out", tmp_path / "bad", "--model", model_dir, "--cnn2-threshold", "1.5"
    )
    assert (
        r.returncode == 2
        and "not a probability between 0 and 1" in r.stderr
        and "Traceback" not in r.stderr
    )


@pytest.mark.parametrize(
    "flag, option, off, default",
    [
        ("--no-rim-fill", "rim_fill", False, None),
        ("--no-lesion-fill", "lesion_fill", 0.0, None),
        ("--no-artery-vote", "artery_vote", False, True),
    ],
)
def test_a_switch_off_reaches_the_inference(
    tmp_path, model_dir, inputs, monkeypatch, flag, option, off, default
):
    """--no-rim-fill, --no-lesion-fill and --no-artery-vote are handed to segment (what the
    steps do: test_inference.py, test_lesion_fill.py, test_lesions.py); without them the model
    decides (None), or the step runs."""
    from calcscore.cli import main

    seen = _record_options(monkeypatch, option)
    for extra in ([flag], []):
        assert (
            main(
                [
                    "score",
                    str(inputs["nii"]),
                    "--out",
                    str(tmp_path / "o"),
                    "--model",
                    str(model_dir),
                    *extra,
                ]
            )
            == 1
        )
    assert seen == [off, default]


def test_missing_model_is_one_line(tmp_path, inputs):
    r = _score(inputs["nii"], "--out", tmp_path / "o", "--model", tmp_path / "nomodel")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cnn1.pt" in r.stderr


def test_inputs_are_never_overwritten(tmp_path, inputs):
    target = tmp_path / "x_labels.nii.gz"
    target.write_bytes(inputs["nii"].read_bytes())  # an input that looks like an output name
    with pytest.raises(InputError, match="same scan id|overwritten"):
        from calcscore.batch import score_cohort

        score_cohort([target, tmp_path / "x_labels.nii.gz"], tmp_path)


def test_resolve_inputs_rejects_unknown_files(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("x")
    with pytest.raises(InputError, match="not an image file"):
        resolve_inputs([p])


@pytest.mark.slow
def test_torchrun_shares_a_cohort_between_two_processes(tmp_path, model_dir, inputs):
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "out"
    r = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "calcscore.cli",
            "score",
            str(inputs["manifest"]),
            str(inputs["dicom"]),
            "--out",
            str(out),
            "--model",
            str(model_dir),
            "--device",
            "cpu",
            "--no-overlay",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = pd.read_csv(out / "cohort_summary.csv")
    assert list(summary["scan_id"]) == ["m1", "m2", "b_dicom"]  # merged in input order
    assert (summary["status"] == "ok").all()
    assert not list(out.glob("cohort_summary.rank*.csv"))
    # rank 0 took scans 0 and 2, rank 1 scan 1: all three were written
    assert all((out / f"{s}_scores.json").is_file() for s in ["m1", "m2", "b_dicom"])


@pytest.mark.slow
def test_a_contrast_enhanced_scan_is_refused_unless_forced(tmp_path, model_dir):
    from calcscore.phantom import make_scan

    vol, _, info = make_scan(rng=21, size="small")
    # contrast: raise the blood-pool HU of the phantom's heart and aorta region by 250 HU
    blood = (vol.hu > 20) & (vol.hu < 70)
    enhanced = vol.with_array(np.where(blood, vol.hu + 250.0, vol.hu))
    path = write_volume(enhanced, tmp_path / "cta.nii.gz")
    r = _score(
        path, "--out", tmp_path / "o", "--model", model_dir, "--device", "cpu", "--no-overlay"
    )
    summary = pd.read_csv(tmp_path / "o" / "cohort_summary.csv")
    assert r.returncode == 1 and summary.loc[0, "status"] == "failed"
    assert "contrast" in summary.loc[0, "error"]
    r = _score(
        path,
        "--out",
        tmp_path / "f",
        "--model",
        model_dir,
        "--device",
        "cpu",
        "--no-overlay",
        "--force",
    )
    summary = pd.read_csv(tmp_path / "f" / "cohort_summary.csv")
    assert r.returncode == 0 and summary.loc[0, "status"] == "ok"
    assert "contrast" in summary.loc[0, "check_warnings"]


@pytest.mark.slow
def test_no_safety_net_flag_is_recorded_and_keeps_the_networks_labels(tmp_path, model_dir, inputs):
    on, off = tmp_path / "on", tmp_path / "off"
    assert (
        _score(inputs["nii"], "--out", on, "--model", model_dir, "--device", "cpu").returncode == 0
    )
    r = _score(
        inputs["nii"], "--out", off, "--model", model_dir, "--device", "cpu", "--no-safety-net"
    )
    assert r.returncode == 0, r.stderr
    net_off = json.loads((off / "a_scores.json").read_text())["safety_net"]
    assert net_off == {"applied": False, "reason": "switched off"}
    net_on = json.loads((on / "a_scores.json").read_text())["safety_net"]
    removed = sum(net_on.get("removed_voxels", {}).values())
    # what the net removed is exactly the difference between the two label maps
    diff = (
        read_labels(off / "a_labels.nii.gz").labels != read_labels(on / "a_labels.nii.gz").labels
    ).sum()
    assert diff == removed
