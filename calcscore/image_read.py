"""Reading image files (NIfTI, MetaImage, NRRD) for :mod:`calcscore.io`: with SimpleITK, imported
only when needed, or, for ``.nii`` / ``.nii.gz`` on a machine without SimpleITK (a GPU training
machine, a light Binder image), with the numpy-only :func:`calcscore.nifti.read_nifti`. Both give
the same array, geometry and refusals.

Axis order: ITK indexes voxels (x, y, z); what leaves this module is numpy order (z, y, x):
``spacing_mm``, ``origin_mm`` and both the rows and the columns of the direction matrix.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import numpy as np

from calcscore.errors import InputError, MissingDependencyError, optional_import
from calcscore.nifti import read_nifti
from calcscore.volume import CTMeta, CTVolume

log = logging.getLogger(__name__)

ITK_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
_META_PREFIX = "calcscore_"

#: (spacing, origin, direction) in numpy order (z, y, x), LPS mm
Geometry = tuple[tuple, tuple, np.ndarray]


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


def _read_image(p: Path) -> tuple[np.ndarray, Geometry, dict]:
    """(array (z, y, x), geometry, header metadata) of an image file, read with SimpleITK; a NIfTI
    file is read with :func:`calcscore.nifti.read_nifti` where SimpleITK is not installed."""
    if suffix_of(p).startswith(".nii"):
        try:
            optional_import("SimpleITK", "reading NIfTI/MHA/NRRD files", "io")
        except MissingDependencyError:
            return _read_nifti_without_itk(p)
    img, arr = _read_itk(p)
    n = len(_META_PREFIX)
    keys = [k for k in img.GetMetaDataKeys() if k.startswith(_META_PREFIX)]
    return arr, _itk_geometry(img), {k[n:]: img.GetMetaData(k) for k in keys}


def _read_nifti_without_itk(p: Path) -> tuple[np.ndarray, Geometry, dict]:
    """What :func:`_read_image` gives for a NIfTI file, without SimpleITK."""
    log.debug("SimpleITK is not installed: reading %s with calcscore.nifti", p)
    nii = read_nifti(p)  # NaN and inf voxels stay NaN and inf (scaled), as _read_itk restores them
    return nii.array, (nii.spacing_mm, nii.origin_mm, nii.direction), {}


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
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:  # one 3D volume stored as 4D
        img = img[:, :, :, 0]
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
    if suffix_of(p).startswith(".nii") and arr.dtype.kind == "f":
        # a NaN/inf voxel reads as 0, or as scl_inter where the header scales intensities
        inter = float(img.GetMetaData("scl_inter")) if img.HasMetaDataKey("scl_inter") else 0.0
        if (arr == 0).any() or (arr == np.float32(inter)).any():
            _restore_non_finite(p, arr)
    return img, arr


def _restore_non_finite(p: Path, arr: np.ndarray) -> None:
    """ITK reads NaN and infinite voxels of a float NIfTI as 0 (then scaled): put them back into
    ``arr`` (in place) from the file's own bytes, scaled by the header's ``scl_slope`` and
    ``scl_inter`` as :func:`calcscore.nifti.read_nifti` scales them, so that the checks see them
    and never score them silently."""
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
    slope, inter = struct.unpack(endian + "2f", data[112:120])
    if slope not in (0.0, 1.0) or (slope != 0.0 and inter != 0.0):  # as ITK and read_nifti scale
        arr[bad] = raw[bad].astype(np.float32) * np.float32(slope) + np.float32(inter)
    else:
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
    """A CT volume from an image file, with its metadata from the header (MHA/NRRD) and from a
    JSON sidecar beside the file (NIfTI)."""
    arr, (spacing, origin, direction), header = _read_image(p)
    if arr.dtype == np.uint8 or arr.dtype == np.int8:
        raise InputError(
            p,
            "holds 8-bit data, which cannot be Hounsfield units",
            "export the scan in HU (16-bit or float), not as a screenshot or PNG",
        )
    meta_fields = {f.name for f in fields(CTMeta)} - {"extra"}
    meta = {k: v for k, v in header.items() if k in meta_fields}
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
