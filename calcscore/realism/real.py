"""The real chest CT the realism report compares a phantom with."""

from __future__ import annotations

from pathlib import Path

from calcscore.errors import InputError
from calcscore.volume import CTVolume


def load_real_scan(path: str | Path = "") -> CTVolume:
    """The real scan at ``path`` (NIfTI, MHD or a DICOM folder: :func:`calcscore.io.read_volume`),
    or, when ``path`` is empty, the example non-contrast chest CT of
    ``calcscore.datasets.examples.chest_ct()``.

    Raises :class:`calcscore.errors.InputError` naming the problem and the fix when the file is
    missing or when this calcscore has no example chest CT."""
    if str(path):
        from calcscore.io import read_volume

        p = Path(path)
        if not p.exists():
            raise InputError(
                p,
                "no such file or folder",
                "pass real_scan= the path of a non-contrast chest CT: NIfTI, MHD or a DICOM folder",
            )
        return read_volume(p)
    try:
        from calcscore.datasets.examples import chest_ct
    except ImportError:
        raise InputError(
            None,
            "calcscore.datasets.examples.chest_ct() is not in this calcscore",
            "pass real_scan= the path of a non-contrast chest CT: NIfTI, MHD or a DICOM folder",
        ) from None
    return chest_ct()
