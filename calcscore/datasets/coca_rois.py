"""COCA's calcium annotations: the OsiriX ROI XML files of the gated scans (:func:`read_calcium_xml`)
and their polygons rasterised on the scan's grid (:func:`rasterize_rois`). Part of
:mod:`calcscore.datasets.coca`, which imports whole patients.
"""

from __future__ import annotations

import logging
import math
import plistlib
import re
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.errors import InputError
from calcscore.labels import Label
from calcscore.volume import CTVolume, LabelVolume, _Grid

log = logging.getLogger("calcscore.datasets.coca")

#: ROI names of the COCA annotations (lower case) and their labels; the left main is LAD.
ROI_LABELS: dict[str, Label] = {
    "left anterior descending artery": Label.LAD,
    "left coronary artery": Label.LAD,
    "left circumflex artery": Label.LCX,
    "right coronary artery": Label.RCA,
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_POINT_TOLERANCE_PX = 0.5  # how far outside the image a polygon vertex may lie (pixels)
_SLICE_TOLERANCE = 0.25  # how far off a slice centre a ROI's z may lie (slices)


@dataclass(frozen=True)
class CocaRoi:
    """One annotated polygon.

    ``points_mm``: (N, 3) patient LPS (x, y, z) mm; ``points_px``: (N, 2) (column, row) or None;
    ``area_cm2``, ``max_hu``, ``mean_hu``, ``min_hu``: as OsiriX measured them (nan if absent).
    """

    image_index: int
    name: str
    label: Label
    points_mm: np.ndarray
    points_px: np.ndarray | None
    area_cm2: float
    max_hu: float
    mean_hu: float
    min_hu: float


# ------------------------------------------------------------------------------ annotations
def read_calcium_xml(path: str | Path) -> list[CocaRoi]:
    """Read an OsiriX ROI export (COCA ``calcium_xml/<id>.xml``).

    ROIs without points are skipped with a warning. Raises :class:`InputError` for a file that
    is not a readable plist, lacks ``Images``, has an unknown ROI name or unreadable points.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            doc = plistlib.load(fh)
    except FileNotFoundError:
        raise InputError(p, "no such annotation file", "check the path") from None
    except (
        plistlib.InvalidFileException,
        xml.parsers.expat.ExpatError,
        ValueError,
        TypeError,
        OverflowError,
    ) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise InputError(
            p,
            f"is not a readable OsiriX ROI plist ({type(exc).__name__}: {detail})",
            "export the ROIs again from OsiriX or repair the XML",
        ) from None
    images = doc.get("Images") if isinstance(doc, dict) else None
    if not isinstance(images, list):
        raise InputError(
            p,
            "has no 'Images' list (not an OsiriX ROI export)",
            "export the ROIs with OsiriX's 'Export ROIs' as XML",
        )
    rois: list[CocaRoi] = []
    skipped = 0
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise InputError(p, f"Images[{i}] is not a dict", "repair the XML")
        index = image.get("ImageIndex", -1)
        for j, roi in enumerate(image.get("ROIs") or []):
            where = f"Images[{i}] (ImageIndex {index}) ROI {j}"
            if not isinstance(roi, dict):
                raise InputError(p, f"{where} is not a dict", "repair the XML")
            name = str(roi.get("Name", "")).strip()
            label = ROI_LABELS.get(name.lower())
            if label is None:
                known = ", ".join(repr(n.title()) for n in ROI_LABELS)
                raise InputError(
                    p,
                    f"{where} has an unknown vessel name {name!r}",
                    f"rename it to one of {known}",
                )
            points_mm = _parse_points(roi.get("Point_mm"), 3, p, where, "Point_mm")
            if points_mm is None or len(points_mm) == 0:
                log.warning("%s: %s (%s) has no points; skipped", p, where, name)
                skipped += 1
                continue
            points_px = _parse_points(roi.get("Point_px"), 2, p, where, "Point_px")
            if points_px is not None and len(points_px) != len(points_mm):
                log.warning(
                    "%s: %s has %d Point_px but %d Point_mm; using Point_mm",
                    p,
                    where,
                    len(points_px),
                    len(points_mm),
                )
                points_px = None
            rois.append(
                CocaRoi(
                    int(index),
                    name,
                    label,
                    points_mm,
                    points_px,
                    _float(roi.get("Area")),
                    _float(roi.get("Max")),
                    _float(roi.get("Mean")),
                    _float(roi.get("Min")),
                )
            )
    log.info("%s: %d ROIs (%d without points skipped)", p, len(rois), skipped)
    return rois


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _parse_points(values, dims: int, path: Path, where: str, key: str) -> np.ndarray | None:
    if values is None:
        return None
    if not isinstance(values, list):
        raise InputError(path, f"{where}: {key} is not a list of points", "repair the XML")
    out = []
    for v in values:
        nums = re.findall(_NUMBER, str(v))
        if len(nums) != dims:
            raise InputError(
                path,
                f"{where}: {key} entry {v!r} is not a point of {dims} numbers",
                f"write points as '({', '.join('xyz'[:dims])})'",
            )
        out.append([float(n) for n in nums])
    return np.asarray(out, float).reshape(-1, dims)


# ------------------------------------------------------------------------------ rasterising
def physical_to_index(grid: _Grid, points_xyz: np.ndarray) -> np.ndarray:
    """(N, 3) patient LPS points (x, y, z) mm -> (N, 3) continuous voxel indices (z, y, x)."""
    zyx = np.atleast_2d(np.asarray(points_xyz, float))[:, ::-1]
    m = grid.direction @ np.diag(grid.spacing_mm)
    return np.linalg.solve(m, (zyx - np.asarray(grid.origin_mm)).T).T


def _roi_slice_and_points(
    roi: CocaRoi, volume: CTVolume, source: str | Path | None
) -> tuple[int, np.ndarray]:
    """The slice a ROI lies on and its polygon's (column, row) points; an :class:`InputError`
    naming ``source`` for a ROI outside the image or on several slices."""
    nz, ny, nx = volume.shape
    idx = physical_to_index(volume, roi.points_mm)
    kz = idx[:, 0]
    k = int(np.round(np.median(kz)))
    what = f"ROI {roi.name!r} of ImageIndex {roi.image_index}"
    z_mm = float(np.median(roi.points_mm[:, 2]))
    if not (-_SLICE_TOLERANCE <= np.median(kz) <= nz - 1 + _SLICE_TOLERANCE):
        lo, hi = sorted(float(volume.index_to_physical([[kk, 0, 0]])[0, 0]) for kk in (0, nz - 1))
        raise InputError(
            source,
            f"{what} lies outside the image: z = {z_mm:.2f} mm, the series "
            f"covers z = {lo:.2f} to {hi:.2f} mm",
            "check that the annotation belongs to this series",
        )
    if np.max(np.abs(kz - k)) > 0.5 + _SLICE_TOLERANCE:
        raise InputError(
            source,
            f"{what} has points on several slices ({kz.min():.2f} to {kz.max():.2f})",
            "a ROI must lie on one axial slice",
        )
    if roi.points_px is not None:
        xy = roi.points_px
        from_mm = idx[:, [2, 1]]
        if np.max(np.abs(xy - from_mm)) > 1.0:
            log.warning(
                "%s: %s: Point_px and Point_mm disagree by up to %.1f pixels; using Point_px",
                source,
                what,
                float(np.max(np.abs(xy - from_mm))),
            )
    else:
        xy = idx[:, [2, 1]]
    tol = _POINT_TOLERANCE_PX
    if (
        xy[:, 0].min() < -0.5 - tol
        or xy[:, 0].max() > nx - 0.5 + tol
        or xy[:, 1].min() < -0.5 - tol
        or xy[:, 1].max() > ny - 0.5 + tol
    ):
        raise InputError(
            source,
            f"{what} lies outside the image: its points reach column "
            f"{xy[:, 0].min():.1f}..{xy[:, 0].max():.1f}, row {xy[:, 1].min():.1f}.."
            f"{xy[:, 1].max():.1f} of a {nx} x {ny} image",
            "check that the annotation belongs to this series",
        )
    return k, xy


def rasterize_rois(
    rois: list[CocaRoi],
    volume: CTVolume,
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    source: str | Path | None = None,
) -> tuple[LabelVolume, pd.DataFrame]:
    """Fill each ROI's polygon on its slice and label its voxels of at least ``threshold_hu``.

    The slice is the one at the z of the ROI's ``Point_mm``. Raises :class:`InputError` naming
    ``source`` for a ROI outside the image or one whose points do not lie on one slice.

    Args:
        rois: the ROIs of :func:`read_calcium_xml`.
        volume: the scan they were drawn on.
        threshold_hu: voxels of a polygon at or above this get its label.
        source: the annotation file, named in errors and warnings.

    Returns:
        (the label map on ``volume``'s grid, one row per ROI: ``image_index, slice, name,
        label, n_pixels, n_calcium, area_cm2, filled_area_cm2, max_hu, image_max_hu``).
    """
    from matplotlib.path import Path as PolygonPath

    nz, ny, nx = volume.shape
    labels = np.zeros(volume.shape, np.uint8)
    rows = []
    overlaps = 0
    for roi in rois:
        k, xy = _roi_slice_and_points(roi, volume, source)
        inside = _fill_polygon(PolygonPath, xy, ny, nx)
        hu = volume.hu[k]
        calcium = inside & (hu >= threshold_hu)
        clash = calcium & (labels[k] != 0) & (labels[k] != roi.label)
        if clash.any():
            overlaps += int(clash.sum())
        labels[k][calcium] = roi.label
        pixel_cm2 = volume.spacing_mm[1] * volume.spacing_mm[2] / 100.0
        rows.append(
            {
                "image_index": roi.image_index,
                "slice": k,
                "name": roi.name,
                "label": roi.label.name,
                "n_pixels": int(inside.sum()),
                "n_calcium": int(calcium.sum()),
                "area_cm2": roi.area_cm2,
                "filled_area_cm2": float(inside.sum() * pixel_cm2),
                "max_hu": roi.max_hu,
                "image_max_hu": float(hu[inside].max()) if inside.any() else math.nan,
            }
        )
    if overlaps:
        log.warning(
            "%s: %d voxels lie in ROIs of two vessels; the later ROI's label was kept",
            source,
            overlaps,
        )
    table = pd.DataFrame(
        rows,
        columns=[
            "image_index",
            "slice",
            "name",
            "label",
            "n_pixels",
            "n_calcium",
            "area_cm2",
            "filled_area_cm2",
            "max_hu",
            "image_max_hu",
        ],
    )
    return LabelVolume.like(volume, labels), table


def _fill_polygon(polygon_path, xy: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Pixels (row, column) whose centres lie inside the closed polygon ``xy`` (column, row)."""
    mask = np.zeros((ny, nx), bool)
    c0 = max(int(np.floor(xy[:, 0].min())), 0)
    c1 = min(int(np.ceil(xy[:, 0].max())) + 1, nx)
    r0 = max(int(np.floor(xy[:, 1].min())), 0)
    r1 = min(int(np.ceil(xy[:, 1].max())) + 1, ny)
    if c1 <= c0 or r1 <= r0:
        return mask
    if len(xy) >= 3:
        rr, cc = np.mgrid[r0:r1, c0:c1]
        centres = np.stack([cc.ravel(), rr.ravel()], axis=1).astype(float)
        inside = polygon_path(xy, closed=False).contains_points(centres)
        mask[r0:r1, c0:c1] = inside.reshape(rr.shape)
    if not mask.any():  # a polygon smaller than a pixel: the pixels of its vertices
        cols = np.clip(np.round(xy[:, 0]).astype(int), 0, nx - 1)
        rows = np.clip(np.round(xy[:, 1]).astype(int), 0, ny - 1)
        mask[rows, cols] = True
    return mask
