"""The README's main command, `calcscore demo`, with the model shipped in the package."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from calcscore.inference import DEFAULT_MODEL_DIR, Model
from calcscore.io import read_labels, read_volume
from calcscore.volume import LabelVolume


def test_the_shipped_model_is_in_the_package_and_says_what_it_learned_from():
    model = Model.load()
    assert model.cnn2 is not None
    # it says plainly what it learned from: phantoms, and no real scan with calcium annotations
    assert model.info["trained_on"].startswith("synthetic phantoms")
    assert "without calcium annotations" in model.info["trained_on"]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "no real scan with calcium annotations was used" in card
    # the card's numbers are the measured ones in model.json
    soft_f1 = model.info["test_metrics"]["soft"]["CAC"]["f1_pooled"]
    assert f"{soft_f1:.2f}" in card
    # and the card is the one the build's code writes from model.json, not edited by hand
    from calcscore.pipeline.card import card as make_card

    info = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert card == make_card(info)


@pytest.mark.slow
def test_demo_scores_a_phantom_beside_its_ground_truth(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "calcscore.cli",
            "demo",
            "--out",
            str(out),
            "--size",
            "small",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "truth_agatston" in r.stdout and "calcscore_agatston" in r.stdout
    assert "risk category: truth" in r.stdout and "CAC-DRS: truth" in r.stdout
    assert "learned from synthetic phantoms" in r.stdout
    scan = "phantom007_soft"
    for suffix in (
        "_labels.nii.gz",
        "_scores.json",
        "_lesions.csv",
        "_overlay.png",
        "_report.html",
        ".nii.gz",
        "_truth.nii.gz",
    ):
        assert (out / f"{scan}{suffix}").is_file(), suffix
    report = json.loads((out / f"{scan}_scores.json").read_text())
    assert report["scan"] == scan and report["risk_category"] in {"I", "II", "III", "IV"}
    assert "applied" in report["safety_net"]  # as calcscore score writes it
    assert read_labels(out / f"{scan}_labels.nii.gz").same_geometry(
        read_volume(out / f"{scan}.nii.gz")
    )
    row = pd.read_csv(out / "cohort_summary.csv").iloc[0]
    assert row["status"] == "ok" and row["heart_coverage"] == "covered" and row["assessable"]
    assert report["heart_coverage"]["status"] == "covered" and report["assessable"] is True
    assert "checks: " in r.stdout and "(heart covered)" in r.stdout


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_demo_runs_the_checks_of_score_on_its_phantom(tmp_path, monkeypatch, model_dir):
    """A phantom the checks would flag (here its upper half: the heart cut at the bottom) is
    scored as `score --force` scores it: not assessable, with the reason in the printout, the
    scores, the summary row and the report page, never a risk category."""
    import calcscore.phantom as phantom
    from calcscore.demo import run_demo

    make = phantom.make_scan

    def upper_half(**kw):
        vol, truth, info = make(**kw)
        z = vol.shape[0] // 2
        upper = vol.with_array(vol.hu[z:])
        return upper, LabelVolume.like(upper, truth.labels[z:]), info

    monkeypatch.setattr(phantom, "make_scan", upper_half)
    text = run_demo(out_dir=tmp_path, seed=3, size="small", model_path=model_dir, device="cpu")
    assert "heart partly covered" in text and "cut at the bottom" in text
    report = json.loads((tmp_path / "phantom003_soft_scores.json").read_text())
    assert report["assessable"] is False and report["risk_category"] == "not assessable"
    assert "cut at the bottom" in report["not_assessable_reason"]
    row = pd.read_csv(tmp_path / "cohort_summary.csv").iloc[0]
    assert row["heart_coverage"] == "partly covered" and not row["assessable"]
    assert "not assessable" in (tmp_path / "phantom003_soft_report.html").read_text()
