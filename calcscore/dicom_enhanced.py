"""Reading an enhanced multi-frame CT file (Enhanced CT Image Storage, 1.2.840.10008.5.1.4.1.1.2.1)
into a :class:`~calcscore.volume.CTVolume`.

Newer scanners (Philips, Siemens' XA platforms, photon-counting CT) can export a series as one
file whose frames are the slices: each frame's position, orientation, pixel spacing and rescale
lie in the per-frame or the shared functional groups rather than in the top-level header. The
frames are sorted along the slice normal and checked as a classic series' slices are
(:mod:`calcscore.dicom_read`: duplicate positions, gantry tilt, missing slices, uneven spacing),
so a file holding two stacks (two reconstructions, or cardiac phases) is refused with one line.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from calcscore.errors import InputError, optional_import
from calcscore.volume import CTVolume

ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def is_multi_frame(ds) -> bool:
    """A DICOM header whose pixel data holds more than one frame."""
    return int(getattr(ds, "NumberOfFrames", 1) or 1) > 1


def folder_is_multi_frame(folder: Path) -> bool:
    """The first DICOM file found in ``folder`` is a multi-frame image (an enhanced series, which
    the SEG and SR outputs cannot reference yet)."""
    from calcscore.dicom_read import read_dicom_file

    for f in sorted(x for x in Path(folder).rglob("*") if x.is_file()):
        try:
            return is_multi_frame(read_dicom_file(f, stop_before_pixels=True))
        except Exception:  # not DICOM: look further
            continue
    return False


def _group(path: Path, ds, frame: int, name: str):
    """Frame ``frame``'s item of functional group ``name``: per-frame first, then shared."""
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per is not None and frame < len(per) and name in per[frame]:
        return getattr(per[frame], name)[0]
    shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if shared is not None and len(shared) and name in shared[0]:
        return getattr(shared[0], name)[0]
    raise InputError(
        path,
        f"is a multi-frame image without {name} for frame {frame + 1}: its slices have no geometry",
        "export the series with its functional groups, or as single-frame DICOM",
    )


def _optional(path: Path, ds, name: str, attr: str):
    """``attr`` of the first frame's functional group ``name``, or None."""
    try:
        return getattr(_group(path, ds, 0, name), attr, None)
    except InputError:
        return None


def read_enhanced_ct(path: Path) -> CTVolume:
    """The CT volume in HU of one enhanced multi-frame CT file.

    Args:
        path: the file.

    Returns:
        the frames as slices, sorted along the slice normal, in HU (each frame's rescale
        applied), with the geometry and metadata of a classic series' volume.

    Raises:
        InputError: not CT, not monochrome 16-bit, frames without geometry, frames of mixed
            orientation, or frames that do not stack (duplicates, tilt, gaps, uneven spacing).
    """
    from calcscore.dicom_read import (
        _decode_error,
        _float_or_none,
        _kernel_name,
        _refuse_non_hu_pixels,
        _series_meta,
        _slice_step,
        odd_orientation,
    )

    pydicom = optional_import("pydicom", "reading DICOM", "io")
    ds = pydicom.dcmread(path)
    modality = str(getattr(ds, "Modality", ""))
    if modality != "CT":
        raise InputError(
            path,
            f"holds a {modality or 'unknown-modality'} image, not CT",
            "calcscore scores CT only",
        )
    _refuse_non_hu_pixels(path, ds)
    n = int(ds.NumberOfFrames)
    iops = np.array(
        [_group(path, ds, i, "PlaneOrientationSequence").ImageOrientationPatient for i in range(n)],
        float,
    )
    k = odd_orientation(iops)
    if k is not None:
        raise InputError(
            path,
            f"mixes frame orientations (frame {k + 1} is oriented {np.round(iops[k], 3).tolist()}"
            f", frame 1 {np.round(iops[0], 3).tolist()})",
            "export one reconstruction (e.g. the axial one) per file",
        )
    row, col = iops[0][:3], iops[0][3:]
    normal = np.cross(row, col)
    pos = np.array(
        [_group(path, ds, i, "PlanePositionSequence").ImagePositionPatient for i in range(n)],
        float,
    )
    order = np.argsort(pos @ normal, kind="stable")
    pos = pos[order]
    step = _slice_step(path, ds, pos, normal)
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise _decode_error(path, ds, exc) from None
    hu = np.empty(pixels.shape, np.float32)
    for k, i in enumerate(order):
        rescale = _group(path, ds, int(i), "PixelValueTransformationSequence")
        slope = float(getattr(rescale, "RescaleSlope", 1) or 1)
        hu[k] = pixels[i].astype(np.float32) * slope + float(
            getattr(rescale, "RescaleIntercept", 0) or 0
        )
    measures = _group(path, ds, 0, "PixelMeasuresSequence")
    ps = [float(v) for v in measures.PixelSpacing]  # (row spacing = along y, along x)
    direction = np.stack([normal, col, row], axis=1)[::-1, :]  # as dicom_read's
    meta = replace(
        _series_meta(ds),
        slice_thickness_mm=_float_or_none(getattr(measures, "SliceThickness", None)),
        kernel=_kernel_name(_optional(path, ds, "CTReconstructionSequence", "ConvolutionKernel")),
        kvp=_float_or_none(_optional(path, ds, "CTXRayDetailsSequence", "KVP")),
    )
    return CTVolume(hu, (step, ps[0], ps[1]), tuple(pos[0][::-1]), direction, meta=meta)
