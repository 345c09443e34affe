"""Reading and writing CT volumes and label maps.

Supported: DICOM series folders (CT Image Storage), NIfTI (.nii, .nii.gz), MetaImage (.mha,
.mhd), NRRD (.nrrd, .nhdr). DICOM is read with pydicom (:mod:`calcscore.dicom_read`); the other
formats with SimpleITK (:mod:`calcscore.image_read`), imported only when needed; NIfTI is read
without SimpleITK (:mod:`calcscore.nifti`) where it is not installed.

Axis order. ITK and DICOM index voxels (x, y, z); calcscore arrays are numpy (z, y, x). The
readers and :func:`_to_itk` are the one place where the order is reversed: ``spacing_mm``,
``origin_mm`` and both the rows and the columns of the direction matrix become (z, y, x).
``tests/test_io.py`` checks the round trip for every format.

Outputs are written atomically (to a temporary folder beside the target, then renamed), so an
interrupted run never leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np

from calcscore.dicom_read import CT_IMAGE_STORAGE as CT_IMAGE_STORAGE
from calcscore.dicom_read import SECONDARY_CAPTURE as SECONDARY_CAPTURE
from calcscore.dicom_read import _is_dicom_file as _is_dicom_file
from calcscore.dicom_read import _read_dicom_series
from calcscore.errors import InputError, optional_import
from calcscore.image_read import (
    _META_PREFIX,
    _read_image,
    _read_itk_volume,
    _sidecar_path,
)
from calcscore.image_read import ITK_SUFFIXES as ITK_SUFFIXES
from calcscore.image_read import _itk_geometry as _itk_geometry
from calcscore.image_read import strip_suffix as strip_suffix
from calcscore.image_read import suffix_of as suffix_of
from calcscore.volume import CTVolume, LabelVolume, _Grid

log = logging.getLogger(__name__)


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
        from calcscore.dicom_enhanced import is_multi_frame, read_enhanced_ct

        if is_multi_frame(_dicom_header(p)):
            return read_enhanced_ct(p)
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


def _dicom_header(p: Path):
    """The header of the DICOM file ``p`` (no pixels)."""
    from calcscore.dicom_read import read_dicom_file

    try:
        return read_dicom_file(p, stop_before_pixels=True)
    except Exception:
        raise InputError(
            p, "is a DICOM file whose header cannot be read", "it may be corrupt"
        ) from None


def read_labels(path: str | Path) -> LabelVolume:
    """Read a label map (NIfTI, MHA/MHD or NRRD) whose values are :class:`~calcscore.labels.Label`."""
    p = Path(path)
    if not p.exists():
        raise InputError(p, "no such file", "check the path")
    if p.is_dir() or suffix_of(p) not in ITK_SUFFIXES:
        raise InputError(p, "is not a label map file", "use a .nii.gz, .mha or .nrrd label map")
    arr, (spacing, origin, direction), _ = _read_image(p)
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise InputError(p, "holds non-integer values, not labels", "pass an integer label map")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(
            p,
            f"holds values {arr.min()}..{arr.max()}, outside the label range 0..255",
            "pass a label map with values 0-6",
        )
    return LabelVolume(arr.astype(np.uint8), spacing, origin, direction)


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

    Used by the tests and for handing phantoms to DICOM tools.

    Args:
        volume: the scan; its metadata (UIDs, kernel, kVp, ...) goes into every slice's header.
        folder: the series folder to write, one ``slice_NNNN.dcm`` per slice; it must not exist
            yet or be empty.
        series_description: the SeriesDescription of the series.
        patient_id: PatientID and PatientName where the volume's metadata has no patient ID.

    Returns:
        The series folder.
    """
    pydicom = optional_import("pydicom", "writing DICOM", "io")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

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
            fm.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
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
        f"layout           {_layout(volume)}",
        f"HU range         {float(volume.hu.min()):.0f} to {float(volume.hu.max()):.0f}",
        f"kernel           {m.kernel or 'unknown'}",
        f"manufacturer     {' '.join(x for x in (m.manufacturer, m.model) if x) or 'unknown'}",
        f"kVp              {_fmt(m.kvp, '')}",
    ]
    if m.series_uid:
        lines.append(f"series UID       {m.series_uid}")
    return "\n".join(lines)


def _layout(volume: CTVolume) -> str:
    """The array's axes in words (:mod:`calcscore.orientation`)."""
    from calcscore.orientation import orientation_of

    try:
        orient = orientation_of(volume.direction)
    except ValueError:
        return "oblique (no nearest axis-aligned layout)"
    return orient.describe() + (" (standard)" if orient.is_standard else "")


def _fmt(v: float | None, unit: str) -> str:
    return "unknown" if v is None else f"{v:g}{unit}"
