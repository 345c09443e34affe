"""The anatomical safety net (calcscore.regions): a drawn chest with known anatomy, phantoms with
voxel-exact calcium, and the real scans beside the project where they are present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calcscore.bone import bone_mask
from calcscore.labels import Label
from calcscore.negatives import real_negative_labels
from calcscore.phantom import make_scan
from calcscore.regions import (
    AORTA,
    HEART,
    apply_safety_net,
    find_chest_regions,
)
from calcscore.volume import CTVolume, LabelVolume

SPACING = (2.5, 0.8, 0.8)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ellipse(shape, centre, radii):
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1.0


def drawn_chest() -> tuple[CTVolume, dict[str, tuple[int, int, int]]]:
    """A chest drawn with known anatomy (z up, y to posterior, x to the left): a body of soft
    tissue, two lungs, a heart between them in the lower half, a vertebra behind, a rib just
    outside each lung, a sternum in front; plus the centres of test lesions."""
    shape = (60, 300, 400)
    hu = np.full(shape, -1000.0, np.float32)
    hu[_ellipse(shape, (30, 150, 200), (200, 130, 185))] = 40.0
    for x in (110, 290):  # tall lungs whose apices stay about 4 cm apart, as real ones do
        hu[_ellipse(shape, (35, 150, x), (60, 95, 70))] = -850.0
    hu[_ellipse(shape, (18, 130, 200), (14, 55, 55))] = 45.0  # heart, lower half
    hu[:, 215:255, 180:220] = 500.0  # vertebral column (thick bone)
    hu[:, 30:45, 170:230] = 450.0  # sternum
    for x0 in (25, 367):  # ribs: thin bars outside the lungs
        hu[:, 120:180, x0 : x0 + 8] = 600.0
    lesions = {"coronary": (18, 90, 200), "rib": (30, 150, 28), "above_heart": (50, 150, 200)}
    return CTVolume(hu, SPACING), lesions


def _blob(labels: np.ndarray, hu: np.ndarray, centre, label: int) -> None:
    z, y, x = centre
    hu[z, y - 2 : y + 3, x - 2 : x + 3] = 400.0
    labels[z, y - 2 : y + 3, x - 2 : x + 3] = label


def test_drawn_chest_keeps_heart_calcium_and_removes_rib_and_misplaced_labels():
    volume, where = drawn_chest()
    hu = volume.hu.copy()
    labels = np.zeros(volume.shape, np.uint8)
    _blob(labels, hu, where["coronary"], Label.LAD)
    _blob(labels, hu, where["rib"], Label.LCX)  # a rib lesion called coronary, as real scans show
    _blob(labels, hu, where["above_heart"], Label.RCA)  # coronary label above the heart
    labels[(hu >= 130) & (np.arange(volume.shape[2]) == 200)[None, None, :] & (labels == 0)] = (
        Label.TAC
    )
    lung_ml = float((hu == -850.0).sum()) * float(np.prod(SPACING)) / 1000.0
    volume = CTVolume(hu, SPACING)
    regions = find_chest_regions(volume)
    assert regions.found
    assert regions.lung_volume_ml == pytest.approx(lung_ml, rel=0.1)
    kept, removed = apply_safety_net(labels, regions)
    z, y, x = where["coronary"]
    assert (kept[z, y - 2 : y + 3, x - 2 : x + 3] == Label.LAD).all()
    assert not (kept == Label.LCX).any() and removed["LCX"] == 25
    assert not (kept == Label.RCA).any() and removed["RCA"] == 25
    # TAC drawn on the sternum and the vertebra: bone, removed
    assert not (kept == Label.TAC).any() and removed["TAC"] == int((labels == Label.TAC).sum())
    assert (
        regions.heart_top_z is not None
        and where["coronary"][0] < regions.heart_top_z < where["above_heart"][0]
    )


def test_zone_flags_separate_aortic_and_heart_regions():
    volume, where = drawn_chest()
    regions = find_chest_regions(volume)
    z, y, x = where["above_heart"]
    assert regions.zone[z, y, x] == AORTA  # mediastinum above the heart: aortic calcium only
    z, y, x = where["coronary"]
    assert regions.zone[z, y, x] == AORTA | HEART
    z, y, x = where["rib"]
    assert regions.zone[z, y, x] == 0


@pytest.mark.parametrize("blood_hu", [45.0, 300.0])
def test_coronary_labels_beside_the_spine_are_removed_aortic_ones_and_the_heart_kept(blood_hu):
    """A coronary label 4.8 mm in front of the vertebral column is removed, one 12.8 mm in front
    kept, and an aortic label beside the vertebra kept (the descending aorta lies on the spine).
    With contrast-filled blood (300 HU: 'bone' by HU) the heart is not taken for the spine: a
    label 4 mm behind it stays."""
    volume, where = drawn_chest()
    hu = volume.hu.copy()
    hu[_ellipse(hu.shape, (18, 130, 200), (14, 55, 55))] = blood_hu
    labels = np.zeros(hu.shape, np.uint8)
    near, far, behind_heart = (18, 207, 200), (18, 197, 200), (16, 190, 200)
    for centre, label in ((near, Label.LAD), (far, Label.LCX), (behind_heart, Label.RCA)):
        _blob(labels, hu, centre, label)
    labels[18, 230:235, 170:175] = Label.TAC  # 5 mm left of the vertebra
    hu[18, 230:235, 170:175] = 400.0
    regions = find_chest_regions(CTVolume(hu, SPACING))
    assert regions.found
    kept, removed = apply_safety_net(labels, regions)
    assert not (kept == Label.LAD).any() and removed["LAD"] == 25
    assert (kept == Label.LCX).sum() == 25 and (kept == Label.TAC).sum() == 25
    assert (kept == Label.RCA).sum() == 25


def test_no_lungs_means_no_net():
    hu = np.full((20, 60, 60), 40.0, np.float32)
    hu[10, 30, 30] = 500.0
    labels = (hu >= 130).astype(np.uint8) * int(Label.RCA)
    regions = find_chest_regions(CTVolume(hu, (1.5, 0.7, 0.7)))
    assert not regions.found and "lung" in regions.reason
    kept, removed = apply_safety_net(labels, regions)
    assert removed == {} and np.array_equal(kept, labels)


def test_bone_is_thick_and_large_a_thin_plate_on_it_is_not():
    hu = np.full((20, 80, 80), 40.0, np.float32)
    hu[:, 20:60, 20:50] = 600.0  # 20 x 40 x 30 voxels of 1 mm3: a vertebra
    hu[5:15, 30:50, 50:52] = (
        300.0  # a 2-voxel-thin plate touching it (an aortic wall calcification)
    )
    hu[10, 70:73, 70:73] = 400.0  # a small separate calcification
    bone = bone_mask(CTVolume(hu, (1.0, 1.0, 1.0)), max_lesion_mm3=3000.0)
    assert bone[:, 20:60, 20:50].all()
    assert not bone[10, 70:73, 70:73].any()
    # of the thin plate only what lies within the bone's two-voxel reach counts as bone
    assert bone[10, 40, 50] and bone[10, 40, 51]


@pytest.mark.parametrize("seed", [121, 124, 125])
def test_heart_region_phantoms_keep_every_coronary_and_valve_voxel(seed):
    """Held-out heart-region phantoms (P0121, P0124, P0125 of the test set have LAD on the front
    of the heart, LCX, RCA and AV calcium): the net removes none of their reference voxels."""
    volume, labels, _ = make_scan(rng=seed, size="medium", kernel="sharp")
    regions = find_chest_regions(volume)
    assert regions.found
    heart_labels = np.isin(
        labels.labels, [int(v) for v in (Label.LAD, Label.LCX, Label.RCA, Label.AV, Label.MV)]
    )
    assert heart_labels.any()
    _, removed = apply_safety_net(labels.labels, regions)
    assert not {k: v for k, v in removed.items() if k != "TAC"}, removed


def _real(name: str) -> CTVolume:
    from calcscore.io import read_volume

    path = SHARED / "open-chest-ct" / f"{name}.nii.gz"
    if not path.is_file():
        pytest.skip(f"real scan not found at {path}")
    return read_volume(path)


@pytest.mark.slow
def test_real_chest_ct_regions_cover_the_heart_and_leave_out_the_chest_wall():
    """lungdx-a0001-b (real, non-contrast, 5 mm): the heart seen on slice 25 (its centre by eye:
    row 140, column 290) lies in the heart region; the ribs and the shoulders do not."""
    volume = _real("lungdx-a0001-b")
    regions = find_chest_regions(volume)
    assert regions.found and 3000 < regions.lung_volume_ml < 8000
    assert regions.heart[25, 140, 290]
    assert 30 <= regions.heart_top_z <= 45  # the heart ends below slice 40 (by eye: ~slice 35)
    hot = volume.hu >= 130
    # the outer parts of the body on each side (ribs, scapulae, arms: thousands of voxels of
    # 130 HU or more) lie outside the regions, but for a rib's edge where it bulges into a lung
    for side in (np.s_[:, :, :130], np.s_[:, :, 420:]):
        assert hot[side].sum() > 5_000
        assert (regions.zone[side] > 0)[hot[side]].sum() <= 0.001 * hot[side].sum()


def test_real_negative_labels_background_far_from_the_heart_ignored_near_it(tmp_path):
    from calcscore.labels import IGNORE
    from calcscore.sampling import cache_scan

    volume, where = drawn_chest()
    lab = real_negative_labels(volume, margin_mm=10.0)
    assert set(np.unique(lab)) == {0, IGNORE}
    z, y, x = where["coronary"]
    assert lab[z, y, x] == IGNORE  # the heart: not annotated
    z, y, x = where["rib"]
    assert lab[z, y, x] == 0  # a rib far from the heart: background
    # in a training cache the ignored candidates are in neither pool, the others are background
    scan = cache_scan(
        volume, LabelVolume.like(volume, lab), tmp_path / "neg", scan_id="neg", crop=False
    )
    assert len(scan.calcium_index) == 0 and len(scan.background_index) > 0
    cached = np.asarray(scan.labels).reshape(-1)
    assert (cached[np.asarray(scan.background_index)] == 0).all()
    hot_ignored = (np.asarray(scan.hu) >= 130) & (np.asarray(scan.labels) == IGNORE)
    assert hot_ignored.any()  # the sternum and the vertebra near the heart
    assert not np.isin(np.flatnonzero(hot_ignored.ravel()), np.asarray(scan.candidate_index)).any()


def test_airway_wall_option_removes_a_tracheal_ring_not_a_vessel_wall_nearby():
    """A trachea (air tube) in the mediastinum with a bright arc 1.2-2 mm from its lumen (a
    cartilage ring), a wall plaque 3.3-4.3 mm from it (an aortic wall against the trachea: the
    realistic phantoms' aortic calcium lies 3.2 mm or more from mediastinal air) and an 'aortic'
    plaque 24 mm in front of it: with the default ``airway_wall_mm`` (2 mm) the ring goes and both
    plaques stay; with 0 (off) the ring is kept too, since it does not touch the air. Behind the
    tube, two plaques 1.7-2.4 mm from the lumen, mostly beyond 2 mm: a faint one (300 HU, a
    sharp kernel's overshoot) goes by the faint rule (``faint_wall_mm`` 2.5 mm, peak below
    600 HU), a dense one (800 HU) stays; with the faint rule off both stay."""
    volume, _ = drawn_chest()
    hu = volume.hu.copy()
    zz, yy, xx = np.ogrid[:60, :300, :400]
    r = np.hypot((yy - 150) * SPACING[1], (xx - 200) * SPACING[2])  # mm from the trachea's axis
    tube = (zz >= 36) & (zz < 50)
    hu[tube & (r <= 9.0)] = -1000.0  # the lumen, 9 mm in radius
    arc = tube & (r > 10.2) & (r <= 11.0) & (yy < 150)  # front half of a ring, 1.2-2 mm out
    hu[arc] = 300.0
    wall = (zz >= 40) & (zz < 44) & (r > 12.3) & (r <= 13.3) & (yy > 155)  # behind, 3.3-4.3 mm
    hu[wall] = 350.0
    plaque = (zz >= 40) & (zz < 43) & (np.hypot(yy - 120, xx - 200) <= 2)  # 24 mm off axis
    hu[plaque] = 400.0
    near = (zz >= 45) & (zz < 49) & (r > 10.7) & (r <= 11.4) & (yy > 155)  # 1.7-2.4 mm out
    faint, dense = near & (xx < 196), near & (xx > 204)
    hu[faint], hu[dense] = 300.0, 800.0
    labels = np.zeros(volume.shape, np.uint8)
    labels[arc | wall | plaque | faint | dense] = Label.TAC
    volume = CTVolume(hu, SPACING)
    off = find_chest_regions(volume, airway_wall_mm=0.0, faint_wall_mm=0.0)
    no_faint = find_chest_regions(volume, faint_wall_mm=0.0)
    on = find_chest_regions(volume)
    assert off.found and on.found and on.aorta[41, 120, 200] and on.aorta[40, 140, 200]
    assert on.aorta[wall | faint | dense].all()
    kept_off, _ = apply_safety_net(labels, off)
    kept_no_faint, _ = apply_safety_net(labels, no_faint)
    kept_on, removed = apply_safety_net(labels, on)
    assert (kept_off[arc | faint | dense] == Label.TAC).all()
    assert not kept_no_faint[arc].any() and (kept_no_faint[faint | dense] == Label.TAC).all()
    assert not kept_on[arc | faint].any() and removed["TAC"] == int(arc.sum() + faint.sum())
    assert (kept_on[plaque | wall | dense] == Label.TAC).all()


SHIPPED_CHEST = Path(__file__).resolve().parents[1] / "calcscore" / "datasets" / "data"
HEARTS = Path(__file__).resolve().parents[1] / "data" / "real_negatives" / "hearts.json"


def _heart_slices(regions) -> np.ndarray:
    return np.flatnonzero(regions.heart.any(axis=(1, 2)))


def test_heart_bottom_leaves_the_upper_abdomen_out_of_a_real_chest_cts_heart_region():
    """lungdx-a0001-b (real, 5 mm, shipped with calcscore): below the heart lie the liver and the
    stomach, between the lung bases. Without the heart-bottom rule the heart region reached the
    lungs' lowest slices (the liver at slice 5, row 200, column 200); with it the region
    starts between slice 1 and the heart's first slice less 15 mm (slice 16, drawn by eye in
    hearts.json), and every slice of the drawn heart keeps its region."""
    import json

    from calcscore.io import read_volume

    volume = read_volume(SHIPPED_CHEST / "lungdx-a0001-b.nii.gz")
    heart = json.loads(HEARTS.read_text())["lungdx-a0001-b"]
    old = find_chest_regions(volume, heart_bottom_margin_mm=None)
    new = find_chest_regions(volume)
    assert old.heart[5, 200, 200] and not new.heart[5, 200, 200]
    # below it aortic labels keep to the aorta's way down in front of the spine (by eye: slice 5,
    # row 215, column 258), not the whole abdomen between the lung bases
    below = _heart_slices(new)[0]
    assert new.aorta[5, 215, 258] and new.aorta[:below].sum() < 0.5 * old.aorta[:below].sum()
    assert _heart_slices(old)[0] <= 3
    assert 1 <= _heart_slices(new)[0] <= heart["z"][0] - 3
    box = np.s_[heart["z"][0] : heart["z"][1] + 1, slice(*heart["y"]), slice(*heart["x"])]
    np.testing.assert_array_equal(new.heart[box], old.heart[box])
    assert new.heart_top_z == old.heart_top_z


@pytest.mark.slow
def test_heart_bottom_spares_a_heart_only_scan_whose_lungs_look_like_bases(tmp_path):
    """An ECG-gated heart-only phantom (P0317 of the shipped recipe's cohort) as the training
    cache holds it (network grid, cropped to the body): its narrow field of view keeps the
    lungs' share of their hull small at the heart too, as at lung bases. The rule stays off (its
    lungs span less than 200 mm) and no reference coronary voxel leaves the heart region."""
    from calcscore.pipeline.cohort import cohort_scans
    from calcscore.scan_cache import cache_scan

    (scan,) = cohort_scans([317], seed=2026, size="gated", kernels=("sharp",), insert_fraction=0.2)
    cached = cache_scan(scan.volume, scan.labels, tmp_path / "s", scan_id="P0317")
    volume = CTVolume(np.asarray(cached.hu, np.float32), cached.spacing_mm)
    regions = find_chest_regions(volume)
    old = find_chest_regions(volume, heart_bottom_margin_mm=None)
    np.testing.assert_array_equal(regions.zone, old.zone)
    ref = np.isin(cached.labels, [int(v) for v in (Label.LAD, Label.LCX, Label.RCA)])
    assert ref.sum() > 100 and regions.heart[ref].all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "lungdx-a0001-l",
        "lidc-idri-0001",
        "qin-lsc-0028",
        "lidc-idri-0006",
        "qin-lsc-0064",
        "qin-lung-01-0007",
    ],
)
def test_heart_bottom_lies_below_every_drawn_heart_of_the_real_chest_cts(name):
    """The real scans beside the project (where present): the heart region still covers every
    slice of the heart drawn by eye in hearts.json, and ends below its first slice."""
    import json

    volume = _real(name)
    heart = json.loads(HEARTS.read_text())[name]
    regions = find_chest_regions(volume)
    slices = _heart_slices(regions)
    assert slices[0] < heart["z"][0]


def test_heart_region_stops_at_the_back_of_the_costal_cartilages():
    """lungdx-a0001-b (real, 5 mm, shipped): the heart's front touches the chest wall behind the
    costal cartilages and the sternum (by eye, slices 15-24, rows 28-50, columns 260-340; 921
    voxels of 130 HU or more in their front rows, < 39). With the heart region reaching 20 mm in
    front of the lungs' hull, 619 of them lay in it; they lie outside it now, and the heart's
    front wall (slice 19, rows 55-100, column 290) stays in."""
    from calcscore.io import read_volume

    volume = read_volume(SHIPPED_CHEST / "lungdx-a0001-b.nii.gz")
    wall = np.s_[15:25, :39, 260:340]
    hot = volume.hu[wall] >= 130
    assert hot.sum() > 500
    old = find_chest_regions(volume, anterior_mm=20.0)
    new = find_chest_regions(volume)
    assert (old.heart[wall] & hot).sum() > 0.5 * hot.sum()
    assert not (new.heart[wall] & hot).any()
    assert new.heart[19, 55:101, 290].all()


@pytest.mark.slow
def test_a_calcified_costal_cartilage_in_front_of_the_heart_is_outside_its_region():
    """lungdx-a0001-l (real, sharp kernel, 5 mm): the shipped model (m9) labels RCA on a calcified
    costal cartilage in front of the heart (slice 15, row 44, column 267; by eye in its lesion
    gallery and an overlay). It lies outside the heart region; the heart's front behind it
    (row 80) inside."""
    volume = _real("lungdx-a0001-l")
    assert volume.hu[15, 44, 267] >= 130
    regions = find_chest_regions(volume)
    assert not regions.heart[15, 44, 267] and regions.heart[15, 80, 267]


@pytest.mark.slow
def test_a_sharp_kernels_overshoot_on_the_aortic_wall_is_removed_as_a_faint_lesion():
    """lungdx-a0001-l (real, sharp kernel, 5 mm): m17 labelled these 21 voxels LAD, on the
    ascending aorta's wall against the lung (slices 34-38; by eye in its lesion gallery: the
    bright edge a sharp kernel draws along the lung, none on the soft reconstruction of the same
    scan), CAC 65, category II. Peak below 600 HU, 62 % within 2.5 mm of the lung's air, 38 %
    within 2 mm: the faint rule removes it, the 2 mm airway-wall rule alone keeps it."""
    volume = _real("lungdx-a0001-l")
    lesion = np.zeros(volume.shape, bool)
    lesion[tuple(np.array(M17_AORTIC_WALL_LAD).T)] = True
    assert lesion.sum() == 21 and volume.hu[lesion].min() >= 130
    assert volume.hu[lesion].max() < 600
    labels = np.where(lesion, np.uint8(Label.LAD), np.uint8(0))
    # the heart's top as it was (40 mm above the widest rows): slices 37-38 now lie above it
    top = {"heart_top_margin_mm": 40.0}
    kept_2mm, _ = apply_safety_net(labels, find_chest_regions(volume, faint_wall_mm=0.0, **top))
    kept, removed = apply_safety_net(labels, find_chest_regions(volume, **top))
    assert (kept_2mm[lesion] == Label.LAD).all()
    assert not kept.any() and removed == {"LAD": 21}


#: the voxels (z, y, x) of m17's false LAD lesion on lungdx-a0001-l, from its label map
M17_AORTIC_WALL_LAD = [
    (34, 106, 256), (34, 107, 253), (34, 107, 254), (34, 109, 251), (35, 106, 257),
    (35, 107, 252), (35, 107, 256), (35, 108, 253), (35, 108, 254), (35, 108, 256),
    (35, 109, 252), (36, 107, 253), (36, 107, 256), (36, 107, 257), (36, 108, 254),
    (37, 107, 255), (37, 108, 255), (37, 108, 256), (37, 109, 252), (37, 109, 253),
    (38, 107, 256),
]  # fmt: skip


def test_heart_bottom_waits_for_the_front_half_of_the_lungs_to_widen():
    """lungdx-a0001-b (real, 5 mm, shipped): by eye, slices 8 and 9 hold the liver and the
    stomach, with lung only in thin recesses at the sides and the back; the heart's lowest part
    shows beside the liver's dome from slice 12 or 13. The whole lungs reach half their median
    share of the hull at slice 11 (the heart region then started at slice 8), their front half
    at slice 13: the region starts 15 mm below that, at slice 10."""
    from calcscore.io import read_volume

    volume = read_volume(SHIPPED_CHEST / "lungdx-a0001-b.nii.gz")
    regions = find_chest_regions(volume)
    assert _heart_slices(regions)[0] == 10
    assert not regions.heart[:10].any()


@pytest.mark.slow
def test_the_heart_region_ends_above_the_left_main_and_below_calcified_nodes():
    """The shipped real scan (lungdx-a0001-b, 5 mm): the heart region reaches the aortic root
    with the left main (slices 29-31 by eye) and ends below calcified nodes in the mediastinal
    fat above it (benchmarks/mediastinal_nodes.py's sites centred from slice 37 up, so that no
    voxel of theirs reaches slice 35; labelled LAD: all removed), while synthetic coronary lesions in the epicardial fat of the drawn heart
    (benchmarks/hybrid_lesions.py's, 12 per seed, 3 seeds) keep every voxel."""
    import importlib.util
    import json

    from calcscore.datasets import examples
    from calcscore.realism.hybrid import hybrid_scan, insert_lesions

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mediastinal_nodes.py"
    spec = importlib.util.spec_from_file_location("mediastinal_nodes", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    scan = examples.chest_ct()
    heart = json.loads(HEARTS.read_text())["lungdx-a0001-b"]
    for seed in range(3):
        nodes = bench.nodes(scan, heart["z"][1], 8, np.random.default_rng(seed))
        nodes = [n for n in nodes if n.centre_mm[0] / scan.spacing_mm[0] >= 37]
        assert len(nodes) >= 3
        hybrid, coronary, _, _ = hybrid_scan(
            scan, heart, 12, np.random.default_rng([2026, seed, 0])
        )
        volume, node_ref = insert_lesions(hybrid, nodes)
        regions = find_chest_regions(volume)
        assert 31 <= regions.heart_top_z < 36
        kept, _ = apply_safety_net(np.where(coronary > 0, Label.LAD, 0).astype(np.uint8), regions)
        assert (kept == Label.LAD).sum() == (coronary > 0).sum() > 0
        kept, removed = apply_safety_net(
            np.where(node_ref > 0, Label.LAD, 0).astype(np.uint8), regions
        )
        assert not kept.any() and removed["LAD"] == (node_ref > 0).sum()
