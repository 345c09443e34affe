"""COCA importer on OsiriX plists and DICOM series that the tests write themselves."""

from __future__ import annotations

import logging
import plistlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calcscore.cli import main
from calcscore.datasets.coca import (
    REFERENCE_SCORES_FILE,
    import_coca,
    load_gated_patient,
    read_calcium_xml,
    read_nongated_scores,
)
from calcscore.errors import InputError
from calcscore.io import read_labels, read_volume, write_dicom_series
from calcscore.labels import Label
from calcscore.manifest import read_manifest
from calcscore.scoring import agatston
from calcscore.volume import CTMeta, CTVolume

SHAPE = (8, 32, 32)
SPACING = (3.0, 0.7, 0.7)  # 3 mm slices at 3 mm spacing: Agatston's normalisation factor is 1
ORIGIN = (-100.0, -20.0, -30.0)  # (z, y, x) mm
PIXEL_MM2 = SPACING[1] * SPACING[2]


def _density_weight(max_hu: float) -> int:
    return 1 if max_hu < 200 else 2 if max_hu < 300 else 3 if max_hu < 400 else 4


def _square(c0, r0, c1, r1):
    """A polygon around the pixels c0..c1, r0..r1 (vertices between pixel centres)."""
    return [(c0 - 0.5, r0 - 0.5), (c1 + 0.5, r0 - 0.5), (c1 + 0.5, r1 + 0.5), (c0 - 0.5, r1 + 0.5)]


# (name, slice k, polygon (column, row), pixels (rows, columns) it covers)
L_SHAPE = [(14.5, 4.5), (20.5, 4.5), (20.5, 6.5), (16.5, 6.5), (16.5, 10.5), (14.5, 10.5)]
L_PIXELS = [(r, c) for r in (5, 6) for c in range(15, 21)] + [
    (r, c) for r in range(7, 11) for c in (15, 16)
]
ROIS = [
    (
        "Left Anterior Descending Artery",
        2,
        _square(5, 5, 9, 9),
        [(r, c) for r in range(5, 10) for c in range(5, 10)],
    ),
    ("Left Coronary Artery", 5, L_SHAPE, L_PIXELS),  # the left main: LAD
    (
        "Left Circumflex Artery",
        5,
        _square(24, 20, 27, 23),
        [(r, c) for r in range(20, 24) for c in range(24, 28)],
    ),
    (
        "Right Coronary Artery",
        6,
        _square(3, 24, 6, 26),
        [(r, c) for r in range(24, 27) for c in range(3, 7)],
    ),
]
ROI_HU = {
    "Left Anterior Descending Artery": 250.0,
    "Left Coronary Artery": 180.0,
    "Left Circumflex Artery": 350.0,
    "Right Coronary Artery": 500.0,
}


def make_case(max_bump: float = 170.0) -> tuple[CTVolume, list[dict]]:
    """A small CT with one dense calcification per ROI; the ROI dicts as OsiriX writes them."""
    hu = np.full(SHAPE, 40.0, np.float32)
    hu[:, 28:, :] = -850.0  # some lung
    hu[5, 8, 18] = 300.0  # dense, inside the L's bounding box but outside the L: not labelled
    rois = []
    for name, k, polygon, pixels in ROIS:
        rr, cc = zip(*pixels)
        hu[k, list(rr), list(cc)] = ROI_HU[name]
        hu[k, rr[0], cc[0]] = ROI_HU[name] + max_bump  # the maximum sits in one pixel
        values = hu[k, list(rr), list(cc)]
        rois.append(
            {
                "Name": name,
                "Point_px": [f"({x:.6f}, {y:.6f})" for x, y in polygon],
                "Point_mm": [
                    f"({ORIGIN[2] + x * SPACING[2]:.6f}, {ORIGIN[1] + y * SPACING[1]:.6f}, "
                    f"{ORIGIN[0] + k * SPACING[0]:.6f})"
                    for x, y in polygon
                ],
                "Area": len(pixels) * PIXEL_MM2 / 100.0,  # cm^2
                "Max": float(values.max()),
                "Mean": float(values.mean()),
                "Min": float(values.min()),
                "NumberOfPoints": len(polygon),
                "Type": 11,
                "_slice": k,
            }
        )
    meta = CTMeta(
        slice_thickness_mm=3.0,
        kernel="B35f",
        manufacturer="SIEMENS",
        model="Sensation 64",
        kvp=120.0,
    )
    return CTVolume(hu, SPACING, ORIGIN, np.eye(3), meta=meta), rois


