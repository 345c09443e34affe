"""scripts/evaluate_comparison_cohorts.py: the figures it writes, checked by hand on crafted maps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calcscore.labels import Label
from calcscore.metrics import ScanCase
from calcscore.volume import LabelVolume

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from evaluate_comparison_cohorts import COHORTS, figures  # noqa: E402

SPACING = (1.0, 0.5, 0.5)  # voxel 0.25 mm^3


def test_figures_pool_voxels_over_scans():
    ref = np.zeros((3, 10, 20), np.uint8)
    ref[1, 8, 10:14] = Label.TAC  # 4 voxels
    ref[1, 1, 1:3] = Label.RCA  # 2 voxels
    pred = np.zeros_like(ref)
    pred[1, 8, 10:12] = Label.TAC  # 2 found, 2 missed
    pred[0, 0, 0] = Label.TAC  # 1 false
    pred[1, 1, 1:3] = Label.RCA
    a = ScanCase("a", LabelVolume(ref, SPACING), LabelVolume(pred, SPACING))
    b = ScanCase("b", LabelVolume(ref, SPACING), LabelVolume(ref, SPACING))  # perfect
    m = figures([a, b])
    assert m["n_scans"] == 2 and "kappa" not in m  # no images, no Agatston scores
    # pooled over both scans: TAC TP 6, FN 2, FP 1 voxels; FP volume 0.25 mm^3 over 2 scans
    assert m["TAC"]["sensitivity_pooled"] == pytest.approx(6 / 8)
    assert m["TAC"]["f1_pooled"] == pytest.approx(2 * 6 / (2 * 6 + 2 + 1))
    assert m["TAC"]["fp_volume_mm3_mean"] == pytest.approx(0.25 / 2)
    assert m["CAC"]["f1_pooled"] == pytest.approx(1.0)
    assert m["AV"]["sensitivity_pooled"] is None  # no reference: undefined, written as null


def test_cohorts_are_held_out_of_the_shipped_model():
    """None of the comparison participants is in the training (P0000-P0119) or test set (P0120-P0129)."""
    for _, ids, _ in COHORTS.values():
        assert min(ids) >= 130


def test_unknown_cohort_is_refused(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "evaluate_comparison_cohorts.py"),
            str(ROOT / "calcscore" / "models" / "default"),
            str(tmp_path / "x.json"),
            "heart,lungs",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 2
        and "unknown cohorts ['lungs']" in run.stderr
        and "Traceback" not in run.stderr
    )
    assert not (tmp_path / "x.json").exists()
