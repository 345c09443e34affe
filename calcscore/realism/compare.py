"""Phantom vs real: the measures of :func:`calcscore.realism.measure_scan` side by side, with a
distance per measure, and the figures that show them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from calcscore.realism.measures import BIN_EDGES, PLACES, TISSUES, RealismReport
from calcscore.viz import _pyplot, render_slice
from calcscore.volume import CTVolume

#: the landmark slices the figures show, superior first
LEVELS = ("carina", "mid_heart", "diaphragm")
#: profiles are compared on z measured from this landmark (the next one where it is missing)
ALIGN_ON = ("carina", "mid_heart", "lung_top")
_CENTRES = (BIN_EDGES[:-1] + BIN_EDGES[1:]) / 2


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein (earth mover's) distance in HU between two histograms on :data:`BIN_EDGES`
    (NaN where either is empty)."""
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    return float(wasserstein_distance(_CENTRES, _CENTRES, a, b))


def aligned_z(report: RealismReport) -> tuple[np.ndarray, str | None]:
    """Each profile row's z (mm) from the first landmark of :data:`ALIGN_ON` that was found, and
    its name (the scan's own z and None where none was)."""
    z = report.profiles["z_mm"].to_numpy()
    for name in ALIGN_ON:
        k = report.landmarks.get(name)
        if k is not None:
            return z - float(report.slice_z_mm[k]), name
    return z, None


def profile_distance(a: RealismReport, b: RealismReport, column: str) -> float:
    """Mean absolute difference of a per-slice profile between two scans, on the z range they
    share after alignment (:func:`aligned_z`).

    Args:
        a, b: the two scans' reports.
        column: the profile, a column of :attr:`RealismReport.profiles`.

    Returns:
        the mean absolute difference in the profile's unit; NaN where the scans share no z.
    """
    za, _ = aligned_z(a)
    zb, _ = aligned_z(b)
    lo, hi = max(za.min(), zb.min()), min(za.max(), zb.max())
    if hi <= lo:
        return float("nan")
    keep = (zb >= lo) & (zb <= hi)
    va = np.interp(zb[keep], za[::-1], a.profiles[column].to_numpy()[::-1])
    return float(np.mean(np.abs(va - b.profiles[column].to_numpy()[keep])))


def compare(phantom: RealismReport, real: RealismReport) -> pd.DataFrame:
    """Per measure: the phantom's value, the real scan's, and a distance.

    Scalars: the difference phantom - real. Histograms: the Wasserstein distance (HU) of each
    tissue class's histogram. Profiles: the mean absolute difference along z after aligning on
    the same landmark. Rows are indexed by measure; columns ``phantom``, ``real``, ``distance``,
    ``kind``.
    """
    rows = []
    sp, sr = phantom.scalars(), real.scalars()
    for key in sp:
        rows.append((key, sp[key], sr[key], sp[key] - sr[key], "difference"))
    for t in TISSUES:
        d = histogram_distance(phantom.histograms[t], real.histograms[t])
        rows.append((f"{t}: HU histogram", np.nan, np.nan, d, "Wasserstein (HU)"))
    for col in ("body_area_cm2", "lung_area_cm2", "hot_fraction", "hot_outside_bone_cm2"):
        pa, ra = phantom.profiles[col].mean(), real.profiles[col].mean()
        d = profile_distance(phantom, real, col)
        rows.append((f"profile {col}", pa, ra, d, "mean |difference| along z"))
    df = pd.DataFrame(rows, columns=["measure", "phantom", "real", "distance", "kind"])
    return df.set_index("measure")


# ------------------------------------------------------------------------------------ figures
def _window_extent(volume: CTVolume) -> tuple[float, float, float, float]:
    ny, nx = volume.shape[1:]
    sy, sx = volume.spacing_mm[1:]
    return (-nx * sx / 2, nx * sx / 2, ny * sy / 2, -ny * sy / 2)


#: the colour of each place of :data:`PLACES` in the slice figure
PLACE_COLOURS = {
    "bone": (0.0, 0.85, 0.9),
    "heart": (1.0, 0.1, 0.1),
    "mediastinum": (1.0, 0.2, 1.0),
    "chest_wall": (1.0, 0.6, 0.0),
    "lung": (1.0, 1.0, 0.0),
    "above_below": (0.2, 0.9, 0.2),
}


