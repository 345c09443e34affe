"""The real scans that ship with calcscore (calcscore.datasets.examples): what they hold, that
the QRM NIfTI equals its DICOM series, that pyproject ships them, and that the user-facing files
no longer point at the shared data beside the repository."""

from __future__ import annotations

import fnmatch
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calcscore.datasets import examples
from calcscore.io import read_volume
from calcscore.labels import Label
from calcscore.scoring import agatston
from calcscore.volume import LabelVolume

ROOT = Path(__file__).resolve().parents[1]
SHARED_CHEST = ROOT.parent / "shared" / "data" / "open-chest-ct" / "lungdx-a0001-b.nii.gz"


def test_qrm_phantom_holds_the_documented_scan():
    v = examples.qrm_phantom()
    # the facts of the source's README: 47 slices of 512 x 512, 3.0 mm, 0.488 mm pixels, FC12
    assert v.shape == (47, 512, 512)
    assert v.spacing_mm == (3.0, 0.488, 0.488)
    assert (v.meta.manufacturer, v.meta.model, v.meta.kernel) == ("TOSHIBA", "Aquilion ONE", "FC12")
    assert v.meta.kvp == 120.0 and v.meta.slice_thickness_mm == 3.0
    assert v.meta.extra["series_description"] == "Cardiac 3.000"
    # outside the field of view -2048; whole HU only (the int16 store is lossless)
    assert v.hu.min() == -2048.0 and np.array_equal(v.hu, np.round(v.hu))
    # the inserts' slices hold calcium, the slices far below them do not (rows/cols of the README)
    inserts = v.hu[list(examples.QRM_INSERT_SLICES), 150:285, 175:300]
    assert (inserts >= 130).sum() > 100
    assert (v.hu[:5, 150:285, 175:300] >= 130).sum() < (inserts >= 130).sum() / 10


def test_chest_ct_holds_the_documented_scan():
    v = examples.chest_ct()
    assert v.shape == (64, 360, 512)
    assert v.spacing_mm[0] == 5.0 and v.spacing_mm[1] == pytest.approx(0.841796875)
    assert (v.meta.manufacturer, v.meta.model, v.meta.kernel) == ("Philips", "Brilliance16", "B")
    assert -1024 <= v.hu.min() and v.hu.max() <= 3071


def test_qrm_reference_masses():
    ref = examples.qrm_reference()
    assert list(ref["ground_truth_mass_large"]) == [19.6, 39.3, 78.5]
    assert list(ref["ground_truth_mass_small"]) == [0.2, 0.3, 0.6]


def test_describe_and_unknown_name():
    table = examples.describe()
    assert set(table.index) == {"qrm-canon-large-rep1", "lungdx-a0001-b"}
    assert table.loc["lungdx-a0001-b", "licence"].startswith("CC BY 4.0")
    with pytest.raises(ValueError, match="no shipped example 'nope'"):
        examples.path("nope")


def _insert_labels(volume) -> LabelVolume:
    """Every voxel >= 130 HU in the box of the nine inserts (README), as LAD."""
    lab = np.zeros(volume.shape, np.uint8)
    box = (slice(19, 26), slice(150, 285), slice(175, 300))
    lab[box] = np.where(volume.hu[box] >= 130, int(Label.LAD), 0)
    return LabelVolume.like(volume, lab)


def test_qrm_example_equals_its_dicom_series(qrm_dicom):
    dicom = read_volume(qrm_dicom)
    shipped = examples.qrm_phantom()
    assert np.array_equal(shipped.hu, dicom.hu)
    assert shipped.spacing_mm == dicom.spacing_mm and shipped.origin_mm == dicom.origin_mm
    assert np.array_equal(shipped.direction, dicom.direction)
    assert shipped.meta == dicom.meta
    assert shipped.meta.extra == {k: dicom.meta.extra.get(k) for k in shipped.meta.extra}
    # the scores of the same labels: identical from the shipped volume and from the DICOM, and
    # from the NIfTI read as a file (float32 geometry) equal to 6 significant digits
    as_file = read_volume(examples.path("qrm-canon-large-rep1"))
    a, b, c = (agatston(v, _insert_labels(v)) for v in (dicom, shipped, as_file))
    assert a.to_frame().equals(b.to_frame())
    assert a.lesions.equals(b.lesions)
    np.testing.assert_allclose(
        c.to_frame().to_numpy(float), a.to_frame().to_numpy(float), rtol=1e-6
    )
    assert a["LAD"].n_lesions >= 6  # the large and medium inserts at least