def write_plist(path: Path, rois: list[dict], *, n_slices: int = SHAPE[0], extra_rois=()) -> Path:
    """An OsiriX export: one entry per image, ImageIndex counted from the last image."""
    by_slice: dict[int, list[dict]] = {}
    for roi in rois:
        clean = {k: v for k, v in roi.items() if not k.startswith("_")}
        by_slice.setdefault(roi["_slice"], []).append(clean)
    for k, roi in extra_rois:
        by_slice.setdefault(k, []).append(roi)
    images = [
        {
            "ImageIndex": n_slices - 1 - k,
            "ImageHeight": SHAPE[1],
            "ImageWidth": SHAPE[2],
            "NumberOfROIs": len(r),
            "ROIs": r,
        }
        for k, r in sorted(by_slice.items())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        plistlib.dump({"Images": images}, fh, fmt=plistlib.FMT_XML)
    return path


def write_patient(
    root: Path, patient_id: str, volume: CTVolume, rois: list[dict] | None, **kw
) -> None:
    gated = root / "Gated_release_final"
    write_dicom_series(
        volume,
        gated / "patient" / patient_id / "Pro_Gated_CS_3.0_I30f_3_70%",
        patient_id=patient_id,
    )
    if rois is not None:
        write_plist(gated / "calcium_xml" / f"{patient_id}.xml", rois, **kw)


@pytest.fixture(scope="module")
def case():
    return make_case()


@pytest.fixture
def coca_root(tmp_path, case):
    volume, rois = case
    root = tmp_path / "coca"
    write_patient(root, "101", volume, rois)
    return root


def test_plist_is_read(tmp_path, case):
    _, rois = case
    path = write_plist(tmp_path / "a.xml", rois)
    read = read_calcium_xml(path)
    assert [r.name for r in read] == [r[0] for r in sorted(ROIS, key=lambda r: r[1])]
    lm = next(r for r in read if r.name == "Left Coronary Artery")
    assert lm.label == Label.LAD  # the left main maps to LAD
    assert lm.points_mm.shape == (6, 3) and lm.points_px.shape == (6, 2)
    assert lm.image_index == SHAPE[0] - 1 - 5
    assert lm.area_cm2 == pytest.approx(20 * PIXEL_MM2 / 100)


def test_polygons_fill_their_slices_by_z_not_image_index(coca_root, case):
    volume, _ = case
    ct, labels, table = load_gated_patient(coca_root, "101")
    np.testing.assert_array_equal(ct.hu, volume.hu)
    expected = np.zeros(SHAPE, np.uint8)
    label_of = {
        "Left Anterior Descending Artery": 1,
        "Left Coronary Artery": 1,
        "Left Circumflex Artery": 2,
        "Right Coronary Artery": 3,
    }
    for name, k, _, pixels in ROIS:
        for r, c in pixels:
            expected[k, r, c] = label_of[name]
    np.testing.assert_array_equal(labels.array, expected)  # the L shape, not its bounding box
    assert labels.array[5, 8, 18] == 0
    assert list(table["slice"]) == [2, 5, 5, 6]
    assert list(table["image_index"]) == [SHAPE[0] - 1 - k for k in (2, 5, 5, 6)]
    np.testing.assert_allclose(table["filled_area_cm2"], table["area_cm2"])


def test_agatston_equals_area_times_density_weight(tmp_path, coca_root, case):
    _, rois = case
    result = import_coca(coca_root, tmp_path / "out")
    manifest = read_manifest(result.manifest)
    row = manifest.iloc[0]
    scores = agatston(read_volume(row["image"]), read_labels(row["labels"]))
    # per ROI: Area (cm^2 -> mm^2) x density weight of its Max; slices are 3 mm apart and 3 mm thick
    per_label = {"LAD": 0.0, "LCX": 0.0, "RCA": 0.0}
    names = {
        "Left Anterior Descending Artery": "LAD",
        "Left Coronary Artery": "LAD",
        "Left Circumflex Artery": "LCX",
        "Right Coronary Artery": "RCA",
    }
    for roi in rois:
        per_label[names[roi["Name"]]] += roi["Area"] * 100.0 * _density_weight(roi["Max"])
    for name, expected in per_label.items():
        assert scores[name].agatston == pytest.approx(expected)
    assert scores.cac_agatston == pytest.approx(sum(per_label.values()))
    assert scores.cac_agatston == pytest.approx(
        PIXEL_MM2 * (25 * 4 + 20 * 3 + 16 * 4 + 12 * 4)
    )  # maxima 420, 350, 520, 670 HU


def test_voxels_below_130_hu_are_not_labelled(tmp_path, case):
    volume, rois = case
    hu = volume.hu.copy()
    hu[2, 5:10, 5:7] = 100.0  # two columns of the LAD square below the threshold
    root = tmp_path / "coca"
    write_patient(root, "7", volume.with_array(hu), rois)
    _, labels, table = load_gated_patient(root, "7")
    assert not labels.array[2, 5:10, 5:7].any()
    assert (labels.array[2, 5:10, 7:10] == Label.LAD).all()
    assert table.loc[table["slice"] == 2, "n_calcium"].item() == 15


def test_empty_rois_are_skipped_with_a_warning(tmp_path, case, caplog):
    volume, rois = case
    empty = {
        "Name": "Right Coronary Artery",
        "Point_mm": [],
        "Point_px": [],
        "Area": 0.0,
        "Max": 0.0,
        "Mean": 0.0,
        "Min": 0.0,
    }
    no_keys = {"Name": "Left Circumflex Artery", "Area": 0.0}
    path = write_plist(tmp_path / "e.xml", rois, extra_rois=[(3, empty), (4, no_keys)])
    with caplog.at_level(logging.WARNING, logger="calcscore.datasets.coca"):
        read = read_calcium_xml(path)
    assert len(read) == len(rois)
    assert sum("no points; skipped" in r.message for r in caplog.records) == 2


def test_import_writes_manifest_and_reference_scores(tmp_path, coca_root, case):
    volume, _ = case
    write_patient(coca_root, "102", volume, None)  # no annotation: no calcium
    nongated = coca_root / "deidentified_nongated"
    nongated.mkdir()
    pd.DataFrame(
        {
            "filename": ["ng1", "ng2"],
            "LCA": [10.0, 0.0],
            "LAD": [5.0, 0.0],
            "LCX": [0.0, 3.0],
            "RCA": [1.0, 0.0],
            "total": [16.0, 3.0],
        }
    ).to_excel(nongated / "scores.xlsx", index=False)
    out = tmp_path / "out"
    assert main(["import", "coca", str(coca_root), str(out)]) == 0
    manifest = read_manifest(out / "manifest.csv")
    assert list(manifest.columns[:6]) == [
        "scan_id",
        "participant_id",
        "image",
        "labels",
        "kernel",
        "scanner",
    ]
    assert list(manifest["scan_id"]) == ["101", "102"]
    assert list(manifest["kernel"]) == ["soft", "soft"]  # B35f
    assert manifest["scanner"].iloc[0] == "SIEMENS Sensation 64"
    assert not read_labels(manifest["labels"].iloc[1]).array.any()
    ref = pd.read_csv(out / REFERENCE_SCORES_FILE, dtype={"scan_id": str})
    assert list(ref["scan_id"]) == ["ng1", "ng2"]
    np.testing.assert_allclose(ref["agatston_LAD"], [15.0, 0.0])  # LAD + left main
    np.testing.assert_allclose(ref["agatston_CAC"], [16.0, 3.0])
    assert not (out / "import_errors.csv").exists()


def test_nongated_scores_need_their_columns(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("filename,LAD,LCX\nx,1,2\n")
    with pytest.raises(InputError, match="lacks the column"):
        read_nongated_scores(path)
    path.write_text("filename,LCA,LAD,LCX,RCA,total\nx,1,2,3,-4,2\n")
    with pytest.raises(InputError, match="not a score"):
        read_nongated_scores(path)


# ------------------------------------------------------------------------ malformed input
def test_broken_xml_fails_that_patient_only(tmp_path, coca_root, case):
    volume, rois = case
    write_patient(coca_root, "103", volume, rois)
    broken = coca_root / "Gated_release_final" / "calcium_xml" / "103.xml"
    text = broken.read_bytes()[:-200]
    broken.write_bytes(text)
    out = tmp_path / "out"
    result = import_coca(coca_root, out)
    assert result.scan_ids == ["101"]
    assert [e["scan_id"] for e in result.errors] == ["103"]
    assert "not a readable OsiriX ROI plist" in result.errors[0]["problem"]
    assert broken.read_bytes() == text  # the input is untouched
    errors = pd.read_csv(out / "import_errors.csv", dtype={"scan_id": str})
    assert list(errors["scan_id"]) == ["103"] and errors["path"].iloc[0] == str(broken)
    assert (
        not (out / "images" / "103.nii.gz").exists()
        and not (out / "labels" / "103.nii.gz").exists()
    )
    assert list(read_manifest(out / "manifest.csv")["scan_id"]) == ["101"]
    with pytest.raises(InputError, match="103.xml"):
        import_coca(coca_root, tmp_path / "strict", keep_going=False)


def test_roi_outside_the_image_is_an_error(tmp_path, case):
    volume, rois = case
    outside = dict(
        rois[0],
        Point_px=[f"({x + 30:.6f}, {y:.6f})" for x, y in _square(5, 5, 9, 9)],
        Point_mm=[
            f"({ORIGIN[2] + (x + 30) * SPACING[2]:.6f}, {ORIGIN[1] + y * SPACING[1]:.6f}, "
            f"{ORIGIN[0] + 2 * SPACING[0]:.6f})"
            for x, y in _square(5, 5, 9, 9)
        ],
    )
    root = tmp_path / "coca"
    write_patient(root, "8", volume, [outside])
    with pytest.raises(InputError, match="outside the image.*column"):
        load_gated_patient(root, "8")
    above = dict(rois[0], _slice=20)  # z beyond the series
    above["Point_mm"] = [
        p.replace(f"{ORIGIN[0] + 2 * SPACING[0]:.6f}", f"{ORIGIN[0] + 20 * SPACING[0]:.6f}")
        for p in rois[0]["Point_mm"]
    ]
    write_plist(root / "Gated_release_final" / "calcium_xml" / "8.xml", [above], n_slices=30)
    with pytest.raises(InputError, match=r"outside the image: z = -40.00 mm.*-100.00 to -79.00"):
        load_gated_patient(root, "8")


def test_annotation_without_series_is_reported(tmp_path, coca_root, case, capsys):
    _, rois = case
    xml = write_plist(coca_root / "Gated_release_final" / "calcium_xml" / "999.xml", rois)
    out = tmp_path / "out"
    assert main(["import", "coca", str(coca_root), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 of 2" in err and "import_errors.csv" in err
    errors = pd.read_csv(out / "import_errors.csv", dtype={"scan_id": str})
    assert errors["scan_id"].tolist() == ["999"]
    assert "without its DICOM series" in errors["problem"].iloc[0] and errors["path"].iloc[
        0
    ] == str(xml)
    assert list(read_manifest(out / "manifest.csv")["scan_id"]) == ["101"]


def test_unknown_vessel_name_is_an_error(tmp_path, case):
    _, rois = case
    path = write_plist(tmp_path / "u.xml", [dict(rois[0], Name="Aorta")])
    with pytest.raises(InputError, match="unknown vessel name 'Aorta'"):
        read_calcium_xml(path)


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="neither"):
        import_coca(tmp_path, tmp_path / "out")


def test_physical_to_index_inverts_index_to_physical(small_ct):
    from calcscore.datasets.coca import physical_to_index

    idx = np.array([[0.0, 0.0, 0.0], [5.0, 8.0, 10.0], [2.5, 3.25, 7.5]])
    zyx = small_ct.index_to_physical(idx)  # an oblique grid (conftest)
    np.testing.assert_allclose(physical_to_index(small_ct, zyx[:, ::-1]), idx, atol=1e-9)
