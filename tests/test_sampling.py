"""Sampling: the disk cache, on-device patch cutting and balanced minibatches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calcscore.labels import Label
from calcscore.sampling import (
    PatchSampler,
    VolumeStore,
    VoxelPool,
    cache_scan,
    calcium_pools,
    load_cached,
)
from calcscore.volume import CTVolume, LabelVolume


def _volume(rng, shape=(9, 13, 11)):
    rng = np.random.default_rng(rng)
    hu = rng.integers(-1000, 1500, size=shape).astype(np.float32)
    lab = np.where(rng.random(shape) < 0.2, rng.integers(1, 7, shape), 0).astype(np.uint8)
    vol = CTVolume(hu, (1.5, 0.66, 0.66))
    return vol, LabelVolume.like(vol, lab)


def _expected_patches(hu: np.ndarray, zyx, size: int) -> np.ndarray:
    """Reference: pad with -1000 HU and slice with numpy."""
    r = size // 2
    pad = np.pad(np.clip(np.round(hu), -1000, 3000), r, constant_values=-1000)
    z, y, x = (int(v) + r for v in zyx)
    ax = pad[z, y - r : y + r + 1, x - r : x + r + 1]
    sa = pad[z - r : z + r + 1, y - r : y + r + 1, x]
    co = pad[z - r : z + r + 1, y, x - r : x + r + 1]
    return (np.stack([ax, sa, co]) - 130.0) / 1130.0


def test_cache_round_trip_and_candidate_pools(tmp_path):
    vol, lab = _volume(0)
    scan = cache_scan(
        vol, lab, tmp_path / "a", scan_id="a", participant_id="p1", on_network_grid=True, crop=False
    )
    again = load_cached(tmp_path / "a")
    assert again == scan and scan.participant_id == "p1" and scan.shape == vol.shape
    assert isinstance(scan.hu, np.memmap) and scan.hu.dtype == np.int16
    cand = vol.hu >= 130
    np.testing.assert_array_equal(scan.labels, np.where(cand, lab.labels, 0))
    np.testing.assert_array_equal(np.sort(scan.candidate_index), np.flatnonzero(cand))
    assert np.all(scan.labels.reshape(-1)[scan.calcium_index] > 0)
    assert np.all(scan.labels.reshape(-1)[scan.background_index] == 0)
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["n_calcium"] == len(scan.calcium_index)
    assert not list(tmp_path.glob(".tmp-*"))


def test_cache_crops_to_the_body_and_resamples_to_the_network_grid(tmp_path):
    hu = np.full((10, 40, 40), -1000.0, np.float32)
    hu[2:8, 10:30, 12:28] = 40.0
    hu[5, 20, 20] = 500.0
    lab = np.zeros(hu.shape, np.uint8)
    lab[5, 20, 20] = Label.RCA
    vol = CTVolume(hu, (1.5, 0.66, 0.66))
    scan = cache_scan(
        vol, LabelVolume.like(vol, lab), tmp_path / "b", scan_id="b", on_network_grid=True
    )
    assert scan.crop_offset == (0, 6, 8) and scan.shape == (10, 28, 24)
    assert scan.labels[5, 14, 12] == Label.RCA and scan.hu[5, 14, 12] == 500
    # on the scan's own grid: 1 mm slices of 1 mm become 3 mm slabs at 1.5 mm, 0.66 mm in-plane
    own = CTVolume(np.zeros((13, 20, 20), np.float32), (1.0, 0.8, 0.8))
    grid = cache_scan(own, None, tmp_path / "c", scan_id="c", crop=False)
    assert grid.spacing_mm == (1.5, 0.66, 0.66) and grid.shape[0] == 9
    assert len(grid.calcium_index) == 0


def test_patches_match_numpy_slicing_with_padding(tmp_path):
    a = cache_scan(*_volume(1), tmp_path / "a", scan_id="a", on_network_grid=True, crop=False)
    b = cache_scan(
        *_volume(2, (7, 10, 12)), tmp_path / "b", scan_id="b", on_network_grid=True, crop=False
    )
    store = VolumeStore([a, b])
    centres = [(1, (0, 0, 0)), (0, (8, 12, 10)), (1, (6, 9, 11)), (0, (4, 5, 6)), (1, (3, 1, 7))]
    scan = torch.tensor([s for s, _ in centres])
    zyx = torch.tensor([c for _, c in centres])
    got = store.patches(scan, zyx, 9).numpy()
    labels = store.label_patches(scan, zyx, 3).numpy()
    centre = store.centre_labels(scan, zyx).numpy()
    for i, (s, c) in enumerate(centres):
        src = (a, b)[s]
        np.testing.assert_allclose(
            got[i], _expected_patches(np.asarray(src.hu, float), c, 9), atol=1e-6
        )
        assert centre[i] == src.labels[c]
        lab_pad = np.pad(src.labels, 1)
        z, y, x = (v + 1 for v in c)
        np.testing.assert_array_equal(labels[i, 0], lab_pad[z, y - 1 : y + 2, x - 1 : x + 2])
        np.testing.assert_array_equal(labels[i, 1], lab_pad[z - 1 : z + 2, y - 1 : y + 2, x])
        np.testing.assert_array_equal(labels[i, 2], lab_pad[z - 1 : z + 2, y, x - 1 : x + 2])
    with pytest.raises(ValueError, match="odd"):
        store.patches(scan, zyx, 8)


def test_balanced_batches_and_reproducible_state(tmp_path):
    scans = [
        cache_scan(
            *_volume(i), tmp_path / f"s{i}", scan_id=f"s{i}", on_network_grid=True, crop=False
        )
        for i in range(3)
    ]
    store = VolumeStore(scans)
    pos, neg = calcium_pools(store)
    assert len(pos) == sum(len(s.calcium_index) for s in scans)
    sampler = PatchSampler(store, pos, neg, patch_size=7, label_size=3, rng=5)
    batch = sampler.sample(64)
    assert batch.x.shape == (64, 3, 7, 7) and batch.aux_target.shape == (64, 3, 3, 3)
    assert torch.all(batch.target[:32] > 0) and torch.all(batch.target[32:] == 0)
    assert torch.all(batch.x[:, :, 3, 3] >= 0)  # every centre is a candidate (>= 130 HU)
    assert set(batch.scan.tolist()) == {0, 1, 2}
    state = sampler.state_dict()
    nxt = sampler.sample(16)
    sampler.load_state_dict(state)
    again = sampler.sample(16)
    assert torch.equal(nxt.x, again.x) and torch.equal(nxt.zyx, again.zyx)
    same_seed = PatchSampler(store, pos, neg, patch_size=7, rng=5).sample(64)
    assert torch.equal(same_seed.x, batch.x) and same_seed.aux_target is None
    with pytest.raises(ValueError, match="positive voxel pool is empty"):
        PatchSampler(store, VoxelPool.concat([], []), neg, patch_size=7)


def test_patch_cutting_is_fast(tmp_path):
    """Vectorised gathering: a 64-patch batch of the paper's 155 px patches in well under 1 s."""
    torch.set_num_threads(1)
    vol, lab = _volume(3, (40, 120, 120))
    scan = cache_scan(vol, lab, tmp_path / "a", scan_id="a", on_network_grid=True, crop=False)
    store = VolumeStore([scan])
    sampler = PatchSampler(store, *calcium_pools(store), patch_size=155, label_size=25, rng=0)
    sampler.sample(64)
    import time

    t = time.perf_counter()
    for _ in range(3):
        sampler.sample(64)
    assert (time.perf_counter() - t) / 3 < 1.0


