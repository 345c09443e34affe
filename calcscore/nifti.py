"""A NIfTI-1 reader in numpy alone, for machines without SimpleITK (a GPU training machine, a
light Binder image): :func:`calcscore.io.read_volume` and :func:`~calcscore.io.read_labels` use
it for ``.nii`` / ``.nii.gz`` when SimpleITK is missing.

It gives what SimpleITK gives (tested against it): the array in numpy order (z, y, x), the voxel
spacing, and the origin and direction in ITK's LPS patient coordinates (NIfTI stores RAS; the
first two axes change sign). The geometry comes from the sform where ``sform_code`` > 0, else
from the qform quaternion, else from the voxel sizes alone, as ITK's NIfTI reader does.
Intensity scaling (``scl_slope``, ``scl_inter``) is applied when the slope is not 0 or 1 with
intercept 0. NIfTI-2, complex and RGB data are refused with a clear error.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calcscore.errors import InputError

#: NIfTI-1 datatype codes -> numpy dtypes (the scalar ones).
DTYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
    768: np.uint32,
    1024: np.int64,
    1280: np.uint64,
}
HEADER_BYTES = 348


@dataclass(frozen=True)
class NiftiImage:
    """A 3D NIfTI image in calcscore's conventions (all in numpy order (z, y, x), LPS mm)."""

    array: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: np.ndarray
    scaled: bool


def _open(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(
            path, f"could not be read: corrupt or truncated ({exc})", "export the file again"
        ) from None


def _quaternion_rotation(b: float, c: float, d: float, qfac: float) -> np.ndarray:
    """The qform's rotation (NIfTI-1 standard, nifti1_io.c's quatern_to_mat44)."""
    a = 1.0 - (b * b + c * c + d * d)
    a = 0.0 if a < 1e-7 else np.sqrt(a)
    r = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    r[:, 2] *= qfac
    return r


def _header(path: Path, raw: bytes) -> tuple[str, dict]:
    if len(raw) < HEADER_BYTES:
        raise InputError(path, "is too short to be a NIfTI file", "export the file again")
    for endian in "<>":
        if struct.unpack(endian + "i", raw[:4])[0] == HEADER_BYTES:
            break
    else:
        raise InputError(
            path, "is not a NIfTI-1 file (NIfTI-2 or another format)", "convert it to NIfTI-1"
        )

    def get(fmt: str, offset: int):
        return struct.unpack_from(endian + fmt, raw, offset)

    h = {
        "dim": get("8h", 40),
        "datatype": get("h", 70)[0],
        "pixdim": get("8f", 76),
        "vox_offset": get("f", 108)[0],
        "scl_slope": get("f", 112)[0],
        "scl_inter": get("f", 116)[0],
        "qform_code": get("h", 252)[0],
        "sform_code": get("h", 254)[0],
        "quatern": get("6f", 256),
        "srow": np.array(get("12f", 280), dtype=float).reshape(3, 4),
    }
    return endian, h


def _geometry(h: dict, nd: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing, origin, direction) in x, y, z order and LPS, as ITK computes them."""
    pix = np.abs(np.array(h["pixdim"][1 : 1 + nd] + (1.0,) * (3 - nd), dtype=float))
    pix[pix == 0] = 1.0
    if h["sform_code"] > 0:
        m = h["srow"][:, :3]
        spacing = np.linalg.norm(m, axis=0)
        rot = m / np.where(spacing > 0, spacing, 1.0)
        origin = h["srow"][:, 3].copy()
    elif h["qform_code"] > 0:
        b, c, d, x, y, z = h["quatern"]
        qfac = -1.0 if h["pixdim"][0] < 0 else 1.0
        rot, spacing, origin = _quaternion_rotation(b, c, d, qfac), pix, np.array([x, y, z])
    else:
        rot, spacing, origin = np.eye(3), pix, np.zeros(3)
    flip = np.diag([-1.0, -1.0, 1.0])  # RAS -> LPS
    return spacing, flip @ origin, flip @ rot


def read_nifti(path: str | Path) -> NiftiImage:
    """Read a 3D NIfTI-1 file (``.nii`` or ``.nii.gz``).

    Args:
        path: the file.

    Returns:
        a :class:`NiftiImage`; its array is float32 where the header scales intensities, the
        stored type otherwise.

    Raises:
        InputError: a file that is not a 3D scalar NIfTI-1 image, or is truncated.
    """
    p = Path(path)
    raw = _open(p)
    endian, h = _header(p, raw)
    nd = h["dim"][0]
    if not 2 <= nd <= 7 or any(n > 1 for n in h["dim"][4 : 1 + nd]):
        raise InputError(p, f"has {nd} dimensions; a 3D scan is needed", "extract one 3D volume")
    if nd == 2:
        raise InputError(p, "is a single 2D image, not a volume", "pass a 3D scan")
    dtype = DTYPES.get(h["datatype"])
    if dtype is None:
        raise InputError(
            p,
            f"holds NIfTI datatype {h['datatype']} (complex, RGB or unknown), not CT values",
            "pass the original greyscale CT",
        )
    nx, ny, nz = (int(n) for n in h["dim"][1:4])
    offset = int(h["vox_offset"]) or HEADER_BYTES + 4
    count = nx * ny * nz
    need = offset + count * np.dtype(dtype).itemsize
    if len(raw) < need:
        raise InputError(
            p,
            f"is truncated: {len(raw)} bytes where the header needs {need}",
            "check the file or export it again",
        )
    arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(endian), count=count, offset=offset)
    arr = arr.reshape(nz, ny, nx).astype(np.dtype(dtype).newbyteorder("="))
    slope, inter = h["scl_slope"], h["scl_inter"]
    scaled = slope not in (0.0, 1.0) or (slope != 0.0 and inter != 0.0)
    if scaled:
        arr = (arr.astype(np.float32) * np.float32(slope) + np.float32(inter)).astype(np.float32)
    spacing, origin, rot = _geometry(h, 3)
    # x, y, z -> numpy's z, y, x: reverse the axes and both sides of the direction
    return NiftiImage(
        arr,
        tuple(float(s) for s in spacing[::-1]),
        tuple(float(o) for o in origin[::-1]),
        rot[::-1, ::-1].copy(),
        scaled,
    )
