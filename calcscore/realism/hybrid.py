"""Synthetic calcifications inserted into real scans: hybrid images with known lesions.

No real scan of this project has calcium annotations, so the phantoms are the only place where a
model's sensitivity is known, and their anatomy is not real. A lesion inserted into a real scan
has both: real anatomy and noise around it, and a known position, size and density. A model that
finds calcium in phantoms but misses it in the epicardial fat of a real chest, or removes it with
its safety net, shows it here.

The lesion is a sphere, or a capsule (a sphere swept along a straight segment on the heart's
surface, as heavy calcification runs along an artery for 5-20 mm), of uniform density
``peak_hu`` as the scanner would see it: its partial
volume in each voxel integrated over the slice thickness (the slice sensitivity profile, a
rectangle) and in-plane over the pixel, then blurred in-plane by the reconstruction's point
spread (a Gaussian). The voxel becomes ``(1 - f) * hu + f * peak_hu``, with ``f`` that fraction.

:func:`epicardial_sites` picks where: fat on the outer surface of the heart (where the coronary
arteries run), far from the lungs, at least ``separation_mm`` apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.labels import Label
from calcscore.volume import CTVolume

#: in-plane point spread of a soft chest kernel (Gaussian SD, mm)
PSF_SIGMA_MM = 0.5
#: epicardial fat (HU) and the soft tissue of the heart wall (HU)
FAT_HU = (-190.0, -40.0)
SOFT_HU = (-20.0, 150.0)
#: sites lie at most this share of the heart's radius behind its centre: farther back, behind
#: the left atrium, run the oesophagus and the descending aorta, not coronary arteries
BACK_LIMIT = 0.6


@dataclass(frozen=True)
class Lesion:
    """A calcification: centre (z, y, x) in mm from voxel (0, 0, 0), diameter in mm, density in
    HU; with ``length_mm`` > 0 a capsule, the sphere swept ``length_mm`` along ``direction``
    (a unit vector (z, y, x)), centred on ``centre_mm``."""

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    peak_hu: float
    length_mm: float = 0.0
    direction: tuple[float, float, float] = (1.0, 0.0, 0.0)

    @property
    def volume_mm3(self) -> float:
        """The analytic volume (sphere plus cylinder)."""
        r = self.diameter_mm / 2
        return float(4 / 3 * np.pi * r**3 + np.pi * r**2 * self.length_mm)


def _axis_samples(n: int, spacing: float, width: float, step: float) -> np.ndarray:
    """Sample positions (mm) of ``n`` voxels: each voxel's centre +- width / 2 every ``step``."""
    k = max(1, int(round(width / step)))
    offsets = (np.arange(k) + 0.5) / k * width - width / 2
    return (np.arange(n)[:, None] * spacing + offsets[None, :]).astype(np.float32)


def _on_axis(v: np.ndarray, k: int) -> np.ndarray:
    """An (voxels, samples) array of axis ``k`` shaped to broadcast over (z, y, x, sz, sy, sx)."""
    shape = [1] * 6
    shape[k], shape[k + 3] = v.shape
    return v.reshape(shape)