def test_orientation_offsets_follow_the_documented_convention():
    from calcscore.sampling import orientation_offsets

    oz, oy, ox = orientation_offsets(5)
    assert oz.shape == oy.shape == ox.shape == (3, 5, 5)
    u, v = 0, 4  # patch[u, v] with offsets (u - 2, v - 2) = (-2, 2)
    assert (oz[0, u, v], oy[0, u, v], ox[0, u, v]) == (0, -2, 2)  # axial: volume[z, y+u, x+v]
    assert (oz[1, u, v], oy[1, u, v], ox[1, u, v]) == (-2, 2, 0)  # sagittal: volume[z+u, y+v, x]
    assert (oz[2, u, v], oy[2, u, v], ox[2, u, v]) == (-2, 0, 2)  # coronal: volume[z+u, y, x+v]


def test_cnn2_positives_repeat_as_often_as_their_scans_weight(tmp_path):
    """CNN2's positives (CNN1's true positives) of an inserted-lesion scan are drawn ``weight``
    times as often, its negatives (CNN1's false positives) once, as in CNN1's pools."""
    from calcscore.training.data import cnn2_pools

    scans = []
    for k, weight in enumerate((1, 3)):
        vol, lab = _volume(k)
        scans.append(
            cache_scan(
                vol,
                lab,
                tmp_path / f"s{k}",
                scan_id=f"s{k}",
                on_network_grid=True,
                crop=False,
                weight=weight,
            )
        )
    # CNN1's calls, as its cache file holds them: every candidate called calcium
    called = {f"scan_{s.scan_id}": np.sort(s.candidate_index) for s in scans}
    np.savez(tmp_path / "calls.npz", digest=np.array("d"), **called)
    pos, neg = cnn2_pools(
        VolumeStore(scans), None, cache_file=tmp_path / "calls.npz", cnn1_digest="d"
    )
    n_cal = [len(s.calcium_index) for s in scans]
    assert len(pos) == n_cal[0] + 3 * n_cal[1]
    assert len(neg) == sum(len(s.background_index) for s in scans)
    assert np.bincount(np.asarray(pos.scan), minlength=2).tolist() == [n_cal[0], 3 * n_cal[1]]


