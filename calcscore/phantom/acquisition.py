"""Scanner profiles, reconstruction kernels, blur and low-dose noise.

A reconstruction is made in the frequency domain, slice by slice: the anatomy, painted on a
coarser working grid, is Fourier-transformed, multiplied by the kernel's modulation transfer
function (MTF) and zero-padded to the output grid; correlated low-dose noise is added as
complex white noise shaped by the kernel's noise power spectrum, NPS(f) ~ |f| MTF(f)^2 (filtered
back projection); one inverse FFT per slice gives the image. Small dense objects
(calcifications, metal) are rendered at sub-voxel resolution in their bounding boxes with the
matching point-spread function and added afterwards, so their partial volume and blur are
right at any voxel size (:mod:`calcscore.phantom.objects`).

The soft kernel is smooth (noise SD about 20-40 HU in soft tissue); the sharp kernel
enhances edges (MTF above 1 at middle frequencies; noise SD about 60-150 HU). Both kernels of a
subject are reconstructed from the same noise realisation, as from the same raw data.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from calcscore.phantom._draw import GridSpec
from calcscore.phantom.scanners import (
    KERNELS,
    SCANNERS,
    ScannerProfile,
    check_kernel,
    get_scanner,
)

log = logging.getLogger(__name__)

__all__ = ["KERNELS", "SCANNERS", "ScannerProfile", "check_kernel", "get_scanner"]

HU_MIN, HU_MAX = -1024.0, 3071.0
UID_ROOT = "2.25."


#: Output sizes: "full" is a clinical 512 x 512 scan of the whole chest; "medium" and "small"
#: are fields of view around the heart and the aorta for tests and CPU training.
SIZES = ("full", "medium", "small", "gated")
_SIZE_PRESETS = {
    "medium": ((100, 256, 256), (2.0, 0.8, 0.8), 2.5),
    "small": ((60, 128, 128), (2.5, 1.3, 1.3), 3.0),
    # an ECG-gated calcium-scoring scan: the heart only, 3 mm slices, small pixels
    "gated": ((56, 512, 512), (3.0, 0.4, 0.4), 3.0),
}


@dataclass(frozen=True)
class KernelModel:
    """Transfer function of a reconstruction kernel: Gaussian PSF plus optional unsharp masking."""

    name: str
    psf_sigma_mm: float
    enhance: float = 0.0
    enhance_sigma_mm: float = 1.0

    def mtf(self, f: np.ndarray) -> np.ndarray:
        """Modulation transfer at spatial frequency ``f`` (cycles/mm)."""
        g = np.exp(-2 * np.pi**2 * self.psf_sigma_mm**2 * f**2)
        if self.enhance:
            g = g * (
                1 + self.enhance * (1 - np.exp(-2 * np.pi**2 * self.enhance_sigma_mm**2 * f**2))
            )
        return g


KERNEL_MODELS = {
    "soft": KernelModel("soft", 0.55),
    "sharp": KernelModel("sharp", 0.30, enhance=0.7, enhance_sigma_mm=0.9),
}


@dataclass(frozen=True)
class Acquisition:
    """Everything about how a subject was scanned and reconstructed, except the kernel."""

    scanner: ScannerProfile
    grid: GridSpec
    work_grid: GridSpec
    slice_thickness_mm: float
    kvp: float
    mas: float
    noise_sd_soft_hu: float
    noise_sd_sharp_hu: float
    study_uid: str
    uid_entropy: str
    #: extra noise power across the body's long (lateral) axis: streaky noise (0: isotropic)
    noise_anisotropy: float = 0.0

    def noise_sd(self, kernel: str) -> float:
        return self.noise_sd_soft_hu if check_kernel(kernel) == "soft" else self.noise_sd_sharp_hu

    def series_uid(self, kernel: str) -> str:
        return make_uid(self.uid_entropy, "series", kernel)


def make_uid(*entropy: str) -> str:
    """A deterministic DICOM UID under the 2.25 (UUID) root from entropy strings."""
    digest = hashlib.sha256("|".join(entropy).encode()).digest()
    return UID_ROOT + str(int.from_bytes(digest[:16], "big"))


def draw_acquisition(
    rng,
    geo,
    *,
    scanner: str | ScannerProfile | None = None,
    size: str = "full",
    shape: tuple[int, int, int] | None = None,
    spacing_mm: tuple[float, float, float] | None = None,
    slice_thickness_mm: float | None = None,
    slice_spacing_mm: float | None = None,
) -> Acquisition:
    """Scanner, field of view, grid, kVp and noise level for one subject. ``slice_spacing_mm``
    sets the distance between slices over the same z range (5 mm contiguous slices with
    ``slice_thickness_mm=5``).

    Args:
        rng: seed or numpy Generator of the scanner, field of view, kVp and noise draws.
        geo: the subject's :class:`~calcscore.phantom.anatomy.Geometry`; with a habitus
            (realistic anatomy) arms at the sides widen the full field of view and the noise
            is streaky.
        scanner: a key of :data:`SCANNERS` or a profile; drawn when None.
        size: one of :data:`SIZES` (see :func:`calcscore.phantom.make_scan`).
        shape: the output grid's shape (z, y, x), each >= 4 and even in-plane; None: by ``size``.
        spacing_mm: the voxel spacing (z, y, x) mm; the slices are then at least as thick as
            they are apart unless ``slice_thickness_mm`` is given. None: by ``size``.
        slice_thickness_mm: the slice thickness (mm, > 0); None: the scanner's (or the size's).
        slice_spacing_mm: the distance between slices (mm); None: the scanner's (or the size's).

    Returns:
        the :class:`Acquisition`: grid, working grid, slice thickness, kVp, mAs, noise SD per
        kernel and UIDs.
    """
    rng = np.random.default_rng(rng)
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {', '.join(SIZES)}, got {size=}")
    keys = sorted(SCANNERS)
    profile = (
        get_scanner(scanner)
        if scanner is not None
        else SCANNERS[keys[int(rng.integers(len(keys)))]]
    )
    s = geo.subject
    thick, sz = profile.recons[int(rng.integers(len(profile.recons)))]
    bx, by = geo.body_center
    if size == "full":
        half = s.body_half_width_mm
        hab = getattr(geo, "habitus", None)
        if hab is not None and not hab.arms_up:  # arms at the sides: a wider field of view
            half = max(half + 2 * hab.arm_radius_mm, hab.shoulder_half_width_mm)
        fov_fit = 2 * (half + 10) * rng.uniform(1.0, 1.08)
        sxy = float(np.clip(fov_fit / 512, *profile.pixel_spacing_mm))
        lo, hi = profile.pixel_spacing_mm
        pick = rng.random()
        if pick < 0.15:  # a targeted reconstruction: small pixels, the body cut at the sides
            sxy = float(rng.uniform(lo, min(lo + 0.1, hi)))
        elif pick < 0.3:  # the scanner's largest display field of view
            sxy = float(rng.uniform(max(hi - 0.05, lo), hi))
        sxy = round(sxy * 512) / 512  # a whole-millimetre reconstruction diameter
        z_lo, z_hi = s.z_av_mm - 160 + rng.uniform(-10, 10), s.z_av_mm + 150 + rng.uniform(-10, 10)
        if slice_spacing_mm is not None:
            sz = float(slice_spacing_mm)
        nz = int(round((z_hi - z_lo) / sz)) + 1
        out_shape = (nz, 512, 512)
        spacing = (sz, sxy, sxy)
        center = (bx + rng.normal(0, 3), by + rng.normal(0, 6), (z_lo + z_hi) / 2)
    else:
        out_shape, spacing, thick = _SIZE_PRESETS[size]
        hc = geo.heart_center
        center = (hc[0] - 5, (hc[1] - 60 + geo.spine_y0 - 15) / 2, s.z_av_mm - 10)
        if size == "gated":  # from below the carina to below the heart's apex
            center = (hc[0] - 15, hc[1] - 2, s.z_av_mm - 38)
        if slice_spacing_mm is not None:
            n_z = max(int(round(out_shape[0] * spacing[0] / slice_spacing_mm)), 4)
            out_shape = (n_z, *out_shape[1:])
            spacing = (float(slice_spacing_mm), *spacing[1:])
            thick = max(thick, spacing[0])
    if shape is not None:
        dims = tuple(int(n) for n in shape)
        if len(dims) != 3 or min(dims) < 4:
            raise ValueError(f"`shape` must be three sizes (z, y, x) >= 4, got {shape=}")
        out_shape = (dims[0], dims[1], dims[2])
    if spacing_mm is not None:
        steps = tuple(float(v) for v in spacing_mm)
        if len(steps) != 3 or min(steps) <= 0:
            raise ValueError(
                f"`spacing_mm` must be three positive numbers (z, y, x), got {spacing_mm=}"
            )
        spacing = (steps[0], steps[1], steps[2])
        if slice_thickness_mm is None:
            thick = max(thick, spacing[0])
    if slice_thickness_mm is not None:
        if slice_thickness_mm <= 0:
            raise ValueError(f"`slice_thickness_mm` must be > 0, got {slice_thickness_mm=}")
        thick = float(slice_thickness_mm)
    if out_shape[1] % 2 or out_shape[2] % 2:
        raise ValueError(f"in-plane sizes must be even (FFT reconstruction), got {out_shape=}")
    origin = tuple(c - (n - 1) / 2 * sp for c, n, sp in zip(center[::-1], out_shape, spacing))
    grid = GridSpec(out_shape, spacing, origin)
    work = _work_grid(grid)
    kvp = 140.0 if s.is_large else 120.0
    size_z = float(np.clip((s.body_half_width_mm - 140) / 55, 0, 1))
    soft_sd = float(
        np.clip(24 + 10 * size_z + rng.normal(0, 2.5) - (2.5 if kvp > 120 else 0), 21, 38)
    )
    sharp_sd = float(np.clip(soft_sd * rng.uniform(2.9, 3.8), 64, 142))
    ent = f"{int(rng.integers(2**62))}"
    aniso = 0.0
    if getattr(geo, "habitus", None) is not None:  # the realistic anatomy: streaky noise
        aniso = float(np.random.default_rng([s.seed, 28]).uniform(0.3, 1.0) * (0.5 + size_z))
    return Acquisition(
        scanner=profile,
        grid=grid,
        work_grid=work,
        slice_thickness_mm=float(thick),
        kvp=kvp,
        mas=float(np.round(rng.uniform(25, 45) * (1.3 if kvp > 120 else 1.0))),
        noise_sd_soft_hu=soft_sd,
        noise_sd_sharp_hu=sharp_sd,
        study_uid=make_uid(ent, "study"),
        uid_entropy=ent,
        noise_anisotropy=aniso,
    )


def _work_grid(grid: GridSpec, target_mm: float = 1.25) -> GridSpec:
    """The coarser in-plane grid the anatomy is painted on: same field of view and origin."""
    nz, ny, nx = grid.shape
    sz, sy, sx = grid.spacing_mm

    def n_work(n: int, sp: float) -> int:
        m = int(np.ceil(n * sp / target_mm / 8.0)) * 8
        return min(max(m, 16), n)

    my, mx = n_work(ny, sy), n_work(nx, sx)
    return GridSpec((nz, my, mx), (sz, ny * sy / my, nx * sx / mx), grid.origin_mm)


def slice_profile(obj: np.ndarray, grid: GridSpec, slice_thickness_mm: float) -> None:
    """Average along z over the slice thickness (Gaussian of FWHM = thickness), in place.

    Args:
        obj: (z, y, x) HU on ``grid``, changed in place.
        grid: the grid of ``obj`` (its z spacing).
        slice_thickness_mm: the slice thickness (mm), the profile's FWHM.
    """
    sigma = slice_thickness_mm / 2.355 / grid.spacing_mm[0]
    if sigma > 0.3:
        ndimage.gaussian_filter1d(obj, sigma, axis=0, output=obj, mode="nearest", truncate=3.0)


def _freq(grid: GridSpec) -> np.ndarray:
    _, ny, nx = grid.shape
    fy = sfft.fftfreq(ny, grid.spacing_mm[1]).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(nx, grid.spacing_mm[2]).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


def noise_transfer(grid: GridSpec, kernel: KernelModel, anisotropy: float = 0.0) -> np.ndarray:
    """sqrt(NPS) on the rfft2 half plane of ``grid``, scaled so the noise SD is 1 HU.

    ``anisotropy`` > 0 adds noise power at frequencies along y: noise streaks running left to
    right, as the long lateral paths through a wide body (or the shoulders) make them.

    Args:
        grid: the output grid (its in-plane shape and spacing).
        kernel: the reconstruction kernel's transfer function.
        anisotropy: extra noise power along y (0: isotropic noise).

    Returns:
        float32 (ny, nx // 2 + 1): the amplitude of the noise spectrum per frequency.
    """
    f = _freq(grid)
    f_nyq = 0.5 / max(grid.spacing_mm[1], grid.spacing_mm[2])
    h = np.sqrt(f) * kernel.mtf(f) * np.exp(-((f / (1.15 * f_nyq)) ** 6))
    if anisotropy > 0:
        fy = sfft.fftfreq(grid.shape[1], grid.spacing_mm[1]).astype(np.float32)[:, None]
        h = h * np.sqrt(1 + anisotropy * (fy * fy) / np.maximum(f * f, 1e-12))
    h2 = h.astype(np.float64) ** 2
    n_pix = grid.shape[1] * grid.shape[2]
    full_sum = (
        h2[:, 0].sum()
        + 2 * h2[:, 1:-1].sum()
        + (h2[:, -1].sum() if grid.shape[2] % 2 == 0 else 2 * h2[:, -1].sum())
    )
    # irfft2 of unit complex white noise has variance sum(|H|^2) / n_pix^2 over the full plane
    return (h * np.sqrt(n_pix**2 / full_sum)).astype(np.float32)


def reconstruct(
    obj_work: np.ndarray,
    acq: Acquisition,
    kernel: str,
    noise_rng,
    noise_scale_z: np.ndarray | None = None,
) -> np.ndarray:
    """Blur, upsample and add noise in one pass per slice; float32 HU on ``acq.grid``.

    Args:
        obj_work: the anatomy, (z, y, x) HU on ``acq.work_grid`` (after :func:`slice_profile`).
        acq: the acquisition (grids, slice thickness, noise SD and anisotropy).
        kernel: "soft" or "sharp".
        noise_rng: seed or numpy Generator of the noise; the same seed for every kernel gives
            the same noise realisation (one acquisition).
        noise_scale_z: (nz,) factor on the noise SD of each output slice; None: 1.

    Returns:
        float32 (z, y, x) HU on ``acq.grid``, not yet clipped or rounded.
    """
    grid, work = acq.grid, acq.work_grid
    km = KERNEL_MODELS[check_kernel(kernel)]
    nz, ny, nx = grid.shape
    _, my, mx = work.shape
    rng = np.random.default_rng(noise_rng)
    h = noise_transfer(grid, km, acq.noise_anisotropy) * np.float32(acq.noise_sd(kernel))
    # white complex noise, optionally correlated between neighbouring (overlapping) slices
    rho = float(np.clip(0.85 * (1 - grid.spacing_mm[0] / acq.slice_thickness_mm), 0, 0.45))
    extra = 1 if rho > 0.02 else 0
    spec = np.empty((nz + extra, ny, nx // 2 + 1), np.complex64)
    rng.standard_normal(out=spec.view(np.float32), dtype=np.float32)
    if extra:
        r = (1 - np.sqrt(1 - 4 * rho**2)) / (2 * rho)
        c0, c1 = 1 / np.sqrt(1 + r * r), r / np.sqrt(1 + r * r)
        spec[:-1] *= np.float32(c0)
        spec[:-1] += np.float32(c1) * spec[1:]
        spec = spec[:-1]
    # unit complex variance: each part has variance 1/2
    scale = np.float32(np.sqrt(0.5))
    for k in range(nz):
        s = scale * (np.float32(noise_scale_z[k]) if noise_scale_z is not None else 1)
        spec[k] *= h * s
    # the anatomy: MTF, apodised below the working grid's Nyquist frequency, zero-padded
    f = _freq(grid)
    f_cut = 0.5 / max(work.spacing_mm[1], work.spacing_mm[2])
    apod = np.clip((f_cut - f) / (0.2 * f_cut), 0, 1) ** 2
    t_obj = (km.mtf(f) * apod * (ny * nx) / (my * mx)).astype(np.float32)
    hy, wx = my // 2, mx // 2 + 1
    for k in range(nz):
        fw = sfft.rfft2(obj_work[k], workers=1)
        spec[k, :hy, :wx] += fw[:hy] * t_obj[:hy, :wx]
        spec[k, ny - (my - hy) :, :wx] += fw[hy:] * t_obj[ny - (my - hy) :, :wx]
    return sfft.irfft2(spec, s=(ny, nx), workers=1, overwrite_x=True).astype(np.float32, copy=False)
