"""Reading a DICOM CT series folder into a :class:`~calcscore.volume.CTVolume` (with pydicom,
imported only when needed). :func:`calcscore.io.read_volume` calls :func:`_read_dicom_series` for a
folder; everything here refuses what it cannot score with one line naming the file, the problem
and the fix (:class:`~calcscore.errors.InputError`).

Axis order: DICOM positions are LPS (x, y, z); the volume's spacing, origin and direction come
out in numpy order (z, y, x), as from every other reader in :mod:`calcscore.io`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np

from calcscore.errors import InputError, optional_import
from calcscore.volume import CTMeta, CTVolume

log = logging.getLogger(__name__)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Secondary Capture Image Storage and its multi-frame variants (1.2.840.10008.5.1.4.1.1.7.x)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _is_dicom_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_file(path: Path, *, stop_before_pixels: bool = False):
    """The dataset of a DICOM file; a raw dataset without the Part 10 preamble and file meta (as
    older archives store CT) is read too, with the transfer syntax its encoding shows.

    Raises:
        pydicom.errors.InvalidDicomError: not DICOM (nor a raw dataset of an image).
    """
    pydicom = optional_import("pydicom", "reading DICOM", "io")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except pydicom.errors.InvalidDicomError:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=True)
        if "SOPClassUID" not in ds or "Rows" not in ds:
            raise
    implicit, little = ds.original_encoding
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian
        if implicit
        else (ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian)
    )
    return ds


def _read_dicom_series(folder: Path, *, series_uid: str | None) -> CTVolume:
    pydicom = optional_import("pydicom", "reading DICOM", "io")
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    if not files:
        raise InputError(
            folder, "is an empty folder", "pass the folder that holds the DICOM series"
        )
    series: dict[str, list] = defaultdict(list)
    for f in files:
        try:
            ds = read_dicom_file(f, stop_before_pixels=True)
        except Exception:  # not DICOM (or unreadable header): skip, report if nothing is left
            continue
        if "PixelData" not in ds and not hasattr(ds, "Rows"):
            continue
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((f, ds))
    if not series:
        raise InputError(
            folder,
            f"holds no readable DICOM images ({len(files)} other files)",
            "pass a folder of DICOM files, or an image file",
        )
    if series_uid is not None:
        if series_uid not in series:
            raise InputError(
                folder,
                f"holds no series with UID {series_uid}",
                f"choose one of: {', '.join(sorted(series))}",
            )
        chosen = series[series_uid]
    elif len(stacks := [uid for uid, items in series.items() if _is_ct_stack(items)]) == 1:
        chosen = series[stacks[0]]  # the only CT stack beside scouts, dose pages, single images
        if len(series) > 1:
            log.info(
                "%s: scoring series %s, the only CT stack of %d", folder, stacks[0], len(series)
            )
    elif len(series) > 1:
        desc = "; ".join(
            f"{uid} ({len(items)} images, {getattr(items[0][1], 'SeriesDescription', '') or 'no description'})"
            for uid, items in sorted(series.items())
        )
        raise InputError(
            folder,
            f"holds {len(series)} series: {desc}",
            "pick one with --series-uid UID (series_uid= in Python)",
        )
    else:
        chosen = next(iter(series.values()))
    return _assemble_series(folder, chosen, pydicom)


def _is_ct_stack(items: list) -> bool:
    """A series that can be a CT volume: CT, not scouts or secondary captures, more than one
    slice (or one multi-frame file)."""
    first = items[0][1]
    kinds = {str(v).upper() for v in (getattr(first, "ImageType", None) or [])}
    sop = str(getattr(first, "SOPClassUID", ""))
    frames = int(getattr(first, "NumberOfFrames", 1) or 1)
    return (
        str(getattr(first, "Modality", "")) == "CT"
        and not kinds & {"LOCALIZER", "SCOUT", "TOPOGRAM"}
        and not sop.startswith(SECONDARY_CAPTURE)
        and (len(items) > 1 or frames > 1)
    )


def _refuse_non_axial(folder: Path, items: list) -> None:
    """Refuse scouts, secondary captures and slices of mixed orientation, one line each."""
    for f, ds in items:
        sop = str(getattr(ds, "SOPClassUID", ""))
        if sop == SECONDARY_CAPTURE or sop.startswith(SECONDARY_CAPTURE + "."):
            raise InputError(
                f,
                "is a secondary capture (a 2D picture of an image, SOP class "
                f"{sop}), not a CT slice in Hounsfield units",
                "export the original CT series, not screenshots",
            )
        kinds = {str(v).upper() for v in (getattr(ds, "ImageType", None) or [])}
        if kinds & {"LOCALIZER", "SCOUT", "TOPOGRAM"}:
            raise InputError(
                f,
                "is a scout/localizer image (ImageType "
                f"{'/'.join(sorted(kinds & {'LOCALIZER', 'SCOUT', 'TOPOGRAM'}))}), not a slice of "
                "an axial CT series",
                "pass the folder of the axial reconstruction, without the scouts",
            )
    try:
        iops = np.array([np.asarray(ds.ImageOrientationPatient, float) for _, ds in items])
    except (AttributeError, TypeError, ValueError):
        return  # reported with the geometry
    k = odd_orientation(iops)
    if k is not None:
        raise InputError(
            folder,
            f"mixes slice orientations ({items[k][0].name} is oriented "
            f"{np.round(iops[k], 3).tolist()}, {items[0][0].name} {np.round(iops[0], 3).tolist()})",
            "keep the slices of one reconstruction (e.g. the axial one) in the folder",
        )


def odd_orientation(iops: np.ndarray) -> int | None:
    """The index of the slice (row of ImageOrientationPatient values) oriented most unlike the
    first, where any differs by more than 1e-3; None where all agree."""
    if iops.ndim != 2 or not len(iops):
        return None
    diff = np.abs(iops - iops[0]).max(axis=1)
    return int(np.argmax(diff)) if diff.max() > 1e-3 else None


def _refuse_tilt(folder: Path, first, pos: np.ndarray, normal: np.ndarray, step: float) -> None:
    """Refuse a gantry-tilted series: slices shifted in-plane from one to the next (sheared)."""
    d = np.diff(pos, axis=0)
    inplane = d - np.outer(d @ normal, normal)
    shift = float(np.linalg.norm(inplane, axis=1).max()) if len(d) else 0.0
    tag = _float_or_none(getattr(first, "GantryDetectorTilt", None)) or 0.0
    if shift > max(0.01 * step, 0.02) or abs(tag) > 0.05:
        angle = float(np.degrees(np.arctan2(shift, step))) if shift else abs(tag)
        raise InputError(
            folder,
            f"was acquired with a gantry tilt of about {angle:.1f} degrees: its slices are "
            "sheared, not stacked on a rectangular grid",
            "resample it to an untilted grid first (e.g. dcm2niix corrects gantry tilt)",
        )


def _assemble_series(folder: Path, items: list, pydicom) -> CTVolume:
    """One series' files, (path, header) each, as a CT volume in HU: refuse what is not an axial
    CT stack, sort the slices along the normal, check the spacing, then read the pixels. A series
    of one enhanced multi-frame file is read by :mod:`calcscore.dicom_enhanced`."""
    from calcscore.dicom_enhanced import is_multi_frame, read_enhanced_ct

    multi = [f for f, ds in items if is_multi_frame(ds)]
    if multi and len(items) == 1:
        return read_enhanced_ct(multi[0])
    if multi:
        raise InputError(
            folder,
            f"holds {len(items)} files in one series, {len(multi)} of them multi-frame",
            "pass one enhanced multi-frame file, or a folder of single-frame slices",
        )
    _refuse_non_axial(folder, items)
    first = items[0][1]
    _refuse_not_a_ct_stack(folder, items, first)
    items, pos, (row, col, normal) = _sorted_by_position(folder, items, first)
    step = _slice_step(folder, first, pos, normal)
    _refuse_non_hu_pixels(folder, first)
    hu = _read_pixels(folder, items, pydicom)
    ps = [float(v) for v in first.PixelSpacing]  # (row spacing = along y, column spacing = along x)
    spacing = (step, ps[0], ps[1])
    direction = np.stack([normal, col, row], axis=1)[::-1, :]  # columns: array axes; rows: z, y, x
    return CTVolume(hu, spacing, tuple(pos[0][::-1]), direction, meta=_series_meta(first))


def _refuse_not_a_ct_stack(folder: Path, items: list, first) -> None:
    """Refuse a series that is not CT, or a single image."""
    modality = str(getattr(first, "Modality", ""))
    if modality != "CT":
        raise InputError(
            folder,
            f"holds a {modality or 'unknown-modality'} series, not CT",
            "calcscore scores CT scans only",
        )
    if len(items) == 1:
        raise InputError(
            items[0][0],
            "is a single 2D image, not a volume",
            "pass a folder with all slices of the series",
        )


def _sorted_by_position(
    folder: Path, items: list, first
) -> tuple[list, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The items sorted along the slice normal, their ImagePositionPatient (LPS, same order) and
    the (row, column, normal) direction cosines of the first slice."""
    try:
        iop = np.asarray(first.ImageOrientationPatient, dtype=float)
        row, col = iop[:3], iop[3:]
        normal = np.cross(row, col)
        pos = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds in items])
    except (AttributeError, TypeError, ValueError):
        raise InputError(
            folder,
            "has slices without ImagePositionPatient/ImageOrientationPatient",
            "export the series with its geometry",
        ) from None
    order = np.argsort(pos @ normal, kind="stable")
    return [items[i] for i in order], pos[order], (row, col, normal)


