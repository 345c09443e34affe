"""Scans stored in another layout than the standard one (calcscore.orientation): the same voxels
at the same physical positions, segmented and checked as the standard layout, labels back on the
scan's own grid."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from calcscore.checks import ScanRefusedError, check_scan, ensure_scorable
from calcscore.orientation import Orientation, orientation_of, to_standard
from calcscore.phantom import make_scan
from calcscore.volume import CTVolume, LabelVolume

LAYOUTS = [
    Orientation(axes, flips)  # type: ignore[arg-type]
    for axes in itertools.permutations(range(3))
    for flips in itertools.product((False, True), repeat=3)
]


def stored_as(volume: CTVolume, orient: Orientation) -> CTVolume:
    """``volume`` (standard layout, identity direction) as a scan stored in layout ``orient``
    would hold it: built voxel by voxel from physical positions, not with the module's code."""
    src_shape = [0, 0, 0]
    spacing = [0.0, 0.0, 0.0]
    direction = np.zeros((3, 3))
    for i, a in enumerate(orient.axes):
        src_shape[a] = volume.shape[i]
        spacing[a] = volume.spacing_mm[i]
        direction[i, a] = -1.0 if orient.flips[i] else 1.0
    # the stored array's voxel (0, 0, 0) lies at the standard voxel with index n - 1 on every
    # reversed axis and 0 on the others
    first = [volume.shape[i] - 1 if orient.flips[i] else 0 for i in range(3)]
    origin = volume.index_to_physical([first])[0]
    stored = CTVolume(np.zeros(src_shape, np.float32), tuple(spacing), tuple(origin), direction)
    idx = np.argwhere(np.ones(src_shape, bool))
    std_idx = np.rint(
        (stored.index_to_physical(idx) - np.asarray(volume.origin_mm)) / volume.spacing_mm
    ).astype(int)
    arr = volume.hu[tuple(std_idx.T)].reshape(src_shape)
    return stored.with_array(arr, meta=volume.meta)


def test_every_axis_aligned_layout_becomes_the_standard_one_and_back():
    rng = np.random.default_rng(0)
    std = CTVolume(rng.normal(size=(4, 5, 6)).astype(np.float32), (3.0, 0.7, 0.8), (9, -20, 31))
    assert len(LAYOUTS) == 48
    for orient in LAYOUTS:
        src = stored_as(std, orient)
        assert orientation_of(src.direction) == orient
        back, found = to_standard(src)
        assert found == orient and found.is_standard == (orient == Orientation())
        np.testing.assert_array_equal(back.hu, std.hu)
        np.testing.assert_allclose(back.spacing_mm, std.spacing_mm)
        np.testing.assert_allclose(back.origin_mm, std.origin_mm, atol=1e-9)
        np.testing.assert_allclose(back.direction, np.eye(3), atol=1e-12)
        # a label map made in the standard layout goes back to the scan's own grid
        labels = orient.apply(src).hu.astype(np.uint8) % 7
        again = orient.undo(LabelVolume.like(back, labels), src)
        assert again.same_geometry(src)
        np.testing.assert_array_equal(orient.apply(again).labels, labels)
        assert orient.is_axial == (orient.axes[0] == 0)


def test_the_layout_is_named_in_words_and_tilts_keep_the_nearest_layout():
    from calcscore.io import describe

    ras = Orientation((0, 1, 2), (False, True, True))  # nibabel's RAS: x to right, y to anterior
    assert ras.describe() == "z to superior, y to anterior, x to right"
    std = CTVolume(np.zeros((3, 4, 5), np.float32), (2.0, 0.5, 0.5))
    assert "layout           z to superior, y to anterior, x to right\n" in describe(
        stored_as(std, ras)
    )
    a = np.deg2rad(15.0)  # a gantry tilt of 15 degrees: the axial layout it was
    tilt = np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    assert orientation_of(tilt).is_standard
    cz, sz, cx, sx = np.cos(0.7), np.sin(0.7), np.cos(0.87), np.sin(0.87)  # 40 and 50 degrees
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    half = rz @ rx  # two patient axes nearest the same array axis
    with pytest.raises(ValueError, match="reformat the scan to axial slices"):
        orientation_of(half)


