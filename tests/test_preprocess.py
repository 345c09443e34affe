"""Preprocessing against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from calcscore.preprocess import (
    ThickSliceWarning,
    candidate_mask,
    interpolation_weights,
    labels_to_grid,
    normalise_hu,
    reformat_slabs,
    resample_inplane,
    to_network_grid,
)
from calcscore.volume import CTMeta, CTVolume, LabelVolume


def _ramp(spacing_z: float, thickness: float, n: int = 40) -> CTVolume:
    z = np.arange(n) * spacing_z
    hu = np.broadcast_to((5.0 * z + 7.0)[:, None, None], (n, 4, 4)).copy()
    return CTVolume(hu, (spacing_z, 0.7, 0.7), meta=CTMeta(slice_thickness_mm=thickness))


@pytest.mark.parametrize(
    "spacing,thickness", [(1.0, 1.0), (1.0, 2.0), (0.5, 1.0), (1.5, 1.5), (3.0, 3.0)]
)
def test_linear_ramp_gives_the_value_at_each_slab_centre(spacing, thickness):
    """When the 3 mm slab spans whole periods of the slice pattern, the sampled ramp minus the
    true ramp averages to zero over the slab, so the slab value is the ramp at its centre."""
    v = _ramp(spacing, thickness)
    out = reformat_slabs(v)
    assert out.spacing_mm[0] == 1.5 and out.meta.slice_thickness_mm == 3.0
    centres = np.arange(out.shape[0]) * 1.5
    top = (v.shape[0] - 1) * spacing
    inner = (centres - 1.5 >= -thickness / 2) & (centres + 1.5 <= top + thickness / 2)
    assert inner.sum() >= 3
    np.testing.assert_allclose(out.hu[inner, 0, 0], 5.0 * centres[inner] + 7.0, rtol=0, atol=1e-3)


@pytest.mark.parametrize("spacing,thickness", [(2.5, 2.5), (1.25, 2.0), (0.8, 1.0)])
def test_ramp_slabs_match_a_fine_riemann_sum(spacing, thickness):
    """In general a slab is the mean over its 3 mm of the stacked original slabs: check against a
    Riemann sum over 0.001 mm steps of the slices that cover each point."""
    v = _ramp(spacing, thickness, n=20)
    out = reformat_slabs(v)
    values = v.hu[:, 0, 0].astype(float)
    lo_i = np.arange(v.shape[0]) * spacing - thickness / 2
    for j in range(out.shape[0]):
        z = np.arange(1.5 * j - 1.5, 1.5 * j + 1.5, 0.001) + 0.0005
        cover = (z[:, None] >= lo_i[None]) & (z[:, None] < lo_i[None] + thickness)
        expected = (cover * values).sum() / cover.sum()
        assert out.hu[j, 0, 0] == pytest.approx(expected, abs=0.02)


def test_slab_average_by_hand():
    """1 mm contiguous slices valued 0, 10, 20, ... (slice i covers [i - 0.5, i + 0.5]).
    Slab 1 (centre 1.5 mm) covers [0, 3]: half of slice 0, slices 1 and 2, half of slice 3.
    Slab 2 (centre 3.0 mm) covers [1.5, 4.5]: slices 2, 3, 4 exactly."""
    hu = np.broadcast_to((10.0 * np.arange(8))[:, None, None], (8, 2, 2)).copy()
    out = reformat_slabs(CTVolume(hu, (1.0, 1.0, 1.0), meta=CTMeta(slice_thickness_mm=1.0)))
    assert out.hu[1, 0, 0] == pytest.approx((0.5 * 0 + 10 + 20 + 0.5 * 30) / 3.0)
    assert out.hu[2, 0, 0] == pytest.approx((20 + 30 + 40) / 3.0)
    # slab 0 covers [-1.5, 1.5] but the scan starts at -0.5: slices 0 and 1 only
    assert out.hu[0, 0, 0] == pytest.approx((0 + 10) / 2.0)


def test_thick_slices_pass_through_with_a_warning():
    v = _ramp(5.0, 5.0, n=6)
    with pytest.warns(ThickSliceWarning, match="exceeds"):
        out = reformat_slabs(v)
    np.testing.assert_array_equal(out.hu, v.hu)


def test_slices_with_gaps_are_interpolated_not_divided_by_zero():
    """1 mm slices every 5 mm: most 3 mm slabs overlap no slice; the ramp comes out exact."""
    v = _ramp(5.0, 1.0, n=6)
    with pytest.warns(ThickSliceWarning, match="leave gaps"):
        out = reformat_slabs(v)
    assert np.isfinite(out.hu).all() and out.shape == (17, 4, 4)
    np.testing.assert_allclose(out.hu[:, 0, 0], 5.0 * 1.5 * np.arange(17) + 7.0, rtol=1e-6)


def test_interpolation_weights_rows_sum_to_one_and_hit_the_original_slices():
    w = interpolation_weights(5, 3.0, 1.5)  # every other new slice is an original one
    assert w.shape == (9, 5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[::2], np.eye(5))
    np.testing.assert_allclose(w[1], [0.5, 0.5, 0, 0, 0])


def _sphere(
    radius_mm: float, spacing: tuple[float, float, float], thickness: float, hu: float = 400.0
):
    """A sphere rendered with partial volume (sub-voxel supersampling) into a CT volume."""
    size_mm = 2 * radius_mm + 12
    n = [int(np.ceil(size_mm / s)) for s in spacing]
    sub = 4
    axes = [
        (np.arange(k * sub) + 0.5) / sub * s - 0.5 * s - size_mm / 2 for k, s in zip(n, spacing)
    ]
    z, y, x = np.meshgrid(*axes, indexing="ij", sparse=True)
    inside = (z**2 + y**2 + x**2 <= radius_mm**2).astype(np.float32)
    frac = inside.reshape(n[0], sub, n[1], sub, n[2], sub).mean(axis=(1, 3, 5))
    return CTVolume(frac * hu, spacing, meta=CTMeta(slice_thickness_mm=thickness))


@pytest.mark.parametrize("spacing,thickness", [((1.0, 0.5, 0.5), 1.0), ((0.7, 0.78, 0.78), 1.4)])
def test_sphere_keeps_its_volume_through_reformat_and_resampling(spacing, thickness):
    r = 10.0
    v = _sphere(r, spacing, thickness)
    out = to_network_grid(v)
    assert out.spacing_mm == (1.5, 0.66, 0.66)
    analytic = 4.0 / 3.0 * np.pi * r**3
    integral = out.hu.sum() / 400.0 * out.voxel_volume_mm3  # averaging preserves the integral
    assert integral == pytest.approx(analytic, rel=0.005)
    thresholded = (out.hu >= 200.0).sum() * out.voxel_volume_mm3  # half-maximum boundary
    assert thresholded == pytest.approx(analytic, rel=0.02)


def test_bilinear_resampling_is_exact_on_a_plane():
    """Bilinear interpolation reproduces an affine function exactly."""
    ny, nx = 30, 40
    y, x = np.meshgrid(np.arange(ny) * 0.9, np.arange(nx) * 0.8, indexing="ij")
    hu = np.broadcast_to((3.0 * y - 2.0 * x)[None], (2, ny, nx)).copy()
    out = resample_inplane(CTVolume(hu, (1.5, 0.9, 0.8)))
    yo, xo = np.meshgrid(
        np.arange(out.shape[1]) * 0.66, np.arange(out.shape[2]) * 0.66, indexing="ij"
    )
    np.testing.assert_allclose(out.hu[0], 3.0 * yo - 2.0 * xo, atol=1e-3)
    assert (out.shape[1] - 1) * 0.66 <= (ny - 1) * 0.9 < out.shape[1] * 0.66


def _random_labels(grid: CTVolume, rng) -> LabelVolume:
    return LabelVolume.like(grid, rng.integers(0, 7, size=grid.shape).astype(np.uint8))


def test_network_labels_go_to_a_finer_original_grid_and_back_unchanged():
    """The network grid (1.5 mm, 0.66 mm) mapped to a finer scan grid and back is the identity."""
    rng = np.random.default_rng(3)
    scan = CTVolume(
        np.zeros((60, 50, 50)),
        (1.0, 0.5, 0.5),
        origin_mm=(-40.0, 12.0, 3.0),
        meta=CTMeta(slice_thickness_mm=1.0),
    )
    net = to_network_grid(scan)
    on_net = _random_labels(net, rng)
    on_scan = labels_to_grid(on_net, scan)
    assert on_scan.shape == scan.shape
    back = labels_to_grid(on_scan, net)
    np.testing.assert_array_equal(back.labels, on_net.labels)


def test_scan_labels_go_to_a_finer_network_grid_and_back_unchanged():
    """A coarse scan (0.98 mm pixels, 3 mm slices) mapped to the network grid and back."""
    rng = np.random.default_rng(4)
    scan = CTVolume(np.zeros((12, 30, 30)), (3.0, 0.98, 0.98), meta=CTMeta(slice_thickness_mm=3.0))
    labels = _random_labels(scan, rng)
    net = to_network_grid(scan)
    back = labels_to_grid(labels_to_grid(labels, net), scan)
    np.testing.assert_array_equal(back.labels, labels.labels)


def test_labels_to_grid_by_hand():
    src = LabelVolume(np.arange(4, dtype=np.uint8).reshape(1, 1, 4), (1, 1, 2.0))
    dst = LabelVolume(np.zeros((1, 1, 8), np.uint8), (1, 1, 1.0), origin_mm=(0, 0, -0.6))
    # target x = -0.6, 0.4, ..., 6.4 -> nearest source index round(x / 2)
    np.testing.assert_array_equal(labels_to_grid(src, dst).labels[0, 0], [0, 0, 1, 1, 2, 2, 3, 3])


def test_candidates_and_normalisation():
    v = CTVolume(np.array([[[129.9, 130.0, 3500.0, -2048.0]]]), (1, 1, 1))
    np.testing.assert_array_equal(candidate_mask(v)[0, 0], [False, True, True, False])
    np.testing.assert_allclose(
        normalise_hu(v.hu)[0, 0], [-0.1 / 1130, 0.0, 2870 / 1130, -1130 / 1130], atol=1e-6
    )
