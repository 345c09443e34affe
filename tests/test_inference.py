"""Whole-scan inference equals patch-by-patch classification with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calcscore.inference import (
    CNN2_BATCH_CPU,
    InferenceOptions,
    Model,
    body_mask,
    cnn2_batch,
    segment,
)
from calcscore.networks import CNN1, CNN2
from calcscore.preprocess import normalise_hu, to_network_grid
from calcscore.sampling import VolumeStore, cache_scan
from calcscore.volume import CTMeta, CTVolume


def _scan(seed: int = 0) -> CTVolume:
    """A small 'patient': a water cylinder with bright blobs, in air, 0.8 mm pixels, 2 mm slices."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = 24, 64, 64
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    hu = np.full((nz, ny, nx), -1000.0)
    body = (y - 32) ** 2 + (x - 32) ** 2 < 26**2
    hu[body] = 40.0
    for _ in range(12):
        c = rng.uniform([2, 12, 12], [22, 52, 52])
        rad = rng.uniform(0.8, 1.6)
        blob = ((z - c[0]) * 2.0) ** 2 + ((y - c[1]) * 0.8) ** 2 + ((x - c[2]) * 0.8) ** 2 < (
            rad * 1.6
        ) ** 2
        hu[blob] = rng.uniform(150, 900)
    hu += rng.normal(0, 25, hu.shape)
    return CTVolume(hu, (2.0, 0.8, 0.8), meta=CTMeta(slice_thickness_mm=2.0))


def _patches(norm_padded: np.ndarray, zyx: np.ndarray, size: int, pad: int) -> torch.Tensor:
    """Independent numpy reference of the documented patch convention (sampling.py)."""
    h = size // 2
    out = np.empty((len(zyx), 3, size, size), np.float32)
    for i, (z, y, x) in enumerate(zyx + pad):
        out[i, 0] = norm_padded[z, y - h : y + h + 1, x - h : x + h + 1]
        out[i, 1] = norm_padded[z - h : z + h + 1, y - h : y + h + 1, x]
        out[i, 2] = norm_padded[z - h : z + h + 1, y, x - h : x + h + 1]
    return torch.from_numpy(out)


def _models(aux: bool = True):
    torch.manual_seed(0)
    cnn1 = CNN1(width=6, head_width=8, max_dilation=8, aux=aux).eval()
    cnn2 = CNN2(width_scale=0.25, dense_width=8).eval()
    with torch.no_grad():  # spread the random classifiers' outputs over several classes
        cnn1.head_layers[-1].weight.mul_(300.0)
        cnn1.head_layers[-1].bias.zero_()
        # and give batch norm non-trivial running statistics
        for m in cnn2.modules():
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return cnn1, cnn2


def _centre_head(cnn1: CNN1, x: torch.Tensor) -> None:
    """Centre the random head's last layer on these patches, so that its argmax varies."""
    c = cnn1.output_size(x.shape[-1]) // 2
    feats = torch.cat(
        [n.features(x[:, i : i + 1])[:, :, c, c] for i, n in enumerate(cnn1.subnets)], 1
    )
    hidden = cnn1.head_layers[:-1](feats)
    last = cnn1.head_layers[-1]
    last.bias.copy_(-(hidden @ last.weight.T).mean(0))


@pytest.mark.parametrize("aux", [True, False])
def test_fully_convolutional_equals_patch_by_patch(aux):
    torch.set_num_threads(1)
    volume = _scan()
    cnn1, cnn2 = _models(aux)
    net = to_network_grid(volume)
    cand = (net.hu >= 130) & body_mask(net)
    zyx = np.argwhere(cand)
    pad = 40
    norm = np.pad(normalise_hu(net.hu), pad, constant_values=normalise_hu(np.array(-1000.0)))
    with torch.no_grad():
        _centre_head(cnn1, _patches(norm, zyx[::7], 35, pad))
        p1 = torch.cat(
            [
                cnn1.predict_proba(_patches(norm, zyx[i : i + 256], 35, pad))
                for i in range(0, len(zyx), 256)
            ]
        )
        label1 = p1.argmax(1).numpy()
        hit = np.flatnonzero(label1 > 0)
        x2 = _patches(norm, zyx[hit], 65, pad)
        cnn2.classifier[-1].bias.sub_(cnn2(x2).median(0).values)  # keep about half
        seg = segment(
            volume,
            Model(cnn1, cnn2),
            InferenceOptions(batch_slices=5, batch_voxels=300, batch_cnn2=70),
        )
        keep = cnn2.predict_proba(x2).numpy() >= 0.5
    final = label1.copy()
    final[hit[~keep]] = 0
    assert seg.n_candidates == len(zyx) > 100
    got1 = seg.cnn1_labels_network.labels[tuple(zyx.T)]
    got = seg.labels_network.labels[tuple(zyx.T)]
    assert len(np.unique(label1)) > 2 and 0 < keep.sum() < len(
        keep
    )  # a real test, not all one class
    np.testing.assert_array_equal(got1, label1)
    np.testing.assert_array_equal(got, final)
    assert not seg.labels_network.labels[~cand].any()


