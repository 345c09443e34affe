"""Detection agreement on crafted masks, worked out by hand, including the undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from calcscore.labels import Label
from calcscore.metrics import (
    ScanCase,
    detection_agreement,
    evaluate,
    label_confusion,
    mean_with_ci,
    summarise,
)
from calcscore.volume import CTVolume, GeometryMismatchError, LabelVolume

SPACING = (1.0, 0.5, 0.5)  # voxel 0.25 mm^3


def crafted_pair() -> tuple[LabelVolume, LabelVolume]:
    """Reference: LAD R1 row 1 cols 1-8 (8 voxels), LAD R2 row 5 cols 1-2 (2), TAC row 8 cols 10-13 (4).
    Prediction: LAD row 1 cols 1-4, LCX row 1 cols 5-6 (reference LAD), LAD row 3 cols 15-17 (false),
    MV (2, 9, 19) (false); R1 cols 7-8, R2 and the TAC are missed.
    """
    ref = np.zeros((3, 10, 20), np.uint8)
    ref[1, 1, 1:9] = Label.LAD
    ref[1, 5, 1:3] = Label.LAD
    ref[1, 8, 10:14] = Label.TAC
    pred = np.zeros_like(ref)
    pred[1, 1, 1:5] = Label.LAD
    pred[1, 1, 5:7] = Label.LCX
    pred[1, 3, 15:18] = Label.LAD
    pred[2, 9, 19] = Label.MV
    return LabelVolume(ref, SPACING), LabelVolume(pred, SPACING)


def _row(df, label):
    return df.set_index("label").loc[label]


def test_voxel_metrics_by_hand():
    ref, pred = crafted_pair()
    df = detection_agreement(ref, pred)
    assert list(df["label"]) == ["LAD", "LCX", "RCA", "TAC", "AV", "MV", "CAC"]
    lad = _row(df, "LAD")  # TP 4, FN 6, FP 3 voxels
    assert (lad["tp_volume_mm3"], lad["fn_volume_mm3"], lad["fp_volume_mm3"]) == (1.0, 1.5, 0.75)
    assert (lad["ref_volume_mm3"], lad["pred_volume_mm3"]) == (2.5, 1.75)
    assert lad["sensitivity"] == pytest.approx(0.4)
    assert lad["precision"] == pytest.approx(4 / 7)
    assert lad["f1"] == pytest.approx(8 / 17)
    cac = _row(df, "CAC")  # the LAD voxels called LCX are CAC true positives: TP 6, FN 4, FP 3
    assert (cac["tp_volume_mm3"], cac["fn_volume_mm3"], cac["fp_volume_mm3"]) == (1.5, 1.0, 0.75)
    assert cac["sensitivity"] == pytest.approx(0.6)
    assert cac["f1"] == pytest.approx(12 / 19)


def test_undefined_metrics_are_nan():
    ref, pred = crafted_pair()
    df = detection_agreement(ref, pred)
    lcx = _row(df, "LCX")  # no reference, 2 predicted voxels
    assert math.isnan(lcx["sensitivity"]) and lcx["f1"] == 0 and lcx["precision"] == 0
    assert lcx["fp_volume_mm3"] == 0.5
    rca = _row(df, "RCA")  # nothing in either map
    assert math.isnan(rca["sensitivity"]) and math.isnan(rca["f1"]) and math.isnan(rca["precision"])
    assert rca["fp_volume_mm3"] == 0
    tac = _row(df, "TAC")  # reference only
    assert tac["sensitivity"] == 0 and tac["f1"] == 0 and math.isnan(tac["precision"])
    mv = _row(df, "MV")  # prediction only
    assert math.isnan(mv["sensitivity"]) and mv["f1"] == 0 and mv["fp_volume_mm3"] == 0.25


def test_empty_maps_give_nan_everywhere():
    empty = LabelVolume(np.zeros((2, 3, 4), np.uint8), SPACING)
    df = detection_agreement(empty, empty)
    assert df[["sensitivity", "precision", "f1"]].isna().all().all()
    assert (
        (
            df[["tp_volume_mm3", "fp_volume_mm3", "fn_volume_mm3", "ref_lesions", "pred_lesions"]]
            == 0
        )
        .all()
        .all()
    )


def test_lesion_counts_six_connected():
    ref, pred = crafted_pair()
    df = detection_agreement(ref, pred)
    lad = _row(df, "LAD")
    assert (
        lad["ref_lesions"],
        lad["pred_lesions"],
        lad["tp_lesions"],
        lad["fn_lesions"],
        lad["fp_lesions"],
    ) == (2, 2, 1, 1, 1)
    cac = _row(df, "CAC")
    assert (
        cac["ref_lesions"],
        cac["pred_lesions"],
        cac["tp_lesions"],
        cac["fn_lesions"],
        cac["fp_lesions"],
    ) == (2, 2, 1, 1, 1)
    assert (
        _row(df, "LCX")["fp_lesions"],
        _row(df, "TAC")["fn_lesions"],
        _row(df, "MV")["fp_lesions"],
    ) == (1, 1, 1)
    # two voxels touching at a corner are one 26-connected lesion but two 6-connected ones
    diag = np.zeros((3, 4, 4), np.uint8)
    diag[1, 1, 1] = diag[1, 2, 2] = Label.RCA
    lv = LabelVolume(diag, SPACING)
    assert _row(detection_agreement(lv, lv), "RCA")["ref_lesions"] == 2
    assert _row(detection_agreement(lv, lv, lesion_connectivity=26), "RCA")["ref_lesions"] == 1


def test_label_confusion_in_mm3():
    ref, pred = crafted_pair()
    cm = label_confusion(ref, pred)
    assert list(cm.index) == ["BACKGROUND", "LAD", "LCX", "RCA", "TAC", "AV", "MV"]
    assert (
        cm.loc["LAD", "LAD"] == 1.0
        and cm.loc["LAD", "LCX"] == 0.5
        and cm.loc["LAD", "BACKGROUND"] == 1.0
    )
    assert cm.loc["TAC", "BACKGROUND"] == 1.0
    assert cm.loc["BACKGROUND", "LAD"] == 0.75 and cm.loc["BACKGROUND", "MV"] == 0.25
    assert cm.loc["BACKGROUND", "BACKGROUND"] == 0
    assert cm.to_numpy().sum() == pytest.approx(4.5)  # 18 voxels labelled in either map


def test_summary_mean_over_scans_and_pooled():
    ref, pred = crafted_pair()
    per_scan = [
        detection_agreement(ref, pred),
        detection_agreement(ref, ref),
    ]  # second scan perfect
    for i, df in enumerate(per_scan):
        df.insert(0, "scan_id", f"s{i}")
    s = summarise(pd.concat(per_scan, ignore_index=True))
    lad = s.loc["LAD"]
    assert lad["n_scans"] == 2 and lad["n_scans_with_reference"] == 2
    assert lad["sensitivity_mean"] == pytest.approx((0.4 + 1.0) / 2)
    assert lad["f1_mean"] == pytest.approx((8 / 17 + 1.0) / 2)
    assert lad["ref_volume_mm3_mean"] == 2.5 and lad["fp_volume_mm3_mean"] == pytest.approx(0.375)
    # pooled: TP 1.0 + 2.5, FN 1.5, FP 0.75
    assert lad["sensitivity_pooled"] == pytest.approx(3.5 / 5.0)
    assert lad["f1_pooled"] == pytest.approx(7.0 / (7.0 + 0.75 + 1.5))
    assert lad["lesion_sensitivity"] == pytest.approx(3 / 4)  # 1 of 2, then 2 of 2
    lcx = s.loc["LCX"]  # F1 0 then nan: the mean leaves the nan out; sensitivity undefined in both
    assert (
        lcx["f1_mean"] == 0
        and math.isnan(lcx["sensitivity_mean"])
        and lcx["n_scans_with_reference"] == 0
    )
    assert math.isnan(s.loc["RCA"]["f1_mean"]) and math.isnan(s.loc["RCA"]["sensitivity_pooled"])


def test_evaluate_with_images_scores_risk_categories():
    ref, pred = crafted_pair()
    hu = np.where((ref.array > 0) | (pred.array > 0), 300.0, 0.0)
    image = CTVolume(hu, SPACING)
    ev = evaluate([ScanCase("s0", ref, pred, image), ScanCase("s1", ref, ref, None)])
    assert list(ev.per_scan["scan_id"].unique()) == ["s0", "s1"]
    # Reference CAC (lessmann2018): R1 is 2 mm^3 (kept), 2 mm^2 x factor 3 x 1/3 = 2.0; R2 (0.5 mm^3)
    # and every predicted CAC lesion (<= 1 mm^3) are under 1.5 mm^3.
    assert ev.risk.to_dict("records") == [
        {
            "scan_id": "s0",
            "ref_cac_agatston": pytest.approx(2.0),
            "pred_cac_agatston": 0.0,
            "ref_category": "I",
            "pred_category": "I",
        }
    ]
    assert _row(ev.per_scan[ev.per_scan["scan_id"] == "s0"], "CAC")[
        "ref_agatston"
    ] == pytest.approx(2.0)
    assert math.isnan(_row(ev.per_scan[ev.per_scan["scan_id"] == "s1"], "CAC")["ref_agatston"])
    table, kappa = ev.risk_agreement()
    assert table.loc["I", "I"] == 1 and table.to_numpy().sum() == 1
    assert math.isnan(kappa.kappa)  # one scan in one category: kappa undefined
    assert ev.label_confusion.loc["LAD", "LAD"] == pytest.approx(1.0 + 2.5)
    report = ev.report()
    assert "sensitivity" in report and "kappa" in report


def test_geometry_and_label_values_are_checked():
    ref, pred = crafted_pair()
    with pytest.raises(GeometryMismatchError):
        detection_agreement(ref, LabelVolume(pred.array, (2.0, 0.5, 0.5)))
    bad = pred.array.copy()
    bad[0, 0, 0] = 9
    with pytest.raises(ValueError, match="calcium labels are 0-6"):
        detection_agreement(ref, LabelVolume(bad, SPACING))


def test_mean_with_ci_over_scans():
    per_scan = pd.DataFrame(
        {
            "scan_id": [f"s{i}" for i in range(6)],
            "label": "CAC",
            "f1": [0.8, 0.9, 1.0, math.nan, 0.7, 0.6],
        }
    )
    r = mean_with_ci(per_scan, metric="f1", n_resamples=500, rng=0)
    assert r.estimate == pytest.approx(0.8)  # the nan scan is left out
    assert 0.6 <= r.ci_low < 0.8 < r.ci_high <= 1.0
    assert math.isnan(mean_with_ci(per_scan, label="TAC").estimate)