def test_chest_ct_is_the_shared_file_byte_for_byte():
    if not SHARED_CHEST.is_file():
        pytest.skip(f"the shared data is not at {SHARED_CHEST}")
    shipped = examples.path("lungdx-a0001-b")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (shipped, SHARED_CHEST)]
    assert digest[0] == digest[1]


def test_pyproject_ships_every_example_file():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["calcscore"]
    files = sorted(p for p in examples.DATA_DIR.iterdir() if p.is_file())
    names = {p.name for p in files}
    assert {"README.md", "qrm-canon-large-rep1.LICENSE", "lungdx-a0001-b.json"} <= names
    for p in files:
        rel = p.relative_to(ROOT / "calcscore").as_posix()
        assert any(fnmatch.fnmatch(rel, pat) for pat in patterns), f"{rel} is not package data"


def test_user_facing_files_do_not_point_at_the_shared_folder():
    """`grep -rn "shared/" README.md notebooks tutorials binder calcscore` finds nothing."""
    hits = []
    for top in ("README.md", "notebooks", "tutorials", "binder", "calcscore"):
        path = ROOT / top
        for f in [path] if path.is_file() else sorted(path.rglob("*")):
            if not f.is_file() or "__pycache__" in f.parts:
                continue
            try:
                text = f.read_text()
            except UnicodeDecodeError:
                continue  # binary: scans, networks
            hits += [
                f"{f.relative_to(ROOT)}:{i}"
                for i, line in enumerate(text.splitlines(), 1)
                if "shared/" in line
            ]
    assert hits == []


def test_recipe_can_take_the_shipped_chest_ct_as_a_real_negative():
    """The recipe comment's alternative: images from calcscore/datasets/data, labels from
    data/real_negatives; the label map lies on the shipped image's grid."""
    import dataclasses

    from calcscore.io import read_labels
    from calcscore.pipeline.recipe import RealNegatives, load_recipe, real_negative_files

    recipe = load_recipe(ROOT / "calcscore" / "models" / "default" / "recipe.toml")
    recipe = dataclasses.replace(
        recipe,
        real_negatives=RealNegatives(
            scans=["lungdx-a0001-b"],
            images="../../datasets/data",
            labels="../../../data/real_negatives",
        ),
    )
    image, labels = real_negative_files(recipe, "lungdx-a0001-b")
    assert image.resolve() == examples.path("lungdx-a0001-b").resolve()
    lab = read_labels(labels)
    assert lab.same_geometry(examples.chest_ct())
    assert set(np.unique(lab.labels)) == {0, 255}


HEART_CROPS = ["lidc-idri-0006", "qin-lsc-0064", "qin-lung-01-0007"]


def _heart_crop(name: str):
    import json

    from calcscore.io import read_labels

    folder = ROOT / "data" / "real_negatives"
    hearts = json.loads((folder / "hearts.json").read_text())
    return (
        read_volume(folder / f"{name}-heart.nii.gz"),
        read_labels(folder / f"{name}-heart_labels.nii.gz"),
        hearts[name],
        hearts[f"{name}-heart"],
    )


@pytest.mark.parametrize("name", HEART_CROPS)
def test_the_kept_heart_crops_match_their_label_maps_and_hearts(name):
    """data/real_negatives keeps heart crops of three open CTs (make_heart_crops.py): image and
    label map share one grid, and the crop's heart is the scan's heart moved by one offset and
    lies inside the crop."""
    crop, lab, full, mine = _heart_crop(name)
    assert lab.same_geometry(crop) and set(np.unique(lab.labels)) <= {0, 255}
    offset = [full[a][0] - mine[a][0] for a in "zyx"]
    assert all(full[a][1] - mine[a][1] == o for a, o in zip("zyx", offset))
    assert all(0 <= mine[a][0] < mine[a][1] < n for a, n in zip("zyx", crop.shape))


@pytest.mark.slow
@pytest.mark.parametrize("name", HEART_CROPS)
def test_the_kept_heart_crops_are_their_scans_voxels_unchanged(name):
    """Where ../shared holds the full scan, a crop is its voxels and geometry unchanged."""
    scan_path = ROOT.parent / "shared" / "data" / "open-chest-ct" / f"{name}.nii.gz"
    if not scan_path.is_file():
        pytest.skip("the full scan lies in ../shared only")
    crop, _, full, mine = _heart_crop(name)
    z, y, x = (full[a][0] - mine[a][0] for a in "zyx")
    scan = read_volume(scan_path)
    block = scan.hu[z : z + crop.shape[0], y : y + crop.shape[1], x : x + crop.shape[2]]
    np.testing.assert_array_equal(np.round(block), crop.hu)
    np.testing.assert_allclose(scan.index_to_physical([[z, y, x]])[0], crop.origin_mm, atol=1e-3)
