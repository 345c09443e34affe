"""The COCA data set (Stanford AIMI, "Coronary Calcium and chest CT").

Layout of the download (``ROOT``)::

    Gated_release_final/patient/<id>/<series>/*.dcm     one ECG-gated calcium scoring series
    Gated_release_final/calcium_xml/<id>.xml            its calcium ROIs (OsiriX export)
    deidentified_nongated/scores.xlsx                   per-vessel Agatston scores of the
                                                        non-gated scans (no voxel annotation)

The annotation is an Apple property list: ``Images`` is a list of dicts with ``ImageIndex`` and
``ROIs``; each ROI has ``Name`` (the vessel), ``Point_mm`` (``"(x, y, z)"`` strings, patient
LPS mm) and ``Point_px`` (``"(x, y)"`` strings: column, row) of a closed polygon, ``Area``
(cm^2) and ``Max``, ``Mean``, ``Min`` (HU). ``ImageIndex`` counts from the last image of the
series, so a ROI is matched to its slice by the z of its ``Point_mm``, not by ``ImageIndex``.
The polygon (``Point_px``; pixel centres at integer coordinates, as in DICOM) is filled and its
pixels of at least 130 HU get the vessel's label; the left main ("Left Coronary Artery") counts
as LAD, as in Lessmann et al. 2018. ROIs without points are skipped with a warning. A patient
without an annotation file has no calcium: its label map is empty.
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

from calcscore.checks import classify_kernel
from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.datasets._common import (
    ImportResult,
    check_format,
    finish,
    prepare_out,
    run_scans,
    write_scan,
)
from calcscore.errors import InputError, optional_import
from calcscore.io import atomic_path, read_volume
from calcscore.labels import Label
from calcscore.volume import CTVolume, LabelVolume, _Grid

log = logging.getLogger(__name__)

GATED_DIR = "Gated_release_final"
NONGATED_DIR = "deidentified_nongated"
NONGATED_SCORES = "scores.xlsx"
REFERENCE_SCORES_FILE = "reference_scores_nongated.csv"

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


def rasterize_rois(
    rois: list[CocaRoi],
    volume: CTVolume,
    *,
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    source: str | Path | None = None,
) -> tuple[LabelVolume, pd.DataFrame]:
    """Fill each ROI's polygon on its slice and label its voxels of at least ``threshold_hu``.

    The slice is the one at the z of the ROI's ``Point_mm``. Returns the label map and one row
    per ROI (``image_index, slice, name, label, n_pixels, n_calcium, area_cm2, filled_area_cm2,
    max_hu, image_max_hu``). Raises :class:`InputError` naming ``source`` for a ROI outside the
    image or one whose points do not lie on one slice.
    """
    from matplotlib.path import Path as PolygonPath

    nz, ny, nx = volume.shape
    labels = np.zeros(volume.shape, np.uint8)
    rows = []
    overlaps = 0
    for roi in rois:
        idx = physical_to_index(volume, roi.points_mm)
        kz = idx[:, 0]
        k = int(np.round(np.median(kz)))
        what = f"ROI {roi.name!r} of ImageIndex {roi.image_index}"
        z_mm = float(np.median(roi.points_mm[:, 2]))
        if not (-_SLICE_TOLERANCE <= np.median(kz) <= nz - 1 + _SLICE_TOLERANCE):
            lo, hi = sorted(
                float(volume.index_to_physical([[kk, 0, 0]])[0, 0]) for kk in (0, nz - 1)
            )
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


# ------------------------------------------------------------------------------ one patient
def find_series(patient_dir: Path) -> Path:
    """The one DICOM series folder of a COCA patient (``patient/<id>/<series>/``)."""
    if not patient_dir.is_dir():
        raise InputError(
            patient_dir,
            "is missing: the annotation has no DICOM series",
            "download the patient's series, or remove the annotation",
        )
    subdirs = sorted(
        d for d in patient_dir.iterdir() if d.is_dir() and any(f.is_file() for f in d.iterdir())
    )
    files = [f for f in patient_dir.iterdir() if f.is_file() and not f.name.startswith(".")]
    if files and not subdirs:
        return patient_dir
    if len(subdirs) == 1:
        return subdirs[0]
    if not subdirs:
        raise InputError(patient_dir, "holds no DICOM series", "download the patient's series")
    names = ", ".join(d.name for d in subdirs)
    raise InputError(
        patient_dir,
        f"holds {len(subdirs)} series ({names}); COCA has one per patient",
        "keep the calcium scoring series only",
    )


def load_gated_patient(
    root: str | Path, patient_id: str, *, threshold_hu: float = CALCIUM_THRESHOLD_HU
) -> tuple[CTVolume, LabelVolume, pd.DataFrame]:
    """Read one gated COCA patient: its CT, its label map and the ROI table."""
    gated = Path(root) / GATED_DIR
    xml_path = gated / "calcium_xml" / f"{patient_id}.xml"
    patient_dir = gated / "patient" / patient_id
    if not patient_dir.is_dir() and xml_path.is_file():
        raise InputError(
            xml_path,
            f"is an annotation without its DICOM series ({patient_dir} is missing)",
            "download the patient's series, or leave the annotation out",
        )
    series = find_series(patient_dir)
    volume = read_volume(series)
    rois = read_calcium_xml(xml_path) if xml_path.is_file() else []
    labels, table = rasterize_rois(rois, volume, threshold_hu=threshold_hu, source=xml_path)
    return volume, labels, table


def gated_patient_ids(root: str | Path) -> list[str]:
    """Patient ids with a series folder or an annotation file, sorted."""
    gated = Path(root) / GATED_DIR
    ids = set()
    if (gated / "patient").is_dir():
        ids |= {
            d.name
            for d in (gated / "patient").iterdir()
            if d.is_dir() and not d.name.startswith(".")
        }
    if (gated / "calcium_xml").is_dir():
        ids |= {f.stem for f in (gated / "calcium_xml").glob("*.xml")}
    return sorted(ids)


# ------------------------------------------------------------------------------ non-gated scores
def read_nongated_scores(path: str | Path) -> pd.DataFrame:
    """Reference Agatston scores of the non-gated scans (``scores.xlsx`` or a CSV of it).

    Input columns: ``filename, LCA, LAD, LCX, RCA, total`` (case does not matter). Returns
    ``scan_id, agatston_LAD, agatston_LCX, agatston_RCA, agatston_CAC, agatston_LM`` where LAD
    includes the left main (LCA), as in calcscore's labels, and CAC is the file's total.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such scores file", "check the path")
    try:
        if p.suffix.lower() in (".xlsx", ".xlsm"):
            optional_import("openpyxl", "reading the COCA scores.xlsx", "io")
            df = pd.read_excel(p, engine="openpyxl")
        else:
            df = pd.read_csv(p)
    except (ValueError, KeyError, OSError, pd.errors.ParserError) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise InputError(
            p,
            f"could not be read as a table ({type(exc).__name__}: {detail})",
            "export it again as .xlsx or .csv",
        ) from None
    columns = {str(c).strip().lower(): c for c in df.columns}
    need = ("filename", "lca", "lad", "lcx", "rca", "total")
    missing = [c for c in need if c not in columns]
    if missing:
        raise InputError(
            p,
            f"lacks the column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})",
            "the COCA scores table has filename, LCA, LAD, LCX, RCA, total",
        )
    df = df.dropna(how="all")
    values = {}
    for c in need[1:]:
        col = pd.to_numeric(df[columns[c]], errors="coerce")
        bad = col.isna() | (col < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                p,
                f"column {columns[c]} holds {df[columns[c]].iloc[row]!r} in data row "
                f"{row + 1}, not a score >= 0",
                "fix the value",
            )
        values[c] = col.to_numpy(float)
    ids = [_scan_id_of(v) for v in df[columns["filename"]]]
    if len(set(ids)) != len(ids):
        dup = pd.Series(ids)[pd.Series(ids).duplicated()].iloc[0]
        raise InputError(p, f"lists {dup!r} more than once", "keep one row per scan")
    parts = values["lca"] + values["lad"] + values["lcx"] + values["rca"]
    off = np.abs(parts - values["total"]) > 0.5 + 1e-3 * values["total"]
    if off.any():
        log.warning(
            "%s: %d rows whose total differs from LCA + LAD + LCX + RCA (first: %s); "
            "agatston_CAC keeps the total",
            p,
            int(off.sum()),
            ids[int(np.flatnonzero(off)[0])],
        )
    return pd.DataFrame(
        {
            "scan_id": ids,
            "agatston_LAD": values["lad"] + values["lca"],
            "agatston_LCX": values["lcx"],
            "agatston_RCA": values["rca"],
            "agatston_CAC": values["total"],
            "agatston_LM": values["lca"],
        }
    )


