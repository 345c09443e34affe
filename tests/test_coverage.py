"""Heart coverage (calcscore.coverage) on real scans, crops of them and phantoms of every size and
field of view; and what ``calcscore score`` makes of a scan that cannot be scored (issue 29)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calcscore.assessment import CATEGORY_KEYS, NOT_ASSESSABLE, mark_not_assessable
from calcscore.checks import check_scan
from calcscore.cli import main
from calcscore.coverage import COVERED, NOT_COVERED, PARTLY_COVERED, heart_coverage
from calcscore.io import read_volume, write_volume
from calcscore.phantom import make_scan

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHEST = SHARED / "open-chest-ct"
REAL = sorted(CHEST.glob("*.nii.gz")) + [SHARED / "qrm-canon-large-rep1" / "dicom"]
LUNGDX = CHEST / "lungdx-a0001-b.nii.gz"


@pytest.fixture(scope="module")
def lungdx():
    if not LUNGDX.is_file():
        pytest.skip(f"real scan not found at {LUNGDX}")
    return read_volume(LUNGDX)


@pytest.fixture(scope="module")
def small():
    return make_scan(rng=3, size="small")[0]


# ---------------------------------------------------------------------------- real scans
@pytest.mark.slow
@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name if p.suffix else "qrm-dicom")
def test_every_real_scan_covers_the_heart(path):
    """The seven open chest CTs (two non-contrast, five contrast-enhanced: the enhanced heart
    counts) and the QRM thorax phantom, whose cardiac insert lies between its lung inserts and
    ends inside the scan: all covered."""
    if not path.exists():
        pytest.skip(f"real scan not found at {path}")
    c = heart_coverage(read_volume(path))
    assert c.status == COVERED, c.reason
    assert c.heart_mm >= 50 and c.cut == ()


def test_crops_without_the_heart_are_not_covered(lungdx):
    """lungdx-a0001-b (5 mm slices): its 12 lowest slices hold the liver's dome between the lung
    bases, as wide as a heart, where lung fills at most 36 % of the lungs' outline; its 12
    highest the neck and shoulders."""
    bottom = heart_coverage(lungdx.with_array(lungdx.hu[:12]))
    assert bottom.status == NOT_COVERED and "liver" in bottom.reason and "36 %" in bottom.reason
    top = heart_coverage(lungdx.with_array(lungdx.hu[-12:]))
    assert top.status == NOT_COVERED and "no heart" in top.reason


@pytest.mark.parametrize(
    "crop, cut",
    [
        ((slice(0, 20), slice(None)), ("top",)),  # up to mid-heart
        ((slice(18, None), slice(None)), ("bottom",)),  # from mid-heart up
        ((slice(None), slice(236, None)), ("field of view",)),  # the patient's right side off
    ],
    ids=["top", "bottom", "field-of-view"],
)
def test_crops_cutting_the_heart_are_partly_covered(lungdx, crop, cut):
    z, x = crop
    c = heart_coverage(lungdx.with_array(lungdx.hu[z, :, x]))
    assert c.status == PARTLY_COVERED and c.cut == cut, c.reason
    assert " ".join(cut) in c.reason


# Heart centres (slice, y, x) of three real chest CTs, checked by eye: the centre of the largest
# soft-tissue blob (-60..700 HU, opened by 12 mm) in the middle heart slice; and the heart slices
# that heart_coverage finds on the whole scan.
HEART_CENTRES = {
    "lungdx-a0001-b": ((7, 31), (115, 294)),
    "lidc-idri-0001": ((44, 78), (169, 298)),
    "qin-lung-01-0007": ((28, 75), (150, 268)),
}


@pytest.mark.parametrize(
    "name,fov_mm",
    [
        ("lungdx-a0001-b", 160),
        pytest.param("lungdx-a0001-b", 140, marks=pytest.mark.slow),
        pytest.param("lidc-idri-0001", 140, marks=pytest.mark.slow),
        pytest.param("qin-lung-01-0007", 140, marks=pytest.mark.slow),
    ],
)
def test_heart_only_field_of_view_is_covered(name, fov_mm):
    """A gated calcium-scoring CT holds the heart in a field of view that cuts the lungs beside
    it. Square crops centred on the heart, the heart slices and 10 mm above and below: covered.
    At 140 mm lung fills only 35-37 % of the lungs' outline in the heart slices of the two
    contrast-enhanced scans (the liver's dome: up to 36 %); it widens in the slices just above."""
    path = CHEST / f"{name}.nii.gz"
    if not path.is_file():
        pytest.skip(f"real scan not found at {path}")
    vol = read_volume(path)
    (z0, z1), (cy, cx) = HEART_CENTRES[name]
    m = int(round(10 / vol.spacing_mm[0]))
    h = int(round(fov_mm / 2 / vol.spacing_mm[1]))
    crop = vol.hu[z0 - m : z1 + m + 1, max(0, cy - h) : cy + h, max(0, cx - h) : cx + h]
    c = heart_coverage(vol.with_array(crop))
    assert c.status == COVERED, c.reason


def test_whole_scan_is_covered_with_the_heart_between_the_crops(lungdx):
    c = heart_coverage(lungdx)
    assert c.status == COVERED
    assert c.first_slice > 0 and c.last_slice < lungdx.shape[0] - 1


# ------------------------------------------------------------------------------ phantoms
@pytest.mark.parametrize(
    "size, seed",
    [("small", 0), ("small", 3), ("small", 9), ("medium", 1)],
)
def test_heart_region_phantoms_are_covered(size, seed):
    """Gated heart-only fields of view (166 mm small, 205 mm medium): the whole heart is inside,
    so covered, though the field of view cuts the chest wall and the lungs."""
    vol = make_scan(rng=seed, size=size)[0]
    c = heart_coverage(vol)
    assert c.status == COVERED, c.reason
    assert 0 < c.first_slice and c.last_slice < vol.shape[0] - 1


@pytest.mark.slow
def test_whole_chest_phantom_is_covered():
    vol = make_scan(rng=3, size="full")[0]
    c = heart_coverage(vol)
    assert c.status == COVERED, c.reason


def test_phantom_crops(small):
    c = heart_coverage(small)
    mid = (c.first_slice + c.last_slice) // 2
    lower = heart_coverage(small.with_array(small.hu[:mid]))
    upper = heart_coverage(small.with_array(small.hu[mid:]))
    # The lower half is cut at the top. In this heart-only field of view the lungs beside the
    # lower heart are cut (lung fills at most 37 % of their outline there, as over the liver's
    # dome, and no slice above is kept), so it may come out not covered rather than partly
    # covered: either way it is never covered and gets no category (see calcscore.coverage).
    assert lower.status in (PARTLY_COVERED, NOT_COVERED), lower.reason
    assert upper.status == PARTLY_COVERED and upper.cut == ("bottom",)
    above = heart_coverage(small.with_array(small.hu[c.last_slice + 8 :]))
    assert above.status == NOT_COVERED


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("side", ["right", "left"])  # the patient's side kept
@pytest.mark.parametrize("keep_mm", [83, 100])
def test_phantom_cut_from_the_side_is_partly_covered(seed, side, keep_mm):
    """A field of view that keeps only one side of a 166 mm heart-only phantom (83 mm: half of
    it, or 100 mm) cuts the heart: partly covered, cut at the field of view, never covered and
    never "no heart"."""
    vol = make_scan(rng=seed, size="small")[0]
    n = int(round(keep_mm / vol.spacing_mm[2]))
    x = slice(vol.shape[2] - n, None) if side == "left" else slice(0, n)
    c = heart_coverage(vol.with_array(vol.hu[:, :, x]))
    assert c.status == PARTLY_COVERED and "field of view" in c.cut, c.reason


# ------------------------------------------------------------------- the checks and scoring
def test_checks_turn_coverage_into_refusal_or_not_assessable(small):
    covered = check_scan(small)
    assert covered.assessable and covered.not_assessable_reason is None
    assert covered.to_dict()["heart_coverage"]["status"] == COVERED
    c = heart_coverage(small)
    cut = check_scan(small.with_array(small.hu[(c.first_slice + c.last_slice) // 2 :]))
    assert not cut.refused and not cut.assessable and "heart_cut" in cut.codes()
    assert "cut at the bottom" in cut.not_assessable_reason
    gone = check_scan(small.with_array(small.hu[c.last_slice + 8 :]), force=True)
    assert not gone.refused and not gone.assessable
    assert [f.severity for f in gone.findings if f.code == "no_heart"] == ["refusal"]


def test_not_assessable_replaces_every_category():
    report = {"risk_category": "I", "cac_drs": "CAC-DRS 0", "labels": {}}
    mark_not_assessable(report, "the scan does not cover the heart")
    assert report["risk_category"] == report["cac_drs"] == NOT_ASSESSABLE
    assert report["assessable"] is False and "heart" in report["not_assessable_reason"]
    assert "risk_category" in CATEGORY_KEYS and "cac_drs" in CATEGORY_KEYS
    with pytest.raises(ValueError):
        mark_not_assessable({"risk_category": "I"}, "")


def _crops(tmp_path: Path, lungdx) -> dict[str, Path]:
    return {
        "abdomen": write_volume(lungdx.with_array(lungdx.hu[:12]), tmp_path / "abdomen.nii.gz"),
        "neck": write_volume(lungdx.with_array(lungdx.hu[-12:]), tmp_path / "neck.nii.gz"),
        "nanvol": write_volume(
            lungdx.with_array(np.full((12, 40, 40), np.nan, np.float32)), tmp_path / "nanvol.nii.gz"
        ),
    }


def test_the_issue_crops_and_nan_volume_are_refused_naming_the_reason(
    tmp_path, lungdx, model_dir, capsys
):
    crops = _crops(tmp_path, lungdx)
    out = tmp_path / "out"
    code = main(["score", *map(str, crops.values()), "--out", str(out), "--model", str(model_dir)])
    assert code == 1
    summary = pd.read_csv(out / "cohort_summary.csv").set_index("scan_id")
    assert (summary["status"] == "failed").all() and summary["risk_category"].isna().all()
    assert "does not cover the heart" in summary.loc["abdomen", "error"]
    assert "liver" in summary.loc["abdomen", "error"]
    assert "does not cover the heart" in summary.loc["neck", "error"]
    assert "NaN" in summary.loc["nanvol", "error"] and "--force" in summary.loc["nanvol", "error"]
    assert not list(out.glob("*_scores.json"))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:slice thickness")  # lungdx-a0001-b: 5 mm slices, a warning
def test_forced_issue_crops_are_not_assessable_never_category_i(
    tmp_path, lungdx, model_dir, capsys
):
    crops = _crops(tmp_path, lungdx)
    out = tmp_path / "out"
    argv = ["score", *map(str, crops.values()), "--out", str(out), "--model", str(model_dir)]
    assert main([*argv, "--force", "--no-overlay"]) == 0
    stdout = capsys.readouterr().out
    summary = pd.read_csv(out / "cohort_summary.csv").set_index("scan_id")
    for scan_id in crops:
        assert summary.loc[scan_id, "risk_category"] == NOT_ASSESSABLE
        assert str(summary.loc[scan_id, "assessable"]) == "False"
        report = json.loads((out / f"{scan_id}_scores.json").read_text())
        assert report["risk_category"] == NOT_ASSESSABLE and report["assessable"] is False
        assert f"{scan_id}: not assessable: " in stdout
    assert "liver" in summary.loc["abdomen", "not_assessable_reason"]
    assert "-1024 HU" in summary.loc["nanvol", "not_assessable_reason"]
