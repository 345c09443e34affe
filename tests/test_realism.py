"""The realism report (calcscore.realism): synthetic volumes of known composition and noise, and
a real chest CT beside a whole-chest phantom where the shared real scans are present."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from calcscore.errors import InputError
from calcscore.realism import (
    PLACES,
    TISSUES,
    compare,
    histogram_distance,
    histograms_figure,
    load_real_scan,
    match_slices,
    measure_noise,
    measure_scan,
    profiles_figure,
    slices_figure,
)
from calcscore.realism.landmarks import find_carina
from calcscore.realism.measures import BIN_EDGES
from calcscore.volume import CTVolume

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "open-chest-ct"
REAL_B = REAL / "lungdx-a0001-b.nii.gz"


def _cylinder(shape, centre_yx, radius_px):
    yy, xx = np.ogrid[: shape[1], : shape[2]]
    disk = (yy - centre_yx[0]) ** 2 + (xx - centre_yx[1]) ** 2 <= radius_px**2
    return np.broadcast_to(disk, shape).copy()


def test_a_bone_cylinder_in_water_is_all_bone_and_a_speck_is_not():
    """Water (0 HU, noise SD 10) with a 1000 HU rod and a 4-voxel 400 HU speck: every voxel of the
    rod is bone, the speck is not; no lungs, so the chest regions are not found."""
    shape, spacing = (30, 120, 120), (2.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    hu = np.full(shape, -1000.0, np.float32)
    water = _cylinder(shape, (60, 60), 55)
    hu[water] = rng.normal(0.0, 10.0, int(water.sum()))
    rod = _cylinder(shape, (60, 45), 8)  # 201 voxels a slice, 12 kmm3: a thick core
    hu[rod] = 1000.0
    hu[15, 80:82, 80:82] = 400.0  # a speck, far from the rod
    report = measure_scan(CTVolume(hu, spacing), name="rod")
    voxel_ml = 2.0 / 1000.0
    assert not report.regions_found and report.notes
    assert report.tissue_stats.loc["bone", "volume_ml"] == pytest.approx(rod.sum() * voxel_ml)
    assert report.tissue_stats.loc["bone", "median"] == 1000.0
    n_hot = int(rod.sum()) + 4
    assert report.hot.loc["bone", "fraction"] == pytest.approx(rod.sum() / n_hot)
    assert report.hot.loc["chest_wall", "ml"] == pytest.approx(4 * voxel_ml)
    assert report.hot["fraction"].sum() == pytest.approx(1.0)
    assert report.tissue_stats.loc["body", "volume_ml"] == pytest.approx(water.sum() * voxel_ml)
    # the water is soft tissue (-30..130 HU) but for its noise tails beyond -30 HU (0.13 %)
    soft = report.tissue_stats.loc["soft_tissue", "fraction_of_body"]
    expected = (water & ~rod).sum() / water.sum() * 0.9987
    assert soft == pytest.approx(expected, rel=2e-3)
    assert report.noise.sd_hu == pytest.approx(10.0, rel=0.05)
    assert list(report.histograms) == list(TISSUES)
    assert set(report.hot.index) == set(PLACES)


@pytest.mark.parametrize("sigma_px", [0.0, 1.0, 1.5])
def test_noise_correlation_length_of_gaussian_filtered_noise(sigma_px):
    """White noise filtered by a Gaussian of sigma s px has the autocorrelation exp(-r^2 / 4s^2):
    1/e at r = 2s. White noise: 0 at one pixel, so 1/e is crossed at 1 - 1/e px (linear)."""
    pixel_mm = 0.5
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 1.0, (12, 256, 256))
    if sigma_px:
        noise = ndimage.gaussian_filter(noise, (0, sigma_px, sigma_px))
    hu = 40.0 + noise * (25.0 / noise.std())
    t = measure_noise(hu, np.ones(hu.shape, bool), pixel_mm)
    expected = (2 * sigma_px if sigma_px else 1 - np.exp(-1)) * pixel_mm
    assert t.acf_length_mm == pytest.approx(expected, rel=0.1)
    # the most homogeneous quarter of the patches holds less of the slowest noise: SD a bit low
    assert 0.9 * 25.0 < t.sd_hu <= 25.0 * 1.01
    assert t.n_patches > 50


def test_nps_peak_of_band_pass_noise():
    """Noise with the NPS f^2 exp(-2 pi^2 s^2 f^2) (ramp times a Gaussian, like filtered back
    projection) peaks at f = 1 / (sqrt(2) pi s); found within one frequency bin."""
    pixel_mm, s = 0.5, 1.0
    rng = np.random.default_rng(2)
    white = rng.normal(0.0, 1.0, (12, 256, 256))
    f = np.fft.fftfreq(256, pixel_mm)
    fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    noise = np.fft.ifft2(np.fft.fft2(white) * fr * np.exp(-(np.pi**2) * s**2 * fr**2)).real
    hu = 40.0 + noise * (30.0 / noise.std())
    t = measure_noise(hu, np.ones(hu.shape, bool), pixel_mm)
    bin_width = t.nps_f[1]
    assert abs(t.nps_peak_per_mm - 1 / (np.sqrt(2) * np.pi * s)) <= bin_width


def test_no_homogeneous_tissue_gives_nan_noise():
    hu = np.full((4, 64, 64), 500.0)
    t = measure_noise(hu, np.ones(hu.shape, bool), 1.0)
    assert t.n_patches == 0 and np.isnan(t.sd_hu) and np.isnan(t.acf_length_mm)


def test_carina_is_where_a_drawn_trachea_splits():
    """A body with two lungs, a trachea (air, 16 mm wide) down the midline from the top to slice
    20 and two main bronchi (12 mm wide, 30 mm apart) below it: the carina is slice 20."""
    shape, spacing = (40, 200, 240), (5.0, 1.0, 1.0)
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 20:180, 20:220] = 40.0
    lungs = np.zeros(shape, bool)
    lungs[:30, 40:160, 30:100] = lungs[:30, 40:160, 140:210] = True
    hu[lungs] = -850.0
    air = np.zeros(shape[1:], bool)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    trachea = (yy - 60) ** 2 + (xx - 120) ** 2 <= 8**2
    bronchi = ((yy - 60) ** 2 + (xx - 105) ** 2 <= 6**2) | (
        (yy - 60) ** 2 + (xx - 135) ** 2 <= 6**2
    )
    for k in range(shape[0]):
        air = trachea if k >= 20 else bronchi if k >= 14 else np.zeros_like(air)
        hu[k][air] = -1000.0
    body = np.zeros(shape, bool)
    body[:, 20:180, 20:220] = True
    z_mm = np.arange(shape[0]) * spacing[0]
    assert find_carina(hu, body, lungs, z_mm, spacing) == 20
    # the same chest stored head first: z falls with k
    flipped = (hu[::-1], body[::-1], lungs[::-1], z_mm[::-1], spacing)
    assert find_carina(*flipped) == shape[0] - 1 - 20


def test_match_slices_averages_groups_and_keeps_the_geometry():
    hu = np.broadcast_to(np.arange(20, dtype=np.float32)[:, None, None], (20, 4, 6)).copy()
    v = CTVolume(hu, (1.0, 0.7, 0.7), (-50.0, 3.0, 4.0))
    thick = match_slices(v, 5.0)
    assert thick.shape == (4, 4, 6) and thick.spacing_mm == (5.0, 0.7, 0.7)
    assert np.allclose(thick.hu[:, 0, 0], [2.0, 7.0, 12.0, 17.0])  # means of 0-4, 5-9, ...
    assert thick.origin_mm[0] == pytest.approx(-48.0)  # the centre of slices 0-4
    assert thick.meta.slice_thickness_mm == 5.0
    assert match_slices(v, 1.2) is v


def test_histogram_distance_is_the_shift():
    a = np.zeros(len(BIN_EDGES) - 1)
    a[200:220] = 1.0
    b = np.roll(a, 10)  # 10 bins of 5 HU
    assert histogram_distance(a, b) == pytest.approx(50.0)
    assert np.isnan(histogram_distance(a, np.zeros_like(a)))


def test_load_real_scan_names_the_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nothing.nii.gz"
    with pytest.raises(InputError, match="nothing.nii.gz: no such file"):
        load_real_scan(missing)
    monkeypatch.setitem(sys.modules, "calcscore.datasets.examples", None)  # as if not there
    with pytest.raises(
        InputError, match=r"chest_ct\(\) is not in this calcscore \(pass real_scan="
    ):
        load_real_scan("")


# ------------------------------------------------------------------ a real scan and a phantom
@pytest.fixture(scope="module")
def real_report():
    if not REAL_B.is_file():
        pytest.skip(f"real chest CT not found at {REAL_B}")
    volume = load_real_scan(REAL_B)
    return volume, measure_scan(volume, name="real b")


@pytest.fixture(scope="module")
def phantom_report():
    from calcscore.phantom import make_scan

    volume, _, _ = make_scan(rng=3, size="full", shape=(70, 256, 256), spacing_mm=(5.0, 1.6, 1.6))
    return volume, measure_scan(volume, name="phantom")


def _landmarks_in_order(report):
    lm = report.landmarks
    assert None not in lm.values(), lm
    z = report.slice_z_mm
    names = ["lung_top", "carina", "mid_heart", "diaphragm", "lung_bottom"]
    heights = [z[lm[n]] for n in names]
    assert heights == sorted(heights, reverse=True), dict(zip(names, heights))


@pytest.mark.slow
def test_real_scan_bright_voxels_are_mostly_bone(real_report):
    """lungdx-a0001-b (non-contrast, 5 mm, soft kernel): most voxels >= 130 HU are bone, the
    lungs hold an adult's air, and the trachea splits at slices 37/38 (read off the scan)."""
    _, r = real_report
    assert r.regions_found
    assert r.hot.loc["bone", "fraction"] > 0.8
    assert r.hot.loc["heart", "fraction"] < 0.05
    assert 3000 < r.lung_volume_ml < 8000
    assert 36 <= r.landmarks["carina"] <= 40
    _landmarks_in_order(r)
    assert -900 < r.tissue_stats.loc["lung", "median"] < -750
    assert -130 < r.tissue_stats.loc["fat", "median"] < -60
    assert 5 < r.noise.sd_hu < 30 and 0.3 < r.noise.acf_length_mm < 3.0


@pytest.mark.slow
def test_whole_chest_phantom_is_in_physical_range(phantom_report):
    _, r = phantom_report
    assert r.regions_found
    assert 2000 < r.lung_volume_ml < 9000  # adult lungs at inspiration
    _landmarks_in_order(r)
    assert r.hot.loc["bone", "fraction"] > 0.5


@pytest.mark.slow
def test_compare_and_figures(real_report, phantom_report, tmp_path):
    (rv, real), (pv, phantom) = real_report, phantom_report
    table = compare(phantom, real)
    assert {"phantom", "real", "distance", "kind"} <= set(table.columns)
    for t in TISSUES:
        assert table.loc[f"{t}: HU histogram", "distance"] >= 0
    row = table.loc["lung volume (mL)"]
    assert row["distance"] == pytest.approx(phantom.lung_volume_ml - real.lung_volume_ml)
    assert np.isfinite(table.loc["profile body_area_cm2", "distance"])
    for fig in (
        slices_figure([("phantom", pv, phantom), ("real", rv, real)]),
        histograms_figure([phantom, real]),
        profiles_figure([phantom, real]),
    ):
        path = tmp_path / "f.png"
        fig.savefig(path, dpi=40)
        assert path.stat().st_size > 5000
