"""`calcscore agatston` and `calcscore evaluate` end to end on small files written on the fly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from calcscore.cli import main
from calcscore.io import write_labels, write_volume
from calcscore.labels import Label
from calcscore.manifest import write_manifest
from calcscore.volume import CTMeta, CTVolume, LabelVolume

SPACING = (1.5, 0.5, 0.5)  # pixel 0.25 mm^2, voxel 0.375 mm^3


def scan(*, with_tac: bool = True) -> tuple[CTVolume, LabelVolume]:
    """LAD: slice 1, 12 px at 450 (3 mm^2 x 4 = 12); slice 2, 4 px at 180 (1 mm^2 x 1 = 1).
    TAC: slice 4, 8 px at 210 (2 mm^2 x 2 = 4). lessmann2018 (x 1.5/3): LAD 6.5, TAC 2.0."""
    hu = np.zeros((6, 12, 12), np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    hu[1, 2:5, 2:6] = 450
    hu[2, 2:4, 2:4] = 180
    lab[1:3, 2:5, 2:6] = Label.LAD
    if with_tac:
        hu[4, 8:10, 4:8] = 210
        lab[4, 8:10, 4:8] = Label.TAC
    volume = CTVolume(hu, SPACING, meta=CTMeta(slice_thickness_mm=3.0))
    return volume, LabelVolume.like(volume, lab)


def write_scan(folder, name, volume, labels):
    folder.mkdir(parents=True, exist_ok=True)
    image = write_volume(volume, folder / f"{name}.nii.gz")
    lab = write_labels(labels, folder / f"{name}_labels.nii.gz")
    return image, lab


def test_agatston_json_exact_shape(tmp_path, capsys):
    volume, labels = scan()
    image, lab = write_scan(tmp_path, "s1", volume, labels)
    assert main(["agatston", str(image), str(lab), "--json", "--calibration-factor", "1.0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["scan", "labels", "risk_category"]
    assert out["scan"] == "s1"
    assert list(out["labels"]) == ["LAD", "LCX", "RCA", "TAC", "AV", "MV", "CAC"]
    assert out["labels"]["LAD"]["agatston"] == pytest.approx(6.5)
    assert out["labels"]["LAD"]["volume_mm3"] == pytest.approx(16 * 0.375)
    # mass = 1.0 mg/cm^3/HU x mean 382.5 HU x 6 mm^3 / 1000
    assert out["labels"]["LAD"]["mass_mg"] == pytest.approx(382.5 * 6 / 1000)
    assert out["labels"]["LAD"]["n_lesions"] == 1
    assert out["labels"]["TAC"] == {
        "agatston": pytest.approx(2.0),
        "volume_mm3": pytest.approx(3.0),
        "mass_mg": pytest.approx(210 * 3 / 1000),
        "n_lesions": 1,
    }
    assert out["labels"]["CAC"]["agatston"] == pytest.approx(6.5)
    assert out["risk_category"] == "I"


def test_agatston_convention_and_table(tmp_path, capsys):
    volume, labels = scan()
    image, lab = write_scan(tmp_path, "s1", volume, labels)
    # agatston1990 normalises by the slice thickness (3 mm, kept in the NIfTI sidecar): x 1
    assert main(["agatston", str(image), str(lab), "--json", "--convention", "agatston1990"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["labels"]["LAD"]["agatston"] == pytest.approx(13.0)
    assert out["labels"]["LAD"]["mass_mg"] is None  # no calibration: null
    assert main(["agatston", str(image), str(lab)]) == 0
    text = capsys.readouterr().out
    assert "LAD" in text and "risk category" in text and "6.5" in text


def test_agatston_geometry_mismatch_is_a_user_error(tmp_path, capsys):
    volume, labels = scan()
    image, _ = write_scan(tmp_path, "s1", volume, labels)
    other = write_labels(LabelVolume(labels.array, (3.0, 0.5, 0.5)), tmp_path / "other.nii.gz")
    assert main(["agatston", str(image), str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not share a grid" in err[0]


def _cohort(tmp_path):
    """Two scans; the prediction misses the TAC of s1 and equals the reference on s2."""
    refs, preds = [], []
    for name in ("s1", "s2"):
        volume, labels = scan()
        image, lab = write_scan(tmp_path / "ref", name, volume, labels)
        _, pred_labels = scan(with_tac=name != "s1")
        pred = write_labels(pred_labels, tmp_path / "pred" / f"{name}.nii.gz")
        refs.append(
            {
                "scan_id": name,
                "participant_id": f"p{name}",
                "image": str(image),
                "labels": str(lab),
                "kernel": "soft",
                "scanner": "x",
            }
        )
        preds.append(
            {
                "scan_id": name,
                "participant_id": f"p{name}",
                "image": str(image),
                "labels": str(pred),
                "kernel": "soft",
                "scanner": "x",
            }
        )
    write_manifest(pd.DataFrame(refs), tmp_path / "reference.csv")
    write_manifest(pd.DataFrame(preds), tmp_path / "prediction.csv")
    return tmp_path / "reference.csv", tmp_path / "prediction.csv"


def test_evaluate_manifests(tmp_path, capsys):
    ref, pred = _cohort(tmp_path)
    out = tmp_path / "eval"
    assert main(["evaluate", str(ref), str(pred), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "sensitivity" in printed and "kappa" in printed
    per_scan = pd.read_csv(out / "per_scan.csv")
    assert len(per_scan) == 2 * 7
    tac = per_scan[per_scan["label"] == "TAC"].set_index("scan_id")
    assert tac.loc["s1", "sensitivity"] == 0 and tac.loc["s2", "sensitivity"] == 1
    summary = pd.read_csv(out / "summary.csv", index_col="label")
    assert summary.loc["TAC", "sensitivity_mean"] == pytest.approx(0.5)
    assert summary.loc["CAC", "f1_mean"] == pytest.approx(1.0)
    risk = pd.read_csv(out / "risk_categories.csv")
    assert list(risk["ref_cac_agatston"]) == pytest.approx([6.5, 6.5])
    kappa = json.loads((out / "kappa.json").read_text())
    assert kappa["kappa"] is None and kappa["agreement"] == 1.0 and kappa["n_scans"] == 2
    assert (out / "label_confusion.csv").is_file() and (out / "risk_confusion.csv").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp")]


def test_evaluate_folders_with_images(tmp_path, capsys):
    _cohort(tmp_path)
    ref_dir = tmp_path / "reflabels"
    ref_dir.mkdir()
    for name in ("s1", "s2"):
        (tmp_path / "ref" / f"{name}_labels.nii.gz").rename(ref_dir / f"{name}.nii.gz")
    images = tmp_path / "ref"  # s1.nii.gz, s2.nii.gz (and their JSON sidecars)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                str(ref_dir),
                str(tmp_path / "pred"),
                "--images",
                str(images),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "kappa" in capsys.readouterr().out
    assert len(pd.read_csv(out / "per_scan.csv")) == 14
    # without images: detection metrics only
    out2 = tmp_path / "eval2"
    assert main(["evaluate", str(ref_dir), str(tmp_path / "pred"), "--out", str(out2)]) == 0
    assert "not computed" in capsys.readouterr().out
    assert not (out2 / "kappa.json").exists()


def test_evaluate_missing_prediction_is_a_user_error(tmp_path, capsys):
    ref, _ = _cohort(tmp_path)
    (tmp_path / "pred" / "s2.nii.gz").unlink()
    assert (
        main(["evaluate", str(ref), str(tmp_path / "pred"), "--out", str(tmp_path / "eval")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no prediction for scan(s) s2" in err[0]


def test_evaluate_reads_a_prediction_saved_in_another_layout(tmp_path, capsys):
    """The same predictions, one saved as RAS NIfTI (x and y reversed, as nibabel or 3D Slicer
    may save it): turned onto the reference's grid, the same per-scan figures."""
    from test_orientation import stored_as

    from calcscore.io import read_labels
    from calcscore.orientation import Orientation

    ref, pred = _cohort(tmp_path)
    want_out, got_out = tmp_path / "want", tmp_path / "got"
    assert main(["evaluate", str(ref), str(pred), "--out", str(want_out)]) == 0
    ras = Orientation((0, 1, 2), (False, True, True))
    path = tmp_path / "pred" / "s2.nii.gz"
    lab = read_labels(path)
    grid = stored_as(CTVolume(lab.labels.astype(np.float32), lab.spacing_mm, lab.origin_mm), ras)
    write_labels(LabelVolume.like(grid, grid.hu.astype(np.uint8)), path)
    assert not read_labels(path).same_geometry(lab)
    assert main(["evaluate", str(ref), str(pred), "--out", str(got_out)]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(
        pd.read_csv(got_out / "per_scan.csv"), pd.read_csv(want_out / "per_scan.csv")
    )
