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
from calcscore.datasets.coca_rois import (  # noqa: F401  (re-exported as before)
    ROI_LABELS,
    CocaRoi,
    physical_to_index,
    rasterize_rois,
    read_calcium_xml,
)
from calcscore.errors import InputError, optional_import
from calcscore.io import atomic_path, read_volume
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)

GATED_DIR = "Gated_release_final"
NONGATED_DIR = "deidentified_nongated"
NONGATED_SCORES = "scores.xlsx"
REFERENCE_SCORES_FILE = "reference_scores_nongated.csv"


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
    """Read one gated COCA patient: its CT, its label map and the ROI table.

    Args:
        root: the folder of the COCA download.
        patient_id: the patient (a folder under ``patient/`` of the gated part).
        threshold_hu: the calcium threshold that rasterises the ROIs into labels.

    Returns:
        ``(volume, labels, table)``: the CT, the label map on its grid, and one row per ROI
        (:func:`calcscore.datasets.coca_rois.rasterize_rois`).
    """
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
    A patient whose input is malformed goes to ``import_errors.csv``.

    Args:
        root: the folder of the COCA download.
        out_dir: the output folder (created).
        fmt: the output format, ``"nii.gz"`` or ``"mha"``.
        threshold_hu: the calcium threshold that rasterises the ROIs into labels.
        keep_going: record a malformed patient and go on; False raises at the first instead.

    Returns:
        An :class:`~calcscore.datasets._common.ImportResult`.
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