def lesion_fraction(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    lesion: Lesion,
    *,
    thickness_mm: float,
    psf_sigma_mm: float = PSF_SIGMA_MM,
    step_mm: float = 0.2,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """The lesion's share of every voxel near it.

    Args:
        shape: the volume's shape.
        spacing_mm: its voxel spacing (z, y, x).
        lesion: the sphere or capsule.
        thickness_mm: the slice thickness (the z integration width).
        psf_sigma_mm: the in-plane Gaussian blur (0: none).
        step_mm: the integration step.

    Returns:
        (the box of voxels, as slices; the fraction in [0, 1] in that box).
    """
    r = lesion.diameter_mm / 2
    u = np.asarray(lesion.direction, np.float64)
    u = u / np.linalg.norm(u)
    half = np.abs(u) * lesion.length_mm / 2
    margin = (
        r + half[0] + thickness_mm / 2,
        r + half[1] + 3 * psf_sigma_mm + 1,
        r + half[2] + 3 * psf_sigma_mm + 1,
    )
    box = tuple(
        slice(
            max(0, int(np.floor((c - m) / s))),
            min(n, int(np.ceil((c + m) / s)) + 1),
        )
        for c, m, s, n in zip(lesion.centre_mm, margin, spacing_mm, shape)
    )
    widths = (thickness_mm, spacing_mm[1], spacing_mm[2])
    axes = [
        _axis_samples(b.stop - b.start, s, w, step_mm) + b.start * s - c
        for b, s, w, c in zip(box, spacing_mm, widths, lesion.centre_mm)
    ]
    # inside where the squared distance to the segment is <= r^2 (separable sums, broadcast
    # over voxel (z, y, x) and sample (z, y, x)), averaged over the samples
    z, y, x = (a.astype(np.float64) for a in axes)
    d2 = _on_axis(z**2, 0) + _on_axis(y**2, 1) + _on_axis(x**2, 2)
    if lesion.length_mm > 0:
        t = _on_axis(z * u[0], 0) + _on_axis(y * u[1], 1) + _on_axis(x * u[2], 2)
        tc = np.clip(t, -lesion.length_mm / 2, lesion.length_mm / 2)
        d2 = d2 - 2 * tc * t + tc * tc
    inside = d2 <= r * r
    frac = inside.mean(axis=(3, 4, 5))
    if psf_sigma_mm > 0:
        frac = ndimage.gaussian_filter(
            frac, (0, psf_sigma_mm / spacing_mm[1], psf_sigma_mm / spacing_mm[2]), mode="constant"
        )
    return box, frac.astype(np.float32)


def insert_lesions(
    volume: CTVolume,
    lesions: list[Lesion],
    *,
    thickness_mm: float | None = None,
    psf_sigma_mm: float = PSF_SIGMA_MM,
) -> tuple[CTVolume, np.ndarray]:
    """A copy of ``volume`` with ``lesions`` in it, and their reference label map.

    Args:
        volume: the real scan (not changed).
        lesions: the calcifications.
        thickness_mm: the slice thickness (default: the scan's, else its slice spacing).
        psf_sigma_mm: the in-plane point spread.

    Returns:
        (the hybrid volume; an int16 map of the voxels of 130 HU or more that a lesion raised
        above 130 HU or holds at least a tenth of, numbered 1, 2, ... by lesion).
    """
    thick = thickness_mm or volume.meta.slice_thickness_mm or volume.spacing_mm[0]
    hu = np.array(volume.hu, dtype=np.float32, copy=True)
    ref = np.zeros(hu.shape, np.int16)
    for k, lesion in enumerate(lesions, start=1):
        box, f = lesion_fraction(
            hu.shape,
            volume.spacing_mm,
            lesion,
            thickness_mm=float(thick),
            psf_sigma_mm=psf_sigma_mm,
        )
        before = hu[box]
        after = (1 - f) * before + f * lesion.peak_hu
        hu[box] = after
        mine = (after >= CALCIUM_THRESHOLD_HU) & ((before < CALCIUM_THRESHOLD_HU) | (f >= 0.1))
        ref[box][mine] = k
    return volume.with_array(hu), ref


@dataclass(frozen=True)
class Site:
    """A lesion site: its centre (z, y, x) in mm from voxel (0, 0, 0), the coronary artery
    whose groove it stands for (:func:`artery_at`) and the in-plane direction (y, x) along the
    heart's surface there (perpendicular to the line from the heart's centre)."""

    centre_mm: tuple[float, float, float]
    artery: int
    tangent_yx: tuple[float, float] = (0.0, 1.0)


def artery_at(dy_mm: float, dx_mm: float, radius_mm: float) -> int:
    """The coronary artery of a site on the heart's surface, from where it lies around the
    heart's centre in its slice (image x to the patient's left, y to the back): on the right side
    (more than a fifth of the heart's radius right of its centre) the RCA, in front the LAD,
    behind on the left the LCX. A rough rule of the grooves, good enough for CAC, not for
    per-artery figures.

    Args:
        dy_mm: the site's distance behind the heart's centre (negative: in front).
        dx_mm: its distance to the patient's left of the centre (negative: to the right).
        radius_mm: the heart's radius in that slice.

    Returns:
        The label value of the LAD, LCX or RCA.
    """
    if dx_mm < -0.2 * radius_mm:
        return int(Label.RCA)
    return int(Label.LAD) if dy_mm < 0 else int(Label.LCX)


def _slice_sites(sl: np.ndarray, spacing_yx: tuple[float, float], lung_mm: float) -> list:
    """(y, x, artery, tangent) of every epicardial-fat pixel of one slice (see
    :func:`epicardial_sites`)."""
    sy, sx = spacing_yx
    soft = ndimage.binary_opening(
        (sl >= SOFT_HU[0]) & (sl <= SOFT_HU[1]), iterations=max(1, int(round(3 / sy)))
    )
    lab, count = ndimage.label(soft)
    if not count:
        return []
    heart = lab == 1 + int(np.argmax(ndimage.sum(soft, lab, range(1, count + 1))))
    cy, cx = ndimage.center_of_mass(heart)
    radius = float(np.sqrt(heart.sum() * sy * sx / np.pi))
    to_heart = ndimage.distance_transform_edt(~heart, sampling=(sy, sx))
    to_air = ndimage.distance_transform_edt(sl > -400, sampling=(sy, sx))
    fat = (sl >= FAT_HU[0]) & (sl <= FAT_HU[1])
    ys, xs = np.nonzero(fat & (to_heart >= 1) & (to_heart <= 3) & (to_air >= lung_mm))
    front = (ys - cy) * sy <= BACK_LIMIT * radius  # not behind the atria (oesophagus, aorta)
    out = []
    for y, x in zip(ys[front], xs[front]):
        dy, dx = (y - cy) * sy, (x - cx) * sx
        norm = max(float(np.hypot(dy, dx)), 1e-6)
        out.append((y, x, artery_at(dy, dx, radius), (-dx / norm, dy / norm)))
    return out


def epicardial_sites(
    volume: CTVolume,
    z_range: tuple[int, int],
    box_yx: tuple[tuple[int, int], tuple[int, int]],
    n: int,
    *,
    rng: np.random.Generator,
    separation_mm: float = 20.0,
    lung_mm: float = 6.0,
) -> list[Site]:
    """Up to ``n`` lesion sites in the epicardial fat of a real scan.

    In each slice of ``z_range`` the heart is the largest component of soft tissue inside the box
    (opened by 3 mm, so that thin links to the chest wall break); a site is a fat voxel within
    1-3 mm of it, not far behind its centre (:data:`BACK_LIMIT`), at least ``lung_mm`` from air
    (lung) and ``separation_mm`` from every other site.

    Args:
        volume: the real scan.
        z_range: the heart's slices [first, last].
        box_yx: ((y0, y1), (x0, x1)) around the heart, in voxels.
        n: how many sites.
        rng: the random generator (sites are drawn in a random order).
        separation_mm: the smallest distance between two sites.
        lung_mm: the smallest distance to air.

    Returns:
        The :class:`Site` list.
    """
    sz, sy, sx = volume.spacing_mm
    (y0, y1), (x0, x1) = box_yx
    candidates = []
    for z in range(z_range[0], z_range[1] + 1):
        sl = np.asarray(volume.hu[z, y0:y1, x0:x1], dtype=np.float32)
        candidates += [
            Site((z * sz, (y + y0) * sy, (x + x0) * sx), a, t)
            for y, x, a, t in _slice_sites(sl, (sy, sx), lung_mm)
        ]
    sites: list[Site] = []
    for i in rng.permutation(len(candidates)):
        c = np.array(candidates[i].centre_mm)
        if all(np.linalg.norm(c - np.array(s.centre_mm)) >= separation_mm for s in sites):
            sites.append(candidates[i])
            if len(sites) == n:
                break
    return sites


def random_lesions(
    sites: list[Site], rng: np.random.Generator, *, elongated: float = 0.0
) -> list[Lesion]:
    """A lesion at every site: a sphere 2.5-5 mm across, 400-1000 HU; or, for a share
    ``elongated`` of them, a capsule along the heart's surface as heavy calcification runs along
    an artery: 2-4 mm across, 5-20 mm long, tilted out of the slice by up to 60 degrees.

    Args:
        sites: where.
        rng: the random generator.
        elongated: the share of capsules (0: only spheres, drawn as before capsules existed).

    Returns:
        The lesions, one per site.
    """
    out = []
    for s in sites:
        centre = tuple(float(v) for v in s.centre_mm)
        if elongated > 0 and rng.random() < elongated:
            tilt = rng.uniform(-np.pi / 3, np.pi / 3)
            ty, tx = s.tangent_yx
            u = (float(np.sin(tilt)), float(np.cos(tilt) * ty), float(np.cos(tilt) * tx))
            d, hu, length = rng.uniform(2.0, 4.0), rng.uniform(400, 1000), rng.uniform(5, 20)
            out.append(Lesion(centre, float(d), float(hu), float(length), u))  # type: ignore[arg-type]
            continue
        d = float(rng.choice([2.5, 3.0, 3.5, 4.0, 5.0]))
        out.append(Lesion(centre, d, float(rng.uniform(400, 1000))))  # type: ignore[arg-type]
    return out


#: the field of view of an ECG-gated calcium-scoring CT (mm across) and how far it reaches above
#: and below the heart's slices (mm): :func:`heart_only_cut`
HEART_ONLY_FOV_MM = 200.0
HEART_ONLY_MARGIN_MM = 10.0


def heart_only_cut(
    volume: CTVolume, ref: np.ndarray, lesions: list[Lesion], heart: dict
) -> tuple[CTVolume, np.ndarray]:
    """A hybrid scan cut as an ECG-gated calcium-scoring CT sees it: a square field of view of
    :data:`HEART_ONLY_FOV_MM` around the inserted lesions' centre, the heart's slices and
    :data:`HEART_ONLY_MARGIN_MM` above and below (clipped to the scan).

    Args:
        volume: the hybrid scan (:func:`hybrid_scan`).
        ref: its lesion of every voxel.
        lesions: its lesions.
        heart: its heart, {"z": [first, last], ...} in voxels.

    Returns:
        (the cut, its lesion of every voxel); the cut keeps physical positions (its origin moves
        to its first voxel).
    """
    from calcscore.viz import crop

    c = np.mean([le.centre_mm for le in lesions], axis=0) / np.array(volume.spacing_mm)
    h = int(round(HEART_ONLY_FOV_MM / 2 / volume.spacing_mm[1]))
    m = int(round(HEART_ONLY_MARGIN_MM / volume.spacing_mm[0]))
    z0, z1 = max(0, heart["z"][0] - m), min(volume.shape[0], heart["z"][1] + m + 1)
    y0, x0 = max(0, int(c[1]) - h), max(0, int(c[2]) - h)
    box = (slice(z0, z1), slice(y0, int(c[1]) + h), slice(x0, int(c[2]) + h))
    return crop(volume, box), ref[box]


def hybrid_scan(
    volume: CTVolume, heart: dict, n: int, rng: np.random.Generator, *, elongated: float = 0.0
) -> tuple[CTVolume, np.ndarray, list[Site], list[Lesion]]:
    """A copy of a real scan with up to ``n`` synthetic coronary lesions in the epicardial fat of
    its heart (:func:`epicardial_sites`, :func:`random_lesions`, :func:`insert_lesions`).

    Args:
        volume: the real scan (unchanged).
        heart: {"z": [first, last], "y": [y0, y1], "x": [x0, x1]} in voxels (an entry of
            ``data/real_negatives/hearts.json``).
        n: how many lesions.
        rng: the random generator.
        elongated: the share of capsules (:func:`random_lesions`).

    Returns:
        (the copy, the lesion of every voxel (0: none, k: the k-th lesion, where it is >= 130
        HU), the sites, the lesions).
    """
    box = (tuple(heart["y"]), tuple(heart["x"]))
    sites = epicardial_sites(volume, tuple(heart["z"]), box, n, rng=rng)
    lesions = random_lesions(sites, rng, elongated=elongated)
    copy, ref = insert_lesions(volume, lesions)
    return copy, ref, sites, lesions