def test_checks_read_a_reversed_scan_as_the_standard_one_and_refuse_coronal_slices():
    volume, _, _ = make_scan(rng=0, kernel="soft", size="small")
    plain = check_scan(volume)
    ras = check_scan(stored_as(volume, Orientation((0, 1, 2), (True, True, True))))
    assert ras.codes() == plain.codes() | {"layout"}
    assert ras.blood_pool_hu == pytest.approx(plain.blood_pool_hu)
    assert ras.coverage.status == plain.coverage.status
    n = volume.shape[0]  # the heart's slices, numbered as the reversed file's own
    first, last = n - 1 - plain.coverage.last_slice, n - 1 - plain.coverage.first_slice
    assert (ras.coverage.first_slice, ras.coverage.last_slice) == (first, last)
    assert f"slices {first}-{last}" in ras.coverage.reason
    layout = next(f for f in ras.findings if f.code == "layout")
    assert layout.severity == "info" and "y to anterior" in layout.message
    coronal = stored_as(volume, Orientation((1, 0, 2), (False, False, False)))
    report = check_scan(coronal, force=True)
    assert "not_axial" in report.codes() and report.forced
    with pytest.raises(ScanRefusedError) as err:  # not even forced
        ensure_scorable(coronal, force=True, source="coronal.nii.gz")
    text = str(err.value)
    assert "coronal.nii.gz" in text and "not axial" in text and "force it with" not in text


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::calcscore.preprocess.ThickSliceWarning")  # 5 mm slices
def test_a_scan_stored_reversed_or_coronal_is_labelled_as_the_standard_one(hybrid_heart_cut):
    """The shipped model on a heart-only cut of the shipped chest CT with 12 synthetic lesions:
    stored as a RAS NIfTI, head first, or as coronal slices, it is labelled voxel for voxel as in
    the standard layout; read as if it were standard (what calcscore did before), it is not."""
    from calcscore.inference import InferenceOptions, Model, _segment_standard, segment

    cut, _ = hybrid_heart_cut
    model, opts = Model.load(None), InferenceOptions(channels_last=True)
    seg = segment(cut, model, opts)
    want = seg.labels.labels
    assert seg.orientation.is_standard and np.isin(want, [1, 2, 3]).sum() > 100
    thresholds = {"CAC": 0.9, "TAC": 0.9, "AV": 0.9, "MV": 0.9}
    want_at = seg.labels_at(cut, thresholds).labels
    for orient in (
        Orientation((0, 1, 2), (False, True, True)),  # RAS (nibabel, dcm2niix-like)
        Orientation((0, 1, 2), (True, False, False)),  # head first
        Orientation((1, 0, 2), (True, False, False)),  # coronal slices
    ):
        stored = stored_as(cut, orient)
        got = segment(stored, model, opts)
        assert got.orientation == orient and got.labels.same_geometry(stored)
        np.testing.assert_array_equal(orient.apply(got.labels).labels, want)
        at = got.labels_at(stored, thresholds)
        np.testing.assert_array_equal(orient.apply(at).labels, want_at)
    # the array read as if it were standard: the networks see the chest upside down
    upside_down = stored_as(cut, Orientation((0, 1, 2), (False, True, False)))
    naive = _segment_standard(upside_down, model, opts).labels.labels[:, ::-1]
    assert not np.array_equal(naive, want)


@pytest.mark.slow
def test_score_gives_a_ras_nifti_the_scores_and_labels_of_the_lps_one(tmp_path):
    """`calcscore score` with the shipped model on a phantom written as an LPS NIfTI and as a
    NIfTI stored with every axis reversed (x to right, y to anterior, z to inferior): the same
    scores, the labels on each file's own grid; a coronal stack is refused, even forced."""
    import subprocess
    import sys

    from calcscore.io import read_labels, read_volume, write_volume

    volume, _, _ = make_scan(rng=11, size="small")
    write_volume(volume, tmp_path / "lps.nii.gz")
    reversed_ = Orientation((0, 1, 2), (True, True, True))
    write_volume(stored_as(volume, reversed_), tmp_path / "rev.nii.gz")
    write_volume(stored_as(volume, Orientation((1, 0, 2), (False,) * 3)), tmp_path / "cor.nii.gz")

    def score(*args):
        cmd = [sys.executable, "-m", "calcscore.cli", "score", *map(str, args), "--device", "cpu"]
        return subprocess.run(cmd, capture_output=True, text=True)

    out = tmp_path / "out"
    r = score(tmp_path / "lps.nii.gz", tmp_path / "rev.nii.gz", "--out", out, "--no-report")
    assert r.returncode == 0, r.stderr
    lps = json.loads((out / "lps_scores.json").read_text())
    rev = json.loads((out / "rev_scores.json").read_text())
    assert lps["labels"]["CAC"]["agatston"] > 0
    assert rev["risk_category"] == lps["risk_category"] and set(rev["labels"]) == set(lps["labels"])
    for name, want_scores in lps["labels"].items():  # summed in another order: to rounding
        for key, value in want_scores.items():
            assert rev["labels"][name][key] == (value and pytest.approx(value, rel=1e-9))
    n = volume.shape[0]  # the safety net's heart top, numbered as each file's own slices
    assert rev["safety_net"]["heart_top_slice"] == n - 1 - lps["safety_net"]["heart_top_slice"]
    got = read_labels(out / "rev_labels.nii.gz")
    assert got.same_geometry(read_volume(tmp_path / "rev.nii.gz"))
    want = read_labels(out / "lps_labels.nii.gz").labels
    np.testing.assert_array_equal(reversed_.apply(got).labels, want)
    r = score(tmp_path / "cor.nii.gz", "--out", tmp_path / "out2", "--force")
    assert r.returncode != 0 and "not axial" in r.stderr and "Traceback" not in r.stderr