def _place_rgb(volume: CTVolume, report: RealismReport, k: int) -> np.ndarray:
    """Slice ``k`` in the mediastinal window with its voxels >= 130 HU coloured by place."""
    img = render_slice(volume, index=k, preset="mediastinum", square_pixels=False)
    img = img.astype(np.float32) / 255.0
    code = report.place_slices.get(k)
    if code is not None:
        for i, p in enumerate(PLACES):
            img[code == i + 1] = PLACE_COLOURS[p]
    return img


def slices_figure(scans: list[tuple[str, CTVolume, RealismReport]], *, half_width_mm=230.0):
    """Rows: the landmark levels (:data:`LEVELS`); columns: the scans. Mediastinal window
    (level 40, width 400 HU), voxels >= 130 HU coloured by where they lie
    (:data:`PLACE_COLOURS`), every panel on the same mm scale."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(LEVELS), len(scans), figsize=(3.4 * len(scans), 3.1 * len(LEVELS) + 0.6), squeeze=False
    )
    for j, (name, volume, report) in enumerate(scans):
        for i, level in enumerate(LEVELS):
            ax = axes[i, j]
            k = report.landmarks.get(level)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
            if k is None:
                ax.set_title(f"{name}\n{level}: not found", fontsize="small")
                continue
            ax.imshow(
                _place_rgb(volume, report, k),
                extent=_window_extent(volume),
                interpolation="nearest",
            )
            ax.set_xlim(-half_width_mm, half_width_mm)
            ax.set_ylim(half_width_mm * 0.8, -half_width_mm * 0.8)
            ax.set_title(f"{name}\n{level} (slice {k})", fontsize="small")
    handles = [
        plt.matplotlib.patches.Patch(color=c, label=p.replace("_", " "))
        for p, c in PLACE_COLOURS.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small")
    fig.suptitle("window 40/400 HU, same mm scale; voxels >= 130 HU by where they lie")
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight(), 1, 1))
    return fig


def histograms_figure(reports: list[RealismReport]):
    """One panel per tissue class: each scan's HU histogram (as a density) overlaid; the last
    panel: the noise power spectra."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(17, 6.5))
    for ax, t in zip(axes.ravel(), TISSUES):
        for r in reports:
            h = r.histograms[t].astype(float)
            if h.sum() == 0:
                continue
            lo, hi = np.flatnonzero(h > 0)[[0, -1]]
            sl = slice(lo, hi + 1)
            ax.plot(_CENTRES[sl], h[sl] / h.sum() / 5.0, label=r.name, lw=1.2)
        ax.set_title(t.replace("_", " "))
        ax.set_xlabel("HU")
        if t == "body":
            ax.set_yscale("log")
            ax.set_xlim(-1050, 1600)
        elif t == "bone":
            ax.set_xlim(100, 1600)
    axes[0, 0].set_ylabel("density (1/HU)")
    axes[0, 0].legend(fontsize="small")
    ax = axes.ravel()[len(TISSUES)]
    for r in reports:
        ax.plot(r.noise.nps_f[1:], r.noise.nps[1:], label=f"{r.name}: SD {r.noise.sd_hu:.0f} HU")
    ax.set_title("noise power spectrum (soft tissue)")
    ax.set_xlabel("cycles/mm")
    ax.set_ylabel("HU² mm²")
    ax.legend(fontsize="small")
    axes.ravel()[-1].axis("off")
    fig.tight_layout()
    return fig


def profiles_figure(reports: list[RealismReport]):
    """Per-slice profiles along z (mm from the alignment landmark, superior up)."""
    plt = _pyplot()
    cols = [
        ("body_area_cm2", "body cross-section (cm²)"),
        ("lung_area_cm2", "lung cross-section (cm²)"),
        ("hot_fraction", "fraction of body voxels ≥ 130 HU"),
        ("hot_outside_bone_cm2", "≥ 130 HU outside bone (cm²)"),
    ]
    fig, axes = plt.subplots(1, len(cols), figsize=(15, 4.6), sharey=True)
    for r in reports:
        z, ref = aligned_z(r)
        for ax, (col, title) in zip(axes, cols):
            ax.plot(r.profiles[col].to_numpy(), z, label=f"{r.name} (0 = {ref})", lw=1.2)
            ax.set_title(title, fontsize="medium")
    axes[0].set_ylabel("z from the landmark (mm, superior up)")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig
