"""Reading and writing CT volumes and label maps.

Supported: DICOM series folders (CT Image Storage), NIfTI (.nii, .nii.gz), MetaImage (.mha,
.mhd), NRRD (.nrrd, .nhdr). DICOM is read with pydicom; the other formats with SimpleITK,
imported only when needed.

Axis order. ITK and DICOM index voxels (x, y, z); calcscore arrays are numpy (z, y, x). This
module is the one place where the order is reversed: ``spacing_mm``, ``origin_mm`` and both the
rows and the columns of the direction matrix become (z, y, x). ``tests/test_io.py`` checks the round trip for every format.

Outputs are written atomically (to a temporary folder beside the target, then renamed), so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from calcscore.errors import InputError, optional_import
from calcscore.volume import CTMeta, CTVolume, LabelVolume, _Grid

log = logging.getLogger(__name__)

ITK_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
_META_PREFIX = "calcscore_"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: Secondary Capture Image Storage and its multi-frame variants (1.2.840.10008.5.1.4.1.1.7.x)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def suffix_of(path: str | Path) -> str:
    """The format suffix of a path, with ``.nii.gz`` as one suffix."""
    name = str(path).lower()
    for s in ITK_SUFFIXES:
        if name.endswith(s):
            return s
    return Path(name).suffix


def strip_suffix(path: str | Path) -> str:
    """File name without its format suffix (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    s = suffix_of(name)
    return name[: len(name) - len(s)] if s else name


# --------------------------------------------------------------------------------------- reading
def read_volume(path: str | Path, *, series_uid: str | None = None) -> CTVolume:
    """Read a CT scan in HU from a DICOM series folder or an image file.

    ``series_uid`` picks one series when a DICOM folder holds several. Raises
    :class:`~calcscore.errors.InputError` with a one-line reason for anything it cannot read.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file or folder", "check the path")
    if p.is_dir():
        return _read_dicom_series(p, series_uid=series_uid)
    suffix = suffix_of(p)
    if suffix in ITK_SUFFIXES:
        return _read_itk_volume(p)
    if _is_dicom_file(p):
        raise InputError(
            p,
            "is a single 2D DICOM image, not a volume",
            "pass the folder that holds the whole series",
        )
    raise InputError(
        p,
        f"is not a supported image file (suffix {suffix or 'none'!r})",
        "use a DICOM series folder or a .nii, .nii.gz, .mha, .mhd or .nrrd file",
    )


def read_labels(path: str | Path) -> LabelVolume:
    """Read a label map (NIfTI, MHA/MHD or NRRD) whose values are :class:`~calcscore.labels.Label`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file", "check the path")
    if p.is_dir() or suffix_of(p) not in ITK_SUFFIXES:
        raise InputError(p, "is not a label map file", "use a .nii.gz, .mha or .nrrd label map")
    img, arr = _read_itk(p)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise InputError(p, "holds non-integer values, not labels", "pass an integer label map")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(
            p,
            f"holds values {arr.min()}..{arr.max()}, outside the label range 0..255",
            "pass a label map with values 0-6",
        )
    spacing, origin, direction = _itk_geometry(img)
    return LabelVolume(arr.astype(np.uint8), spacing, origin, direction)


_MET_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4}
_MET_BYTES |= {"MET_INT": 4, "MET_FLOAT": 4, "MET_DOUBLE": 8, "MET_ULONG": 8, "MET_LONG": 8}


def _check_mhd_data(p: Path) -> None:
    """An .mhd header's data file must exist and, uncompressed, hold every voxel (ITK's own
    message for a missing or short .raw is misleading)."""
    try:
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (ln.partition("=") for ln in p.read_text(errors="replace").splitlines())
        )
    except OSError:
        return
    name = fields.get("ElementDataFile", "")
    if not name or name == "LOCAL" or name.startswith("LIST"):
        return
    raw = p.parent / name
    if not raw.is_file():
        raise InputError(
            p, f"could not be read: its data file {name} is missing", f"put {name} beside it"
        )
    size = fields.get("DimSize", "").split()
    each = _MET_BYTES.get(fields.get("ElementType", ""))
    compressed = fields.get("CompressedData", "False").lower() == "true"
    if size and each and not compressed:
        expected = int(np.prod([int(v) for v in size])) * each
        expected *= int(fields.get("ElementNumberOfChannels", "1") or 1)
        if raw.stat().st_size < expected:
            raise InputError(
                p,
                f"could not be read: its data file {name} is truncated "
                f"({raw.stat().st_size} bytes, {expected} expected)",
                "copy or export the scan again",
            )


def _read_itk(p: Path):
    sitk = optional_import("SimpleITK", "reading NIfTI/MHA/NRRD files", "io")
    if suffix_of(p) == ".mhd":
        _check_mhd_data(p)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "rror" in ln), first[-1] if first else "")
        raise InputError(
            p,
            f"could not be read: corrupt, truncated or not an image ({detail[:120]})",
            "check the file or export it again",
        ) from None
    if suffix_of(p).startswith(".nii"):
        _check_nifti_complete(p, img)
    if img.GetDimension() == 2:
        raise InputError(p, "is a single 2D image, not a volume", "pass a 3D scan")
    if img.GetDimension() != 3:
        raise InputError(
            p, f"has {img.GetDimension()} dimensions; a 3D scan is needed", "extract one 3D volume"
        )
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            p,
            "has multi-component (e.g. RGB) pixels, not CT values",
            "pass the original greyscale CT",
        )
    arr = sitk.GetArrayFromImage(img)
    if suffix_of(p).startswith(".nii") and arr.dtype.kind == "f" and (arr == 0).any():
        _restore_non_finite(p, arr)
    return img, arr


def _restore_non_finite(p: Path, arr: np.ndarray) -> None:
    """ITK reads NaN and infinite voxels of a float NIfTI as 0: put them back into ``arr`` (in
    place) from the file's own bytes, so that the checks see them and never score them silently."""
    import gzip
    import struct

    opener = gzip.open if suffix_of(p) == ".nii.gz" else open
    with opener(p, "rb") as fh:
        data = fh.read()
    endian = "<" if struct.unpack("<i", data[:4])[0] == 348 else ">"
    datatype = struct.unpack(endian + "h", data[70:72])[0]
    kind = {16: "f4", 64: "f8"}.get(datatype)
    if kind is None:
        return
    offset = int(struct.unpack(endian + "f", data[108:112])[0])
    raw = np.frombuffer(data, endian + kind, count=arr.size, offset=offset).reshape(arr.shape)
    bad = ~np.isfinite(raw)
    arr[bad] = raw[bad]


def _check_nifti_complete(p: Path, img) -> None:
    """ITK zero-fills a truncated NIfTI without complaint: check the byte count ourselves."""
    import gzip
    import struct

    try:
        if suffix_of(p) == ".nii.gz":
            with gzip.open(p, "rb") as fh:
                head = fh.read(352)
                n = len(head)
                while chunk := fh.read(1 << 22):
                    n += len(chunk)
        else:
            with open(p, "rb") as fh:
                head = fh.read(352)
            n = p.stat().st_size
    except (OSError, EOFError) as exc:
        raise InputError(
            p,
            f"could not be read: corrupt or truncated ({exc})",
            "check the file or export it again",
        ) from None
    endian = "<" if struct.unpack("<i", head[:4])[0] == 348 else ">"
    vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
    bitpix = struct.unpack(endian + "h", head[72:74])[0]
    n_vox = int(np.prod(img.GetSize())) * img.GetNumberOfComponentsPerPixel()
    if n < vox_offset + n_vox * bitpix // 8:
        raise InputError(
            p,
            f"could not be read: corrupt or truncated ({n} bytes, "
            f"{vox_offset + n_vox * bitpix // 8} expected)",
            "check the file or export it again",
        )


def _itk_geometry(img) -> tuple[tuple, tuple, np.ndarray]:
    spacing = tuple(float(s) for s in img.GetSpacing()[::-1])
    origin = tuple(float(o) for o in img.GetOrigin()[::-1])
    d_itk = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    return spacing, origin, d_itk[::-1, ::-1].copy()


def _read_itk_volume(p: Path) -> CTVolume:
    img, arr = _read_itk(p)
    if arr.dtype == np.uint8 or arr.dtype == np.int8:
        raise InputError(
            p,
            "holds 8-bit data, which cannot be Hounsfield units",
            "export the scan in HU (16-bit or float), not as a screenshot or PNG",
        )
    spacing, origin, direction = _itk_geometry(img)
    meta_fields = {f.name for f in fields(CTMeta)} - {"extra"}
    meta: dict = {}
    for key in img.GetMetaDataKeys():
        if key.startswith(_META_PREFIX) and key[len(_META_PREFIX) :] in meta_fields:
            meta[key[len(_META_PREFIX) :]] = img.GetMetaData(key)
    meta.update(_read_sidecar(p))
    return CTVolume(arr.astype(np.float32), spacing, origin, direction, meta=_meta_from_dict(meta))


def _sidecar_path(p: Path) -> Path:
    return p.with_name(strip_suffix(p) + ".json")


def _read_sidecar(p: Path) -> dict:
    side = _sidecar_path(p)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable metadata sidecar %s: %s", side, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _meta_from_dict(d: dict) -> CTMeta:
    def num(v):
        try:
            return None if v in (None, "") else float(v)
        except (TypeError, ValueError):
            return None

    def txt(v):
        return None if v in (None, "") else str(v)

    return CTMeta(
        slice_thickness_mm=num(d.get("slice_thickness_mm")),
        kernel=txt(d.get("kernel")),
        manufacturer=txt(d.get("manufacturer")),
        model=txt(d.get("model")),
        kvp=num(d.get("kvp")),
        series_uid=txt(d.get("series_uid")),
        study_uid=txt(d.get("study_uid")),
        patient_id=txt(d.get("patient_id")),
    )


def _is_dicom_file(p: Path) -> bool:
    try:
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


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
            ds = pydicom.dcmread(f, stop_before_pixels=True)
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
    if iops.ndim == 2 and np.abs(iops - iops[0]).max() > 1e-3:
        k = int(np.argmax(np.abs(iops - iops[0]).max(axis=1)))
        raise InputError(
            folder,
            f"mixes slice orientations ({items[k][0].name} is oriented "
            f"{np.round(iops[k], 3).tolist()}, {items[0][0].name} {np.round(iops[0], 3).tolist()})",
            "keep the slices of one reconstruction (e.g. the axial one) in the folder",
        )


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
    _refuse_non_axial(folder, items)
    first = items[0][1]
    modality = str(getattr(first, "Modality", ""))
    if modality != "CT":
        raise InputError(
            folder,
            f"holds a {modality or 'unknown-modality'} series, not CT",
            "calcscore scores CT scans only",
        )
    if int(getattr(first, "NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            folder,
            "holds an enhanced multi-frame DICOM, which is not supported",
            "convert it to single-frame DICOM or NIfTI",
        )
    if len(items) == 1:
        raise InputError(
            items[0][0],
            "is a single 2D image, not a volume",
            "pass a folder with all slices of the series",
        )
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
    items = [items[i] for i in order]
    pos = pos[order]
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
    bits = int(getattr(first, "BitsAllocated", 16))
    photometric = str(getattr(first, "PhotometricInterpretation", "MONOCHROME2"))
    if bits == 8 or not photometric.startswith("MONOCHROME"):
        raise InputError(
            folder,
            f"holds {bits}-bit {photometric} images, which cannot be Hounsfield units",
            "export the original CT series, not secondary captures",
        )
    slices = []
    for f, _ in items:
        try:
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array.astype(np.float32)
        except Exception as exc:
            raise InputError(
                f,
                f"could not decode its pixel data ({type(exc).__name__})",
                "the file may be corrupt or truncated",
            ) from None
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
        slices.append(arr * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise InputError(
            folder, f"has slices of different sizes {sorted(shapes)}", "keep one series"
        )
    hu = np.stack(slices)
    ps = [float(v) for v in first.PixelSpacing]  # (row spacing = along y, column spacing = along x)
    spacing = (step, ps[0], ps[1])
    origin_xyz = pos[0]
    direction = np.stack([normal, col, row], axis=1)[::-1, :]  # columns: array axes; rows: z, y, x
    meta = CTMeta(
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
    return CTVolume(hu, spacing, tuple(origin_xyz[::-1]), direction, meta=meta)


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


# --------------------------------------------------------------------------------------- writing
@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; files written there under their final names are moved beside
    ``path`` when the block ends without an error, and discarded otherwise. The files move all
    or none: when one move fails, those moved before it are removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        yield tmp
        moved: list[Path] = []
        try:
            for f in sorted(tmp.iterdir()):
                os.replace(f, target.parent / f.name)
                moved.append(target.parent / f.name)
        except BaseException:  # all or none: take back the files moved before the failure
            for m in moved:
                m.unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        (tmp / Path(path).name).write_text(text)


def _to_itk(grid: _Grid, arr: np.ndarray):
    sitk = optional_import("SimpleITK", "writing NIfTI/MHA/NRRD files", "io")
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing([float(s) for s in grid.spacing_mm[::-1]])
    img.SetOrigin([float(o) for o in grid.origin_mm[::-1]])
    img.SetDirection([float(v) for v in grid.direction[::-1, ::-1].ravel()])
    return sitk, img


def _check_writable_suffix(p: Path) -> None:
    if suffix_of(p) not in ITK_SUFFIXES:
        raise InputError(
            p,
            f"has an unsupported output suffix {suffix_of(p)!r}",
            "use .nii.gz, .nii, .mha, .mhd or .nrrd",
        )


def write_volume(volume: CTVolume, path: str | Path) -> Path:
    """Write a CT volume (float32 HU would double the size; values are written as int16 when they
    are whole numbers in range, else float32). Acquisition metadata goes into the MHA/NRRD header,
    or into a JSON sidecar beside a NIfTI file."""
    p = Path(path)
    _check_writable_suffix(p)
    hu = volume.hu
    rounded = np.round(hu)
    arr = (
        rounded.astype(np.int16)
        if np.array_equal(rounded, hu) and hu.size and hu.min() >= -32768 and hu.max() <= 32767
        else hu.astype(np.float32)
    )
    sitk, img = _to_itk(volume, arr)
    meta = {k: v for k, v in asdict(volume.meta).items() if k != "extra" and v is not None}
    with atomic_path(p) as tmp:
        if suffix_of(p).startswith(".nii"):
            if meta:
                (tmp / _sidecar_path(p).name).write_text(json.dumps(meta, indent=1))
        else:
            for k, v in meta.items():
                img.SetMetaData(_META_PREFIX + k, str(v))
        sitk.WriteImage(img, str(tmp / p.name), True)
    return p


def write_labels(labels: LabelVolume, path: str | Path) -> Path:
    """Write a label map as uint8 (compressed)."""
    p = Path(path)
    _check_writable_suffix(p)
    sitk, img = _to_itk(labels, labels.labels.astype(np.uint8))
    with atomic_path(p) as tmp:
        sitk.WriteImage(img, str(tmp / p.name), True)
    return p


def write_dicom_series(
    volume: CTVolume,
    folder: str | Path,
    *,
    series_description: str = "calcscore",
    patient_id: str = "ANON",
) -> Path:
    """Write a CT volume as a single-frame CT Image Storage series (int16, slope 1, intercept 0).

    Used by the tests and for handing phantoms to DICOM tools. The folder must not exist yet.
    """
    pydicom = optional_import("pydicom", "writing DICOM", "io")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out = Path(folder)
    if out.exists() and any(out.iterdir()):
        raise InputError(out, "already exists and is not empty", "choose a new output folder")
    meta = volume.meta
    series_uid = meta.series_uid or generate_uid()
    study_uid = meta.study_uid or generate_uid()
    frame_uid = generate_uid()
    d = volume.direction[::-1, :]  # rows LPS x, y, z; columns array axes z, y, x
    row, col, normal = d[:, 2], d[:, 1], d[:, 0]
    hu = np.clip(np.round(volume.hu), -32768, 32767).astype(np.int16)
    with atomic_path(out / "x") as tmp:
        for k in range(hu.shape[0]):
            fm = FileMetaDataset()
            fm.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
            sop_uid = generate_uid()
            fm.MediaStorageSOPInstanceUID = sop_uid
            fm.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = fm
            ds.SOPClassUID = CT_IMAGE_STORAGE
            ds.SOPInstanceUID = sop_uid
            ds.Modality = "CT"
            ds.PatientID = meta.patient_id or patient_id
            ds.PatientName = meta.patient_id or patient_id
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.SeriesDescription = series_description
            ds.SeriesNumber = 1
            ds.InstanceNumber = k + 1
            ds.Manufacturer = meta.manufacturer or ""
            ds.ManufacturerModelName = meta.model or ""
            if meta.kernel:
                ds.ConvolutionKernel = meta.kernel
            if meta.kvp:
                ds.KVP = f"{meta.kvp:g}"
            thickness = meta.slice_thickness_mm or volume.spacing_mm[0]
            ds.SliceThickness = f"{thickness:g}"
            pos = np.asarray(volume.origin_mm[::-1]) + normal * volume.spacing_mm[0] * k
            ds.ImagePositionPatient = [f"{v:.6g}" for v in pos]
            ds.ImageOrientationPatient = [f"{v:.6g}" for v in np.concatenate([row, col])]
            ds.PixelSpacing = [f"{volume.spacing_mm[1]:.6g}", f"{volume.spacing_mm[2]:.6g}"]
            ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = "0"
            ds.RescaleSlope = "1"
            ds.RescaleType = "HU"
            ds.PixelData = hu[k].tobytes()
            ds.save_as(tmp / f"slice_{k:04d}.dcm", enforce_file_format=True)
        staged = sorted(tmp.iterdir())
        out.mkdir(parents=True, exist_ok=True)
        for f in staged:
            os.replace(f, out / f.name)
    return out


# --------------------------------------------------------------------------------------- describe
def describe(volume: CTVolume, *, source: str | Path | None = None) -> str:
    """A human-readable summary of a scan's geometry and acquisition (``calcscore info``)."""
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing_mm
    m = volume.meta
    lines = []
    if source is not None:
        lines.append(f"source           {source}")
    lines += [
        f"size             {nx} × {ny} × {nz} voxels (x × y × z)",
        f"pixel spacing    {sx:.3f} × {sy:.3f} mm",
        f"slice spacing    {sz:.3f} mm",
        f"slice thickness  {_fmt(m.slice_thickness_mm, ' mm')}",
        "origin           ({:.2f}, {:.2f}, {:.2f}) mm (LPS x, y, z)".format(
            *volume.origin_mm[::-1]
        ),
        f"HU range         {float(volume.hu.min()):.0f} to {float(volume.hu.max()):.0f}",
        f"kernel           {m.kernel or 'unknown'}",
        f"manufacturer     {' '.join(x for x in (m.manufacturer, m.model) if x) or 'unknown'}",
        f"kVp              {_fmt(m.kvp, '')}",
    ]
    if m.series_uid:
        lines.append(f"series UID       {m.series_uid}")
    return "\n".join(lines)


def _fmt(v: float | None, unit: str) -> str:
    return "unknown" if v is None else f"{v:g}{unit}"