def _slice_step(folder: Path, first, pos: np.ndarray, normal: np.ndarray) -> float:
    """The slice spacing (mm) of sorted positions ``pos``; refuses duplicate slices, gantry tilt,
    missing slices and non-uniform spacing."""
    z = pos @ normal
    dz = np.diff(z)
    if np.any(np.abs(dz) < 1e-3):
        raise InputError(
            folder,
            "has two slices at the same position",
            "the folder may mix two reconstructions; keep one",
        )
    step = float(np.median(dz))
    _refuse_tilt(folder, first, pos, normal, step)
    if np.any(dz > 1.5 * step):
        k = int(np.argmax(dz > 1.5 * step))
        raise InputError(
            folder,
            f"has missing slices: a gap of {dz[k]:.2f} mm after z = {z[k]:.2f} mm "
            f"where the spacing is {step:.2f} mm",
            "export the complete series",
        )
    if np.max(np.abs(dz - step)) > max(0.01 * step, 0.02):
        raise InputError(
            folder,
            f"has non-uniform slice spacing ({dz.min():.3f} to {dz.max():.3f} mm)",
            "resample it to uniform spacing first",
        )
    return step


def _refuse_non_hu_pixels(folder: Path, first) -> None:
    """Refuse 8-bit or colour pixels, which cannot hold Hounsfield units."""
    bits = int(getattr(first, "BitsAllocated", 16))
    photometric = str(getattr(first, "PhotometricInterpretation", "MONOCHROME2"))
    if bits == 8 or not photometric.startswith("MONOCHROME"):
        raise InputError(
            folder,
            f"holds {bits}-bit {photometric} images, which cannot be Hounsfield units",
            "export the original CT series, not secondary captures",
        )


