"""`calcscore synth`: files, manifest and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcscore.cli import main

pytest.importorskip("SimpleITK")


def _run(out, *extra):
    return main(
        [
            "synth",
            str(out),
            "--n-scans",
            "3",
            "--seed",
            "4",
            "--size",
            "small",
            "--no-progress",
            *extra,
        ]
    )


def test_synth_writes_scans_labels_observers_and_manifest(tmp_path, capsys):
    from calcscore.io import read_labels, read_volume
    from calcscore.manifest import STANDARD_COLUMNS, read_manifest
    from calcscore.phantom import make_cohort

    out = tmp_path / "cohort"
    assert _run(out, "--observers") == 0
    assert "manifest.csv" in capsys.readouterr().out
    df = read_manifest(out / "manifest.csv")
    assert list(df.columns[: len(STANDARD_COLUMNS)]) == list(STANDARD_COLUMNS)
    assert {"labels_observer2", "labels_observer3"} <= set(df.columns)
    assert list(df["scan_id"]) == ["P0000_soft", "P0000_sharp", "P0001_soft"]
    assert list(df["participant_id"]) == ["P0000", "P0000", "P0001"]
    raw = (out / "manifest.csv").read_text().splitlines()[1]
    assert "images/P0000_soft.nii.gz" in raw and str(out) not in raw  # relative paths
    expected = list(make_cohort(2, seed=4, size="small", observers=2))
    for (_, row), cs in zip(df.iterrows(), expected):
        vol = read_volume(row["image"])
        lab = read_labels(row["labels"])
        assert np.array_equal(vol.hu, cs.volume.hu)
        assert np.array_equal(lab.labels, cs.labels.labels)
        assert np.array_equal(
            read_labels(row["labels_observer2"]).labels, cs.observers["observer2"].labels
        )
        assert vol.meta.kernel == cs.volume.meta.kernel == row["kernel_name"]
        assert row["scanner"] == cs.info.scanner and row["kernel"] == cs.kernel
        assert vol.same_geometry(cs.volume)


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_synth_same_seed_same_cohort_and_mha(tmp_path):
    from calcscore.io import read_labels
    from calcscore.manifest import read_manifest

    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a, "--format", "mha", "--kernels", "sharp") == 0
    assert _run(b, "--format", "mha", "--kernels", "sharp") == 0
    da, db = read_manifest(a / "manifest.csv"), read_manifest(b / "manifest.csv")
    assert list(da["kernel"]) == ["sharp"] * 3 and da["participant_id"].nunique() == 3
    for pa, pb in zip(da["image"], db["image"]):
        assert pa.endswith(".mha") and Path(pa).read_bytes() == Path(pb).read_bytes()
    for pa, pb in zip(da["labels"], db["labels"]):
        assert np.array_equal(read_labels(pa).labels, read_labels(pb).labels)


def test_synth_bad_arguments(tmp_path, capsys):
    assert (
        main(
            [
                "synth",
                str(tmp_path / "x"),
                "--n-scans",
                "2",
                "--seed",
                "1",
                "--kernels",
                "soft,lung",
            ]
        )
        == 2
    )
    assert "--kernels" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x"), "--n-scans", "0", "--seed", "1"]) == 2
    assert (
        main(["synth", str(tmp_path / "x"), "--n-scans", "1", "--seed", "1", "--scanner", "nope"])
        == 2
    )
    assert "known:" in capsys.readouterr().err


def test_synth_anatomy_v1_is_the_first_generators_cohort(tmp_path):
    from calcscore.io import read_volume
    from calcscore.manifest import read_manifest
    from calcscore.phantom import make_cohort

    out = tmp_path / "v1"
    assert _run(out, "--anatomy", "v1", "--kernels", "soft") == 0
    row = read_manifest(out / "manifest.csv").iloc[0]
    v1 = next(make_cohort(1, seed=4, size="small", kernels=("soft",), anatomy="v1"))
    v2 = next(make_cohort(1, seed=4, size="small", kernels=("soft",)))
    hu = read_volume(row["image"]).hu
    assert np.array_equal(hu, v1.volume.hu) and not np.array_equal(hu, v2.volume.hu)
