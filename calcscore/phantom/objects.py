"""Small dense objects (calcifications, metal) at sub-voxel resolution, their metal streaks and
labels, and the reconstruction circle (moved out of :mod:`calcscore.phantom.acquisition`).

Each object is rendered on a finer grid in its own bounding box, blurred with the kernel's
point-spread function and the slice profile, and added to a reconstructed image, so its partial
volume and blur are right at any voxel size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.phantom._draw import Box, GridSpec, coverage, ellipsoid_sd, tube
from calcscore.phantom.acquisition import KERNEL_MODELS, Acquisition
from calcscore.phantom.calcification import Lesion
from calcscore.phantom.scanners import check_kernel


@dataclass
class RenderedObject:
    lesion: Lesion
    box: Box
    weight: np.ndarray  # blurred fraction of the object per output voxel of the box


def render_objects(
    hu: np.ndarray, acq: Acquisition, kernel: str, lesions: list[Lesion], background_hu
) -> list[RenderedObject]:
    """Add each object, blurred by the kernel, into ``hu`` (in place); return the weights.

    Args:
        hu: the reconstructed (z, y, x) HU on ``acq.grid``, changed in place.
        acq: the acquisition (grid, slice thickness, kVp).
        kernel: "soft" or "sharp": the point-spread function the objects are blurred with.
        lesions: the objects (calcifications, confounders, metal), points (x, y, z) mm.
        background_hu: a function of a point (x, y, z) mm giving the anatomy's HU there, which
            an object replaces by its peak HU.

    Returns:
        one :class:`RenderedObject` (box and blurred weight) per object that meets the grid.
    """
    grid = acq.grid
    km = KERNEL_MODELS[check_kernel(kernel)]
    sz, sy, sx = grid.spacing_mm
    sigma_z = acq.slice_thickness_mm / 2.355
    margin = (
        3 * km.psf_sigma_mm + (3 * km.enhance_sigma_mm if km.enhance else 0) + 1.5 * sigma_z + 1.0
    )
    out = []
    for les in lesions:
        ext = les.extent_mm() + margin
        c = np.asarray(les.center_mm)
        box = grid.box(c - ext, c + ext)
        if box is None:
            continue
        n_out = [s.stop - s.start for s in box]
        fxy = 2 if np.prod(n_out) * 4 * 3 <= 600_000 else 1
        fz = max(1, int(round(sz / 0.7))) if fxy > 1 else 1
        fac = (fz, fxy, fxy)
        f_sp = (sz / fz, sy / fxy, sx / fxy)
        f_origin = tuple(
            grid.origin_mm[a] + box[a].start * grid.spacing_mm[a] - (fac[a] - 1) / 2 * f_sp[a]
            for a in range(3)
        )
        fine = GridSpec((n_out[0] * fz, n_out[1] * fxy, n_out[2] * fxy), f_sp, f_origin)
        full = (slice(0, fine.shape[0]), slice(0, fine.shape[1]), slice(0, fine.shape[2]))
        width = max(f_sp[1], f_sp[2])
        cov = np.zeros(fine.shape, np.float32)
        for gx, gy, gz, w in les.ghosts:
            shift = np.array([gx, gy, gz])
            if les.points is not None:
                res = tube(fine, les.points + shift, les.axes_mm[0], margin_mm=width)
                if res is None:
                    continue
                b, sd = res
                cov[b] += np.float32(w) * coverage(sd, width)
            else:
                sd = ellipsoid_sd(fine, full, c + shift, les.axes_mm, les.rot)
                cov += np.float32(w) * coverage(sd, width)
        sig = (sigma_z / f_sp[0], km.psf_sigma_mm / f_sp[1], km.psf_sigma_mm / f_sp[2])
        blurred = ndimage.gaussian_filter(cov, sig, mode="constant", truncate=3.0)
        if km.enhance:
            wide = ndimage.gaussian_filter(
                blurred,
                (0, km.enhance_sigma_mm / f_sp[1], km.enhance_sigma_mm / f_sp[2]),
                mode="constant",
                truncate=3.0,
            )
            blurred += np.float32(km.enhance) * (blurred - wide)
        weight = blurred.reshape(n_out[0], fz, n_out[1], fxy, n_out[2], fxy).mean(axis=(1, 3, 5))
        bg = float(background_hu(c))
        # calcium attenuates less at 140 kVp than at 120 kVp (about 10 % fewer HU)
        peak = les.peak_hu if les.is_metal or acq.kvp <= 120 else bg + 0.9 * (les.peak_hu - bg)
        hu[box] += weight * np.float32(peak - bg)
        out.append(RenderedObject(les, box, weight))
    return out


def add_metal_streaks(
    hu: np.ndarray, grid: GridSpec, rendered: list[RenderedObject], kernel: str, rng
) -> None:
    """Bright and dark streaks through compact metal (sternal wires, a lead tip), in place.

    Args:
        hu: (z, y, x) HU on ``grid``, changed in place.
        grid: the grid of ``hu``.
        rendered: the objects from :func:`render_objects`; only metal ones streak.
        kernel: "soft" or "sharp" (sharp streaks are stronger).
        rng: seed or numpy Generator of the streaks' number, angles and strengths.
    """
    rng = np.random.default_rng(rng)
    amp = 1.0 if kernel == "soft" else 1.5
    y_all, x_all = grid.axis_mm(1), grid.axis_mm(2)
    for ro in rendered:
        if (
            not ro.lesion.is_metal
            or ro.lesion.kind == "pacemaker_lead"
            and ro.lesion.points is not None
        ):
            continue
        n = int(rng.integers(5, 10))
        angles = rng.uniform(0, np.pi, n)
        strength = rng.uniform(80, 350, n) * rng.choice([-1.0, 1.0], n) * amp
        zs = range(ro.box[0].start, ro.box[0].stop)
        for kz, k in enumerate(zs):
            w = ro.weight[kz]
            wmax = float(w.max())
            if wmax < 0.3:
                continue
            jj, ii = np.nonzero(w > 0.3 * wmax)
            cy = float(y_all[ro.box[1]][jj].mean())
            cx = float(x_all[ro.box[2]][ii].mean())
            b = grid.box(
                (cx - 90, cy - 90, grid.axis_mm(0)[k] - 0.1),
                (cx + 90, cy + 90, grid.axis_mm(0)[k] + 0.1),
            )
            if b is None:
                continue
            yy = y_all[b[1]].astype(np.float32)[:, None] - cy
            xx = x_all[b[2]].astype(np.float32)[None, :] - cx
            r = np.sqrt(xx * xx + yy * yy)
            th = np.arctan2(yy, xx)
            acc = np.zeros(r.shape, np.float32)
            for a, s in zip(angles, strength):
                dist = r * np.abs(np.sin(th - a))
                acc += (
                    np.float32(s * min(wmax, 1.0))
                    * np.exp(-((dist / 1.6) ** 2))
                    * np.exp(-r / 70.0)
                )
            hu[k, b[1], b[2]] += acc


def label_objects(
    hu: np.ndarray,
    labels: np.ndarray,
    rendered: list[RenderedObject],
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
) -> None:
    """Label what an observer marks: voxels >= threshold of each calcified object, in place.

    A voxel belongs to an object where the object raises it visibly (weight >= 0.05) and it
    is connected (26-neighbourhood, >= threshold) to the object's core (weight >= 0.5).

    Args:
        hu: the final (z, y, x) HU.
        labels: (z, y, x) label map of the shape of ``hu``, changed in place.
        rendered: the objects from :func:`render_objects`; those with label 0 are skipped.
        threshold_hu: the calcium threshold (HU).
    """
    struct = np.ones((3, 3, 3), bool)
    for ro in rendered:
        if ro.lesion.label == 0:
            continue
        sub = hu[ro.box]
        w = ro.weight
        cand = (sub >= threshold_hu) & (w >= 0.05)
        if not cand.any():
            continue
        comp, n = ndimage.label(cand, structure=struct)
        core = cand & (w >= min(0.5, 0.6 * float(w.max())))
        ids = np.unique(comp[core])
        ids = ids[ids > 0]
        if len(ids) == 0:
            continue
        keep = np.isin(comp, ids)
        labels[ro.box][keep] = ro.lesion.label


def outside_fov(hu: np.ndarray, grid: GridSpec, value: float) -> None:
    """Write ``value`` outside the circular reconstruction field of view (in place).

    Args:
        hu: (z, y, x) HU on ``grid``, changed in place.
        grid: the grid of ``hu``; the circle is the largest that fits its slice.
        value: the HU written outside the circle (the scanner's outside-field-of-view value).
    """
    _, ny, nx = grid.shape
    yy = (np.arange(ny) - (ny - 1) / 2)[:, None] * grid.spacing_mm[1]
    xx = (np.arange(nx) - (nx - 1) / 2)[None, :] * grid.spacing_mm[2]
    r = min(ny * grid.spacing_mm[1], nx * grid.spacing_mm[2]) / 2
    mask = xx * xx + yy * yy > r * r
    if mask.any():
        hu[:, mask] = np.float32(value)