def test_a_reversed_scan_is_cached_for_training_as_the_standard_one(tmp_path):
    """Training sees what inference sees: a scan and its labels stored with y to anterior and
    z reversed are cached voxel for voxel as the standard layout's."""
    from calcscore.scan_cache import cache_scan

    volume, labels, _ = make_scan(rng=3, size="small")
    assert (labels.labels > 0).any()
    orient = Orientation((0, 1, 2), (True, True, False))
    stored = stored_as(volume, orient)
    stored_labels = LabelVolume.like(stored, orient.array_to_source(labels.labels))
    want = cache_scan(volume, labels, tmp_path / "std", scan_id="std")
    got = cache_scan(stored, stored_labels, tmp_path / "rev", scan_id="rev")
    for name in ("hu.npy", "labels.npy", "calcium.npy", "background.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "rev" / name), np.load(tmp_path / "std" / name)
        )
    assert got.shape == want.shape


def test_the_report_page_shows_a_reversed_scan_as_the_standard_one():
    """The scan page's overview and key images of a scan stored with every axis reversed are the
    standard layout's, pixel for pixel; their captions give the scan's own slice numbers."""
    import re

    from calcscore.report_html import render_scan_report
    from calcscore.scoring import score_report

    volume, labels, _ = make_scan(rng=3, size="small")
    orient = Orientation((0, 1, 2), (True, True, True))
    stored = stored_as(volume, orient)
    stored_labels = LabelVolume.like(stored, orient.array_to_source(labels.labels))
    pages = [
        render_scan_report(score_report(v, lab, scan="s"), v, lab)
        for v, lab in ((volume, labels), (stored, stored_labels))
    ]
    images = [re.findall(r'src="(data:image/png;base64,[^"]+)"', p) for p in pages]
    assert len(images[0]) >= 2 and images[1] == images[0]
    slices = [[int(k) for k in re.findall(r"[Ss]lice (\d+)", p)] for p in pages]
    n = volume.shape[0]
    assert slices[0] and slices[1] == [n - 1 - k for k in slices[0]]


def test_a_label_map_saved_in_another_layout_is_read_onto_the_scan(tmp_path, capsys):
    """A reference drawn on the same voxels but saved as RAS NIfTI (3D Slicer, nibabel): turned
    onto the scan's grid for `calcscore agatston`; a label map of another grid is still
    refused."""
    from calcscore.cli import main
    from calcscore.io import write_labels, write_volume
    from calcscore.orientation import onto_layout

    volume, labels, _ = make_scan(rng=3, size="small")
    assert np.isin(labels.labels, [1, 2, 3]).any()
    ras = Orientation((0, 1, 2), (False, True, True))
    stored = stored_as(volume, ras)
    ras_labels = LabelVolume.like(stored, ras.array_to_source(labels.labels))
    back = onto_layout(ras_labels, volume)
    assert back.same_geometry(volume)
    np.testing.assert_array_equal(back.labels, labels.labels)
    shifted = LabelVolume(labels.labels, labels.spacing_mm, (0.0, 5.0, 0.0), labels.direction)
    assert onto_layout(shifted, volume) is shifted  # not the same voxels: left to the check
    write_volume(volume, tmp_path / "ct.nii.gz")
    write_labels(labels, tmp_path / "lps.nii.gz")
    write_labels(ras_labels, tmp_path / "ras.nii.gz")
    outputs = []
    for name in ("lps", "ras"):
        assert (
            main(
                [
                    "agatston",
                    str(tmp_path / "ct.nii.gz"),
                    str(tmp_path / f"{name}.nii.gz"),
                    "--json",
                ]
            )
            == 0
        )
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["labels"]["CAC"]["agatston"] > 0
    for name, want in outputs[0]["labels"].items():
        got = outputs[1]["labels"][name]
        assert (
            got["agatston"] == pytest.approx(want["agatston"])
            and got["n_lesions"] == want["n_lesions"]
        )