def test_channels_last_and_bf16_agree_with_fp32():
    torch.set_num_threads(1)
    volume = _scan(1)
    cnn1, cnn2 = _models()
    ref = segment(volume, Model(cnn1, cnn2))
    cl = segment(volume, Model(cnn1, cnn2), InferenceOptions(channels_last=True))
    np.testing.assert_array_equal(cl.labels.labels, ref.labels.labels)
    bf = segment(volume, Model(cnn1, cnn2), InferenceOptions(bf16=True))
    assert (bf.cnn1_labels_network.labels == ref.cnn1_labels_network.labels).mean() > 0.95


@pytest.mark.slow
def test_cnn2_batch_size_changes_nothing_but_speed():
    torch.set_num_threads(1)
    volume = _scan(3)
    cnn1, cnn2 = _models()
    model = Model(cnn1, cnn2)
    # a threshold that cuts both ways: midway between CNN2's two middle probabilities
    p = np.sort(segment(volume, model).cnn2_proba)
    thr = float(p[len(p) // 2 - 1] + p[len(p) // 2]) / 2
    default = segment(volume, model, InferenceOptions(cnn2_threshold=thr))  # CNN2_BATCH_CPU a batch
    assert cnn2_batch(InferenceOptions(), torch.device("cpu")) == CNN2_BATCH_CPU
    assert len(default.cnn2_proba) > 2 * CNN2_BATCH_CPU  # several batches, and a last partial one
    for batch in (7, 512):
        other = segment(volume, model, InferenceOptions(batch_cnn2=batch, cnn2_threshold=thr))
        np.testing.assert_array_equal(other.cnn2_zyx, default.cnn2_zyx)
        np.testing.assert_allclose(other.cnn2_proba, default.cnn2_proba, atol=1e-5)
        np.testing.assert_array_equal(other.labels.labels, default.labels.labels)
    kept = default.labels_network.labels[tuple(default.cnn2_zyx.T)] > 0
    assert 0 < kept.sum() < len(kept)
    with pytest.raises(ValueError, match="batch_cnn2"):
        segment(volume, model, InferenceOptions(batch_cnn2=0))


def test_labels_come_back_on_the_original_grid_only_on_calcium_voxels():
    volume = _scan(2)
    cnn1, cnn2 = _models()
    seg = segment(volume, Model(cnn1, None))
    assert seg.labels.same_geometry(volume)
    assert not seg.labels.labels[volume.hu < 130].any()
    assert seg.labels.labels.any()


def test_cnn1_labels_on_the_original_grid_are_what_cnn2_filtered():
    torch.set_num_threads(1)
    volume = _scan(2)
    cnn1, cnn2 = _models()
    alone = segment(volume, Model(cnn1, None))
    np.testing.assert_array_equal(alone.cnn1_labels(volume).labels, alone.labels.labels)
    zyx = np.argwhere(alone.labels_network.labels > 0)
    pad = 40
    norm = np.pad(
        normalise_hu(to_network_grid(volume).hu),
        pad,
        constant_values=normalise_hu(np.array(-1000.0)),
    )
    with torch.no_grad():  # a random CNN2 that keeps about half of CNN1's calcium
        cnn2.classifier[-1].bias.sub_(cnn2(_patches(norm, zyx, 65, pad)).median(0).values)
    seg = segment(volume, Model(cnn1, cnn2))
    before, after = seg.cnn1_labels(volume).labels, seg.labels.labels
    np.testing.assert_array_equal(before, alone.labels.labels)  # CNN1 does not depend on CNN2
    kept = after > 0
    np.testing.assert_array_equal(after[kept], before[kept])  # survivors keep CNN1's label
    assert 0 < kept.sum() < (before > 0).sum()  # CNN2 removed some, not all


def test_sampler_patches_follow_the_same_convention(tmp_path):
    """The training sampler cuts the patches the inference reference above cuts."""
    rng = np.random.default_rng(5)
    hu = rng.integers(-1000, 1500, size=(20, 30, 40)).astype(np.float32)
    net = CTVolume(hu, (1.5, 0.66, 0.66))
    cached = cache_scan(net, None, tmp_path / "c", scan_id="s", on_network_grid=True, crop=False)
    store = VolumeStore([cached])
    zyx = np.array([[0, 0, 0], [10, 15, 20], [19, 29, 39], [3, 27, 5]])
    got = store.patches(torch.zeros(4, dtype=torch.long), torch.from_numpy(zyx), 21)
    pad = 12
    norm = np.pad(normalise_hu(hu), pad, constant_values=normalise_hu(np.array(-1000.0)))
    np.testing.assert_allclose(got.numpy(), _patches(norm, zyx, 21, pad).numpy(), atol=1e-6)


def test_empty_scan_gives_no_labels():
    volume = CTVolume(np.full((8, 20, 20), -1000.0), (2.0, 0.8, 0.8))
    cnn1, cnn2 = _models()
    seg = segment(volume, Model(cnn1, cnn2))
    assert seg.n_candidates == 0 and not seg.labels.labels.any()


def test_precision_choice():
    from calcscore.inference import bf16_supported, resolve_precision

    assert resolve_precision("fp32", "cpu") is False
    assert resolve_precision("bf16", "cpu") is True
    assert resolve_precision("auto", "cpu") is bf16_supported("cpu")
    if not torch.cuda.is_available():
        assert bf16_supported("cuda") is False
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_fill_rim_takes_the_majority_label_of_touching_voxels_one_layer_deep():
    from calcscore.inference import fill_rim

    lab = np.zeros((5, 9, 9), np.uint8)
    lab[2, 4, 2:4] = 4  # two TAC voxels
    lab[2, 4, 6] = 6  # one MV voxel
    fillable = np.zeros(lab.shape, bool)
    fillable[2, 4, 4] = True  # touches TAC (1 voxel: 4, 3) and nothing else
    fillable[2, 4, 5] = True  # touches TAC? no: (4,4) is background; touches MV (4,6) only
    fillable[2, 3, 3] = True  # touches both TAC voxels -> TAC
    fillable[2, 0, 0] = True  # touches nothing
    fillable[0, 4, 2] = True  # two slices away: touches nothing
    fillable[2, 4, 3] = True  # already labelled: stays TAC
    out = fill_rim(lab, fillable)
    assert out[2, 4, 4] == 4 and out[2, 4, 5] == 6 and out[2, 3, 3] == 4
    assert out[2, 0, 0] == 0 and out[0, 4, 2] == 0
    np.testing.assert_array_equal(out[lab > 0], lab[lab > 0])
    assert (out != lab).sum() == 3  # one layer only: a filled voxel does not fill its neighbours
    assert not lab[2, 4, 4]  # the input is not changed

    tie = np.zeros((1, 1, 3), np.uint8)
    tie[0, 0, 0], tie[0, 0, 2] = 5, 1
    assert fill_rim(tie, np.ones(tie.shape, bool))[0, 0, 1] == 1  # a tie goes to the lower label


def test_noise_estimate_of_white_noise():
    from calcscore.inference import estimate_noise_sd, rim_threshold_hu, soft_tissue_hu

    rng = np.random.default_rng(3)
    hu = 40.0 + rng.normal(0, 30.0, (40, 64, 64))
    hu[:, :, :8] = -1000.0  # air is left out
    hu[:, 30:34, 30:34] = 800.0  # so is calcium
    volume = CTVolume(hu, (1.0, 0.7, 0.7))
    assert estimate_noise_sd(volume) == pytest.approx(30.0, rel=0.05)
    assert soft_tissue_hu(volume) == pytest.approx(40.0, abs=2.0)
    assert rim_threshold_hu(volume, 4.0) == pytest.approx(40.0 + 4.0 * 30.0, abs=6.0)
    assert rim_threshold_hu(volume, 1.0) == 130.0  # never below the calcium threshold
    assert rim_threshold_hu(CTVolume(np.full((4, 8, 8), -1000.0), (1.0, 0.7, 0.7)), 4.0) == 130.0


def test_rim_fill_recovers_the_rim_the_slab_average_loses_and_nothing_else():
    """A noiseless blurred plaque on 1 mm slices: labelled perfectly on the network grid, the
    nearest-neighbour mapping misses original voxels >= 130 HU whose 3 mm slab fell below 130; the
    rim fill gives them back and labels no voxel outside the plaque's >= 130 HU region."""
    from scipy import ndimage as ndi

    from calcscore.inference import _to_original_grid
    from calcscore.volume import LabelVolume

    nz, ny, nx = 40, 48, 48
    z, y, x = np.meshgrid(
        np.arange(nz) * 1.0, np.arange(ny) * 0.6, np.arange(nx) * 0.6, indexing="ij"
    )
    hu = np.full((nz, ny, nx), 40.0)
    hu[((z - 20) / 1.5) ** 2 + ((y - 14) / 4.0) ** 2 + ((x - 14) / 4.0) ** 2 < 1.0] = 450.0
    hu = ndi.gaussian_filter(hu, (0.8, 1.3, 1.3))
    volume = CTVolume(hu, (1.0, 0.6, 0.6), meta=CTMeta(slice_thickness_mm=1.0))
    truth = hu >= 130
    net = to_network_grid(volume)
    cand = net.hu >= 130
    perfect = LabelVolume.like(net, np.where(cand, 4, 0).astype(np.uint8))
    plain = _to_original_grid(perfect, volume, False).labels
    filled = _to_original_grid(perfect, volume, False, cand, 130.0).labels
    lost = truth & (plain == 0)
    assert lost.sum() > 0.05 * truth.sum()  # the slab average loses part of the plaque
    assert not (plain[~truth]).any() and not (filled[~truth]).any()
    assert (filled[truth] == 4).sum() > (plain[truth] == 4).sum() + 0.5 * lost.sum()
    np.testing.assert_array_equal(filled[plain > 0], plain[plain > 0])


def test_segment_rim_fill_only_adds_unseen_voxels_above_its_threshold():
    torch.set_num_threads(1)
    volume = _scan(2)
    cnn1, _ = _models()
    model = Model(cnn1, None)
    plain = segment(volume, model, InferenceOptions(rim_fill=False))
    seg = segment(volume, model, InferenceOptions(rim_sigmas=5.0))
    assert plain.rim_min_hu is None
    assert seg.rim_min_hu == pytest.approx(40 + 5.0 * 25, abs=8)  # 40 HU water, noise SD 25 HU
    added = (seg.labels.labels > 0) & (plain.labels.labels == 0)
    np.testing.assert_array_equal(
        seg.labels.labels[plain.labels.labels > 0], plain.labels.labels[plain.labels.labels > 0]
    )
    assert added.any() and (volume.hu[added] >= seg.rim_min_hu).all()
    np.testing.assert_array_equal(seg.cnn1_labels(volume).labels, seg.labels.labels)  # no CNN2


@pytest.mark.parametrize("n", [1, 2, 7, 10, 1001])
def test_median_on_tensors_is_numpys_median(n):
    from calcscore.inference import _median

    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    for by_sort in (False, True):  # selection (the CPU's way) and sorting (the GPU's)
        assert _median(torch.from_numpy(x), by_sort=by_sort) == pytest.approx(
            float(np.median(x.astype(np.float64))), abs=0
        )
        assert _median(torch.tensor([4.0, 1.0, 3.0, 2.0]), by_sort=by_sort) == 2.5


def test_network_grid_on_a_tensor_equals_the_numpy_preprocessing():
    """segment() preprocesses on its device (network_grid_tensor); the training cache uses
    to_network_grid: the same grid and the same HU."""
    from calcscore.preprocess import network_grid_tensor

    rng = np.random.default_rng(3)
    vol = CTVolume(
        rng.normal(0, 200, (23, 40, 37)).astype(np.float32),
        (1.0, 0.7, 0.8),
        (5.0, -3.0, 2.0),
        meta=CTMeta(slice_thickness_mm=1.25),
    )
    ref = to_network_grid(vol)
    hu, grid = network_grid_tensor(vol, torch.from_numpy(vol.hu))
    assert grid.same_geometry(ref) and tuple(hu.shape) == ref.shape
    np.testing.assert_array_equal(hu.numpy(), ref.hu)


def test_segment_takes_flipped_and_read_only_views():
    """torch cannot hold negative strides: the HU of a flipped view (or a read-only array, e.g.
    a memory map) are copied on the way to the device; the labels equal those of a plain copy."""
    base = _scan(2)
    flipped = base.with_array(base.hu[:, ::-1])
    plain = base.with_array(np.ascontiguousarray(base.hu[:, ::-1]))
    ro = plain.hu.copy()
    ro.flags.writeable = False
    cnn1, cnn2 = _models()
    model = Model(cnn1, cnn2, rim_fill=True)
    ref = segment(plain, model).labels.labels
    assert ref.any()
    np.testing.assert_array_equal(segment(flipped, model).labels.labels, ref)
    np.testing.assert_array_equal(segment(plain.with_array(ro), model).labels.labels, ref)


def test_segment_leaves_the_callers_networks_as_they_are():
    """segment works on eval-mode copies: networks in training mode (e.g. validated in the middle
    of training) stay in training mode, keep their weights and give the eval-mode labels."""
    torch.set_num_threads(1)
    volume = _scan(3)
    cnn1, cnn2 = _models()
    ref = segment(volume, Model(cnn1, cnn2))
    cnn1.train(), cnn2.train()
    before = {k: v.clone() for k, v in cnn2.state_dict().items()}
    seg = segment(volume, Model(cnn1, cnn2), InferenceOptions(channels_last=True))
    assert cnn1.training and cnn2.training
    assert all(m.training for m in cnn2.modules())
    for k, v in cnn2.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert v.is_contiguous(), k  # the channels-last copy did not change the caller's layout
    np.testing.assert_array_equal(seg.labels.labels, ref.labels.labels)
