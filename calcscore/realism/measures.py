"""The realism measures of one scan, the same for a phantom and a real chest CT.

Everything is found from the scan alone (HU ranges and :mod:`calcscore.regions`), never from a
phantom's ground truth, so that a phantom and a real scan are measured alike:

- **body**: the largest 3D component above -400 HU (the table and arms lying apart are not in
  it), its holes filled slice by slice;
- **lungs**: :func:`calcscore.regions.lungs_coarse` (air enclosed by the body, in large 3D
  components, on a grid of about 3 mm blocks), brought back to the scan's grid; their 3D convex
  hull is the thoracic cavity;
- **tissue classes** (:data:`TISSUES`): lung (lung voxels < -400 HU), fat (-190..-30 HU in the
  body), soft tissue (-30..130 HU in the body outside the heart region: muscle, liver, vessels
  outside the heart), heart (-30..130 HU in :attr:`calcscore.regions.ChestRegions.heart`),
  bone (:func:`bone_of`: :func:`calcscore.bone.bone_mask` on the scan smoothed by 1 mm, so
  that a sharp kernel's noise does not break it up), and the whole body;
- **where the voxels >= 130 HU lie** (:data:`PLACES`): bone; the heart region; the rest of the
  mediastinum (aorta, great vessels); the chest wall (outside the lungs' hull, within their
  slices: costal cartilage, thin ribs, scapulae, arms, breast); the lungs' hull outside the
  mediastinum; and the slices above and below the lungs (neck, abdomen). Where the chest
  regions are not found (no lungs: a field of view around the heart), every voxel >= 130 HU
  that is not bone counts as chest wall, and :attr:`RealismReport.notes` says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.bone import bone_mask
from calcscore.constants import BODY_THRESHOLD_HU, CALCIUM_THRESHOLD_HU
from calcscore.realism.landmarks import find_landmarks
from calcscore.realism.noise import NoiseTexture, measure_noise
from calcscore.regions import (
    block_mean,
    convex_hull_mask,
    find_chest_regions,
    lungs_coarse,
)
from calcscore.volume import CTVolume

log = logging.getLogger(__name__)

#: the tissue classes of the HU histograms
TISSUES = ("body", "lung", "fat", "soft_tissue", "heart", "bone")
#: where a voxel >= 130 HU can lie
PLACES = ("bone", "heart", "mediastinum", "chest_wall", "lung", "above_below")
#: HU windows of the classes found by HU range
FAT_HU = (-190.0, -30.0)
SOFT_HU = (-30.0, CALCIUM_THRESHOLD_HU)
#: the common histogram bins (HU) of every scan, so that histograms compare bin by bin
BIN_EDGES = np.arange(-1025.0, 3075.0, 5.0)
#: bone cores larger than this (mm3) are bone, as :func:`calcscore.regions.find_chest_regions`
MAX_LESION_MM3 = 3000.0
#: the in-plane smoothing (mm) of the scan the bone is found on
BONE_SMOOTH_MM = 1.0


@dataclass
class RealismReport:
    """The measures of one scan (:func:`measure_scan`)."""

    name: str
    spacing_mm: tuple[float, float, float]
    shape: tuple[int, int, int]
    #: per tissue class: counts in :data:`BIN_EDGES`
    histograms: dict[str, np.ndarray]
    #: per tissue class: volume_ml, fraction_of_body, median, p05, p25, p75, p95 (HU)
    tissue_stats: pd.DataFrame
    noise: NoiseTexture
    #: per place: voxels >= 130 HU there (mL) and their fraction of all such voxels in the body
    hot: pd.DataFrame
    #: per slice (superior first): z_mm, body_area_cm2, lung_area_cm2, hot_fraction (of the
    #: body's voxels), hot_outside_bone_cm2
    profiles: pd.DataFrame
    #: slice indices: lung_top, lung_bottom, carina, mid_heart, diaphragm (None: not found)
    landmarks: dict[str, int | None]
    lung_volume_ml: float
    regions_found: bool
    #: each slice's z (mm, larger is superior), in the scan's slice order
    slice_z_mm: np.ndarray
    #: per landmark slice index: where its voxels >= 130 HU lie (0: not >= 130 HU, i + 1: in
    #: ``PLACES[i]``), for the figures
    place_slices: dict[int, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def scalars(self) -> dict[str, float]:
        """A flat dict of the scalar measures (for a comparison table)."""
        out: dict[str, float] = {
            "lung volume (mL)": self.lung_volume_ml,
            "body volume (mL)": float(self.tissue_stats.loc["body", "volume_ml"]),
            "noise SD (HU)": self.noise.sd_hu,
            "NPS peak (cycles/mm)": self.noise.nps_peak_per_mm,
            "noise correlation length (mm)": self.noise.acf_length_mm,
            ">= 130 HU in the body (mL)": float(self.hot["ml"].sum()),
        }
        for t in TISSUES[1:]:
            out[f"{t}: median HU"] = float(self.tissue_stats.loc[t, "median"])
            out[f"{t}: IQR HU"] = float(
                self.tissue_stats.loc[t, "p75"] - self.tissue_stats.loc[t, "p25"]
            )
            out[f"{t}: % of body"] = 100 * float(self.tissue_stats.loc[t, "fraction_of_body"])
        for p in PLACES:
            out[f">= 130 HU in {p} (%)"] = 100 * float(self.hot.loc[p, "fraction"])
            out[f">= 130 HU in {p} (mL)"] = float(self.hot.loc[p, "ml"])
        return out


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The largest 3D component above -400 HU, its holes filled slice by slice."""
    lab, n = ndimage.label(hu > BODY_THRESHOLD_HU)
    if n == 0:
        return np.zeros(hu.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = lab == int(np.argmax(sizes))
    for z in range(body.shape[0]):
        body[z] = ndimage.binary_fill_holes(body[z])
    return body


def _upsample(coarse: np.ndarray, f: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    fine = coarse.repeat(f[0], 0).repeat(f[1], 1).repeat(f[2], 2)
    return np.pad(fine, [(0, s - n) for s, n in zip(shape, fine.shape)], mode="edge")


def lungs_and_hull(volume: CTVolume) -> tuple[np.ndarray, np.ndarray, float]:
    """The lungs (:func:`calcscore.regions.lungs_coarse`) and their 3D convex hull, on the scan's
    grid, and the lungs' volume (mL)."""
    d, f = block_mean(volume.hu, volume.spacing_mm)
    block = np.asarray(volume.spacing_mm) * f
    lungs, ml = lungs_coarse(d, block)
    hull = convex_hull_mask(lungs, block) if lungs.any() else lungs
    return _upsample(lungs, f, volume.shape), _upsample(hull, f, volume.shape), ml


def bone_of(volume: CTVolume) -> np.ndarray:
    """Bone: :func:`calcscore.bone.bone_mask` of the scan smoothed in-plane by a Gaussian of
    :data:`BONE_SMOOTH_MM` (so that a sharp kernel's noise, which breaks marrow into specks
    under 130 HU, does not break the bone's thick cores), one voxel around it, >= 130 HU."""
    sigma = [0.0] + [BONE_SMOOTH_MM / s for s in volume.spacing_mm[1:]]
    smooth = volume.with_array(ndimage.gaussian_filter(volume.hu, sigma))
    bone = bone_mask(smooth, max_lesion_mm3=MAX_LESION_MM3)
    bone = ndimage.binary_dilation(bone, structure=np.ones((1, 3, 3), bool))
    return bone & (volume.hu >= CALCIUM_THRESHOLD_HU)


def superior_z_mm(volume: CTVolume) -> np.ndarray:
    """Each slice's position along the patient's axis (mm, LPS z: larger is superior)."""
    idx = np.zeros((volume.shape[0], 3))
    idx[:, 0] = np.arange(volume.shape[0])
    return volume.index_to_physical(idx)[:, 0]


def _stats(values: np.ndarray, voxel_ml: float, body_n: int) -> dict[str, float]:
    if values.size == 0:
        q = [float("nan")] * 5
    else:
        q = [float(v) for v in np.percentile(values, [50, 5, 25, 75, 95])]
    return {
        "volume_ml": values.size * voxel_ml,
        "fraction_of_body": values.size / max(body_n, 1),
        **dict(zip(("median", "p05", "p25", "p75", "p95"), q)),
    }


def tissue_masks(
    hu: np.ndarray, body: np.ndarray, lungs: np.ndarray, heart: np.ndarray, bone: np.ndarray
) -> dict[str, np.ndarray]:
    """The voxels of each class of :data:`TISSUES` (see the module docstring).

    Args:
        hu: the scan (z, y, x) in HU.
        body, lungs, heart, bone: its masks (heart: the safety net's heart region).

    Returns:
        class name -> boolean mask.
    """
    soft = body & (hu >= SOFT_HU[0]) & (hu < SOFT_HU[1])
    return {
        "body": body,
        "lung": lungs & body & (hu < BODY_THRESHOLD_HU),
        "fat": body & ~lungs & (hu >= FAT_HU[0]) & (hu < FAT_HU[1]),
        "soft_tissue": soft & ~heart,
        "heart": soft & heart,
        "bone": bone,
    }


def place_masks(
    hot: np.ndarray, bone: np.ndarray, regions, hull: np.ndarray, lungs: np.ndarray
) -> dict[str, np.ndarray]:
    """The voxels of ``hot`` in each place of :data:`PLACES`.

    Args:
        hot: the voxels >= 130 HU.
        bone: the bone mask.
        regions: the safety net's :class:`calcscore.regions.ChestRegions`.
        hull: the lungs' convex hull.
        lungs: the lung mask.

    Returns:
        place name -> boolean mask; every hot voxel lies in exactly one.
    """
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    in_slices = np.zeros(hot.shape[0], bool)
    if len(zs):
        in_slices[zs[0] : zs[-1] + 1] = True
    rest = hot & ~bone
    heart = rest & regions.heart
    rest &= ~heart
    mediastinum = rest & regions.aorta
    rest &= ~mediastinum
    outside = rest & ~in_slices[:, None, None]
    rest &= ~outside
    return {
        "bone": hot & bone,
        "heart": heart,
        "mediastinum": mediastinum,
        "chest_wall": rest & ~hull,
        "lung": rest & hull,
        "above_below": outside,
    }


def _profiles(hu, body, lungs, hot, bone, z_mm, pixel_cm2) -> pd.DataFrame:
    body_n = body.sum(axis=(1, 2))
    hot_n = hot.sum(axis=(1, 2))
    df = pd.DataFrame(
        {
            "z_mm": z_mm,
            "body_area_cm2": body_n * pixel_cm2,
            "lung_area_cm2": (lungs & body).sum(axis=(1, 2)) * pixel_cm2,
            "hot_fraction": hot_n / np.maximum(body_n, 1),
            "hot_outside_bone_cm2": (hot & ~bone).sum(axis=(1, 2)) * pixel_cm2,
        }
    )
    return df.sort_values("z_mm", ascending=False, ignore_index=True)


def measure_scan(volume: CTVolume, *, name: str = "") -> RealismReport:
    """Measure one chest CT (a phantom or a real scan) for the realism report.

    Returns a :class:`RealismReport`: HU histograms and statistics per tissue class, noise SD and
    texture (:mod:`calcscore.realism.noise`), where the voxels >= 130 HU lie, per-slice profiles
    along z and the landmark slices (carina, mid-heart, diaphragm) the figures are matched on.
    """
    hu = volume.hu
    voxel_ml = volume.voxel_volume_mm3 / 1000.0
    body = body_mask(hu)
    lungs, hull, lung_ml = lungs_and_hull(volume)
    regions = find_chest_regions(volume, max_lesion_mm3=MAX_LESION_MM3)
    notes = []
    if not regions.found:
        notes.append(
            f"chest regions not found ({regions.reason}): every voxel >= 130 HU that is not "
            "bone is counted as chest wall"
        )
    heart = regions.heart & body if regions.found else np.zeros(hu.shape, bool)
    bone = bone_of(volume) & body
    masks = tissue_masks(hu, body, lungs, heart, bone)
    body_n = int(body.sum())
    histograms = {t: np.histogram(hu[m], BIN_EDGES)[0] for t, m in masks.items()}
    stats = pd.DataFrame({t: _stats(hu[m], voxel_ml, body_n) for t, m in masks.items()}).T
    hot = body & (hu >= CALCIUM_THRESHOLD_HU)
    if regions.found:
        places = place_masks(hot, bone, regions, hull, lungs)
    else:
        places = {p: np.zeros(hu.shape, bool) for p in PLACES}
        places["bone"], places["chest_wall"] = hot & bone, hot & ~bone
    n_hot = max(int(hot.sum()), 1)
    hot_df = pd.DataFrame(
        {p: {"ml": m.sum() * voxel_ml, "fraction": m.sum() / n_hot} for p, m in places.items()}
    ).T
    z_mm = superior_z_mm(volume)
    pixel_cm2 = volume.spacing_mm[1] * volume.spacing_mm[2] / 100.0
    profiles = _profiles(hu, body, lungs, hot, bone, z_mm, pixel_cm2)
    landmarks = find_landmarks(volume, body, lungs, z_mm)
    noise = measure_noise(hu, body & ~lungs, float(volume.spacing_mm[2]))
    place_slices = {}
    for k in {k for k in landmarks.values() if k is not None}:
        code = np.zeros(hu.shape[1:], np.uint8)
        for i, p in enumerate(PLACES):
            code[places[p][k]] = i + 1
        place_slices[k] = code
    log.info("%s: %d noise patches, landmarks %s", name or "scan", noise.n_patches, landmarks)
    return RealismReport(
        name=name,
        spacing_mm=volume.spacing_mm,
        shape=volume.shape,
        histograms=histograms,
        tissue_stats=stats,
        noise=noise,
        hot=hot_df,
        profiles=profiles,
        landmarks=landmarks,
        lung_volume_ml=lung_ml,
        regions_found=regions.found,
        slice_z_mm=z_mm,
        place_slices=place_slices,
        notes=notes,
    )


def match_slices(volume: CTVolume, thickness_mm: float) -> CTVolume:
    """``volume`` with its slices averaged in groups of about ``thickness_mm`` (a thick
    reconstruction of a thin one, as a 5 mm scan is of its 1 mm slices). Unchanged where the
    slices are already that thick or thicker."""
    k = int(round(thickness_mm / volume.spacing_mm[0]))
    if k <= 1:
        return volume
    n = (volume.shape[0] // k) * k
    hu = volume.hu[:n].reshape(n // k, k, *volume.shape[1:]).mean(axis=1)
    first = volume.index_to_physical([[(k - 1) / 2.0, 0.0, 0.0]])[0]
    spacing = (volume.spacing_mm[0] * k, *volume.spacing_mm[1:])
    meta = replace(volume.meta, slice_thickness_mm=float(spacing[0]))
    return CTVolume(hu, spacing, tuple(first), volume.direction, meta=meta)
