"""The README's main command, `calcscore demo`, with the model shipped in the package."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from calcscore.inference import DEFAULT_MODEL_DIR, Model
from calcscore.io import read_labels, read_volume


def test_the_shipped_model_is_in_the_package_and_says_what_it_learned_from():
    model = Model.load()
    assert model.cnn2 is not None
    assert "synthetic phantoms only" in model.info["trained_on"]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "synthetic phantoms only" in card
    # the card's numbers are the measured ones in model.json
    soft_f1 = model.info["test_metrics"]["soft"]["CAC"]["f1_pooled"]
    assert f"{soft_f1:.2f}" in card


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
    assert "synthetic phantoms only" in r.stdout
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
    assert pd.read_csv(out / "cohort_summary.csv")["status"].tolist() == ["ok"]