def _scan_id_of(filename) -> str:
    name = Path(str(filename).strip()).name
    for suffix in (".nii.gz", ".zip", ".nii", ".dcm", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ------------------------------------------------------------------------------ the import
def import_coca(
    root: str | Path,
    out_dir: str | Path,
    *,
    fmt: str = "nii.gz",
    threshold_hu: float = CALCIUM_THRESHOLD_HU,
    keep_going: bool = True,
) -> ImportResult:
    """Import COCA from ``root`` into ``out_dir`` (see the module docstring for the layout).

    Writes ``images/<id>.<fmt>``, ``labels/<id>.<fmt>`` and ``manifest.csv`` (``scan_id`` and
    ``participant_id`` are the patient id; ``kernel`` is soft/sharp/unknown from the DICOM
    kernel name; ``scanner`` is manufacturer and model; then ``kernel_name``,
    ``slice_thickness_mm``, ``slice_spacing_mm``, ``annotation``, ``n_rois``) for the gated part,
    and ``reference_scores_nongated.csv`` (:func:`read_nongated_scores`) for the non-gated part.
    A patient whose input is malformed goes to ``import_errors.csv``; ``keep_going=False``
    raises at the first instead.
    """
    check_format(fmt)
    src = Path(root)
    if not src.is_dir():
        raise InputError(src, "is not a folder", "pass the folder of the COCA download")
    scores_path = src / NONGATED_DIR / NONGATED_SCORES
    if not scores_path.is_file() and (src / NONGATED_DIR / "scores.csv").is_file():
        scores_path = src / NONGATED_DIR / "scores.csv"
    ids = gated_patient_ids(src)
    if not ids and not scores_path.is_file():
        raise InputError(
            src,
            f"holds neither {GATED_DIR}/patient/ nor {NONGATED_DIR}/{NONGATED_SCORES}",
            "pass the folder of the COCA download",
        )
    out = prepare_out(out_dir)
    result = ImportResult(out_dir=out, manifest=None)
    if scores_path.is_file():
        ref = read_nongated_scores(scores_path)
        path = out / REFERENCE_SCORES_FILE
        with atomic_path(path) as tmp:
            ref.to_csv(tmp / path.name, index=False)
        result.tables["reference_scores"] = path
        log.info("wrote the reference scores of %d non-gated scans to %s", len(ref), path)

    def one(patient_id: str):
        def make_row() -> dict:
            volume, labels, table = load_gated_patient(src, patient_id, threshold_hu=threshold_hu)
            paths = write_scan(out, patient_id, volume, labels, fmt)
            meta = volume.meta
            kernel = classify_kernel(meta.kernel, meta.manufacturer)
            xml_path = src / GATED_DIR / "calcium_xml" / f"{patient_id}.xml"
            return {
                "scan_id": patient_id,
                "participant_id": patient_id,
                **paths,
                "kernel": kernel.kernel_class,
                "scanner": " ".join(x for x in (meta.manufacturer, meta.model) if x) or "unknown",
                "kernel_name": meta.kernel or "",
                "slice_thickness_mm": meta.slice_thickness_mm,
                "slice_spacing_mm": volume.spacing_mm[0],
                "annotation": str(xml_path.resolve()) if xml_path.is_file() else "",
                "n_rois": len(table),
                "n_calcium_voxels": int((labels.array > 0).sum()),
            }

        return patient_id, src / GATED_DIR / "patient" / patient_id, make_row

    rows = run_scans((one(i) for i in ids), result, keep_going=keep_going)
    return finish(out, rows, result)
