"""orCaScore-style importer: MHD images with reference label images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calcscore.cli import main
from calcscore.datasets.orcascore import find_pairs, import_orcascore
from calcscore.errors import InputError
from calcscore.io import read_labels, read_volume, write_labels, write_volume
from calcscore.manifest import read_manifest
from calcscore.volume import CTMeta, CTVolume, LabelVolume


def _scan(seed: int) -> tuple[CTVolume, LabelVolume]:
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 20, (6, 16, 16)).round().astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    for value, (k, r, c) in zip((1, 2, 3), ((1, 3, 3), (3, 8, 10), (4, 12, 4))):
        hu[k, r : r + 2, c : c + 2] = 300 + 50 * value
        labels[k, r : r + 2, c : c + 2] = value
    meta = CTMeta(kernel="FC12", manufacturer="TOSHIBA", slice_thickness_mm=3.0)
    vol = CTVolume(hu, (3.0, 0.6, 0.6), (-50.0, 0.0, 10.0), np.eye(3), meta=meta)
    return vol, LabelVolume.like(vol, labels)


@pytest.fixture
def orcascore_root(tmp_path):
    root = tmp_path / "orcascore"
    for i, seed in ((1, 0), (2, 1)):
        vol, lab = _scan(seed)
        write_volume(vol, root / "Training set" / "Images" / f"TRV1P{i}CTI.mhd")
        write_labels(lab, root / "Training set" / "Reference standard" / f"TRV1P{i}CTR.mhd")
    return root


def test_pairs_by_orcascore_names(orcascore_root):
    pairs = find_pairs(orcascore_root)
    assert list(pairs) == ["TRV1P1", "TRV1P2"]
    assert pairs["TRV1P1"][1].name == "TRV1P1CTR.mhd"


def test_import_copies_images_and_labels(tmp_path, orcascore_root):
    out = tmp_path / "out"
    assert main(["import", "orcascore", str(orcascore_root), str(out)]) == 0
    manifest = read_manifest(out / "manifest.csv")
    assert list(manifest.columns[:6]) == [
        "scan_id",
        "participant_id",
        "image",
        "labels",
        "kernel",
        "scanner",
    ]
    assert list(manifest["scan_id"]) == ["TRV1P1", "TRV1P2"]
    assert list(manifest["participant_id"]) == ["V1P1", "V1P2"]
    assert list(manifest["kernel"]) == ["soft", "soft"]  # FC12
    for (_, row), seed in zip(manifest.iterrows(), (0, 1)):
        vol, lab = _scan(seed)
        np.testing.assert_array_equal(read_volume(row["image"]).hu, vol.hu)
        np.testing.assert_array_equal(read_labels(row["labels"]).array, lab.array)


def test_images_and_labels_folders(tmp_path):
    root = tmp_path / "data"
    vol, lab = _scan(3)
    write_volume(vol, root / "images" / "case7.mha")
    write_labels(lab, root / "labels" / "case7.mha")
    result = import_orcascore(root, tmp_path / "out", fmt="mha")
    assert result.scan_ids == ["case7"] and not result.errors
    assert (tmp_path / "out" / "labels" / "case7.mha").is_file()


def test_bad_references_fail_their_scan_only(tmp_path, orcascore_root):
    ref = orcascore_root / "Training set" / "Reference standard"
    vol, lab = _scan(2)
    bad = lab.array.copy()
    bad[0, 0, 0] = 5
    write_volume(vol, orcascore_root / "Training set" / "Images" / "TRV2P1CTI.mhd")
    write_labels(LabelVolume.like(vol, bad), ref / "TRV2P1CTR.mhd")
    write_volume(vol, orcascore_root / "Training set" / "Images" / "TRV3P1CTI.mhd")  # no reference
    shifted = LabelVolume(lab.array, lab.spacing_mm, (0.0, 0.0, 0.0))
    write_volume(vol, orcascore_root / "Training set" / "Images" / "TRV4P1CTI.mhd")
    write_labels(shifted, ref / "TRV4P1CTR.mhd")
    out = tmp_path / "out"
    result = import_orcascore(orcascore_root, out)
    assert result.scan_ids == ["TRV1P1", "TRV1P2"]
    errors = pd.read_csv(out / "import_errors.csv").set_index("scan_id")["problem"]
    assert "label values [5]" in errors["TRV2P1"]
    assert "no reference label image" in errors["TRV3P1"]
    assert "do not share a grid" in errors["TRV4P1"]
    with pytest.raises(InputError, match="label values"):
        import_orcascore(orcascore_root, tmp_path / "strict", keep_going=False)


def test_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no <id>CTI.mhd"):
        import_orcascore(tmp_path, tmp_path / "out")