def test_z_limits_cut_the_views_as_a_shorter_scan_would(tmp_path):
    """A patch cut with z limits equals the patch of the scan cut to those slices (numpy
    reference), in the image and in the labels; the axial view is untouched."""
    vol, lab = _volume(3, (15, 13, 11))
    scan = cache_scan(vol, lab, tmp_path / "a", scan_id="a", on_network_grid=True, crop=False)
    store = VolumeStore([scan])
    centre, (z0, z1) = (7, 6, 5), (5, 9)
    got = store.patches(
        torch.tensor([0]), torch.tensor([centre]), 9, z_lim=torch.tensor([[z0, z1]])
    )[0].numpy()
    short = np.asarray(scan.hu, float)[z0 : z1 + 1]
    want = _expected_patches(short, (centre[0] - z0, centre[1], centre[2]), 9)
    np.testing.assert_allclose(got, want, atol=1e-6)
    labels = store.label_patches(
        torch.tensor([0]), torch.tensor([centre]), 9, torch.tensor([[z0, z1]])
    )[0].numpy()
    lab_pad = np.pad(np.asarray(scan.labels)[z0 : z1 + 1], 4)
    z, y, x = centre[0] - z0 + 4, centre[1] + 4, centre[2] + 4
    np.testing.assert_array_equal(labels[1], lab_pad[z - 4 : z + 5, y - 4 : y + 5, x])
    np.testing.assert_array_equal(labels[0], lab_pad[z, y - 4 : y + 5, x - 4 : x + 5])


def test_z_crop_cuts_a_share_of_the_training_patches_within_the_drawn_ends(tmp_path):
    """``z_crop = 1``: every patch's ends lie within Z_CROP_MM of its centre (in slices of the
    scan's spacing) and its far slices read as padding; ``z_crop = 0`` draws exactly the batches
    of a sampler without it; a half cuts about half."""
    from calcscore.sampling import Z_CROP_MM

    vol = CTVolume(np.full((80, 9, 9), 400.0, np.float32), (3.0, 0.66, 0.66))
    lab = LabelVolume.like(
        vol,
        np.where(np.arange(80)[:, None, None] % 2, 1, 0).astype(np.uint8)
        * np.ones((1, 9, 9), np.uint8),
    )
    scan = cache_scan(vol, lab, tmp_path / "z", scan_id="z", on_network_grid=True, crop=False)
    store = VolumeStore([scan])
    pos, neg = calcium_pools(store)
    cut = PatchSampler(store, pos, neg, patch_size=101, rng=1, z_crop=1.0)
    scan_idx, flat = cut.draw(200)
    lim = cut.z_limits(scan_idx, flat)
    z = store.unravel(scan_idx, flat)[:, 0]
    lo, hi = (np.round(np.array(Z_CROP_MM) / 3.0)).astype(int)
    assert np.all((z - lim[:, 0] >= lo) & (z - lim[:, 0] <= hi))
    assert np.all((lim[:, 1] - z >= lo) & (lim[:, 1] - z <= hi))
    batch = cut.sample(64)
    # the sagittal view's column through the centre: 400 HU inside the limits, padding outside
    col = batch.x[:, 1, :, 50].numpy() * 1130.0 + 130.0
    pad = np.isclose(col, -1000.0)
    assert pad.any(axis=1).mean() > 0.5  # most patches (101 slices of 3 mm) meet an end
    assert np.allclose(col[~pad], 400.0)
    plain = PatchSampler(store, pos, neg, patch_size=101, rng=7)
    zero = PatchSampler(store, pos, neg, patch_size=101, rng=7, z_crop=0.0)
    assert torch.equal(plain.sample(32).x, zero.sample(32).x)
    half = PatchSampler(store, pos, neg, patch_size=101, rng=2, z_crop=0.5)
    share = (half.z_limits(*half.draw(2000))[:, 0] > -(2**31) + 1).mean()
    assert 0.45 < share < 0.55
    near = PatchSampler(store, pos, neg, patch_size=101, rng=3, z_crop=1.0, z_crop_mm=(6.0, 12.0))
    scan_idx, flat = near.draw(500)
    z = store.unravel(scan_idx, flat)[:, 0]
    ends = np.abs(near.z_limits(scan_idx, flat) - z[:, None])  # 2 to 4 slices of 3 mm
    assert ends.min() == 2 and ends.max() == 4