def _read_pixels(folder: Path, items: list, pydicom) -> np.ndarray:
    """The sorted slices' pixels in HU (rescale slope and intercept applied), stacked (z, y, x)."""
    slices = []
    for f, _ in items:
        ds = None
        try:
            ds = read_dicom_file(f)
            arr = ds.pixel_array.astype(np.float32)
        except Exception as exc:
            raise _decode_error(f, ds, exc) from None
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append(arr * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise InputError(
            folder, f"has slices of different sizes {sorted(shapes)}", "keep one series"
        )
    return np.stack(slices)


def _decode_error(f: Path, ds, exc: Exception) -> InputError:
    """Why the pixels of ``f`` could not be read: a compression no installed decoder reads (the
    fix: the decoders calcscore depends on), or a corrupt file."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        missing = syntax is not None and not get_decoder(syntax).is_available
    except (NotImplementedError, ValueError):  # a transfer syntax pydicom has no decoder for
        missing = syntax is not None and syntax.is_compressed
    if missing and syntax is not None:
        return InputError(
            f,
            f"is compressed as {syntax.name} ({syntax}), which no installed decoder reads",
            "install calcscore's dependencies again (pip install -e ., which brings python-gdcm) "
            "or decompress the series first (gdcmconv --raw, dcmdjpeg)",
        )
    return InputError(
        f,
        f"could not decode its pixel data ({type(exc).__name__})",
        "the file may be corrupt or truncated",
    )


def _series_meta(first) -> CTMeta:
    """The acquisition metadata of a series, from its first slice's header."""
    return CTMeta(
        slice_thickness_mm=_float_or_none(getattr(first, "SliceThickness", None)),
        kernel=_kernel_name(getattr(first, "ConvolutionKernel", None)),
        manufacturer=str(getattr(first, "Manufacturer", "")) or None,
        model=str(getattr(first, "ManufacturerModelName", "")) or None,
        kvp=_float_or_none(getattr(first, "KVP", None)),
        series_uid=str(getattr(first, "SeriesInstanceUID", "")) or None,
        study_uid=str(getattr(first, "StudyInstanceUID", "")) or None,
        patient_id=str(getattr(first, "PatientID", "")) or None,
        extra={  # what a report header may show (calcscore.report_html prints what is there)
            "series_description": str(getattr(first, "SeriesDescription", "")),
            "study_description": str(getattr(first, "StudyDescription", "") or ""),
            "study_date": str(getattr(first, "StudyDate", "") or ""),
            "patient_name": str(getattr(first, "PatientName", "") or ""),
        },
    )


def _float_or_none(v) -> float | None:
    try:
        return None if v in (None, "") else float(v)
    except (TypeError, ValueError):
        return None


def _kernel_name(v) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)
