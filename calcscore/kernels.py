"""Reconstruction kernels classed soft or sharp from their DICOM names (vendor tables).

The paper evaluates soft and sharp reconstructions separately; :func:`classify_kernel` classes a
ConvolutionKernel (0018,1210) by the Manufacturer's table (Siemens, GE, Philips, Toshiba/Canon).
Used by :mod:`calcscore.checks` (which re-exports these names) and the dataset importers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

KernelClass = Literal["soft", "sharp", "unknown"]


# ------------------------------------------------------------------------------------ kernels
@dataclass(frozen=True)
class KernelInfo:
    """A reconstruction kernel name classed soft or sharp.

    ``vendor`` is the table that classed it ("siemens", "ge", "philips", "toshiba") or None;
    ``kernel_class`` is "soft", "sharp" or "unknown"; ``reason`` says which rule applied.
    """

    name: str | None
    vendor: str | None
    kernel_class: KernelClass
    reason: str


# Siemens: a letter code (B, Br, Bv, Bf, Bl, I, J, Q, Qr, Sa, Hr, ...) and a number for the
# sharpness: 10-44 soft (B30f, B35f, Br40, Qr36, Sa36, I30f), 45 and above sharp (B45f, B50f,
# B60f, Br64, Bl57, I70f). Iterative strength after a backslash (Br40\3) is ignored.
_SIEMENS = re.compile(r"^([A-Z][a-z]?)(\d{2})([a-z]?)$")
_SIEMENS_SHARP_FROM = 45
# GE: named kernels.
_GE = {
    "SOFT": "soft",
    "STANDARD": "soft",
    "STND": "soft",
    "SMOOTH": "soft",
    "DETAIL": "sharp",
    "CHST": "sharp",
    "CHEST": "sharp",
    "LUNG": "sharp",
    "BONE": "sharp",
    "BONEPLUS": "sharp",
    "BONE PLUS": "sharp",
    "EDGE": "sharp",
    "ULTRA": "sharp",
    "HD LUNG": "sharp",
}
# Philips: letter kernels; A, B, C (and the cardiac CB, UB, XCA, XCB) are smooth body kernels,
# D, E, L (lung) and the Y-series (YA, YB, YC, YD, YE) are sharp.
_PHILIPS = {
    "A": "soft",
    "B": "soft",
    "C": "soft",
    "CB": "soft",
    "UB": "soft",
    "UC": "soft",
    "XCA": "soft",
    "XCB": "soft",
    "XCC": "soft",
    "D": "sharp",
    "E": "sharp",
    "EB": "sharp",
    "EC": "sharp",
    "L": "sharp",
    "LA": "sharp",
    "YA": "sharp",
    "YB": "sharp",
    "YC": "sharp",
    "YD": "sharp",
    "YE": "sharp",
    "YF": "sharp",
}
# Toshiba / Canon: FC01-FC29 body and head kernels (FC12, FC13 ...) are soft, FC30-FC86 (lung
# FC51-FC56, bone FC30-FC35, FC80-FC86 high resolution) are sharp; FL lung kernels are sharp.
_TOSHIBA = re.compile(r"^F([CL])(\d{2})$")
_TOSHIBA_SHARP_FROM = 30

_VENDORS = (
    ("siemens", ("SIEMENS",)),
    ("ge", ("GE ", "GE_", "GENERAL ELECTRIC")),
    ("philips", ("PHILIPS",)),
    ("toshiba", ("TOSHIBA", "CANON")),
)


def vendor_of(manufacturer: str | None) -> str | None:
    """The kernel table of a DICOM Manufacturer (0008,0070): siemens, ge, philips, toshiba or None."""
    if not manufacturer:
        return None
    m = manufacturer.strip().upper() + " "
    if m.startswith("GE"):
        return "ge"
    for vendor, keys in _VENDORS:
        if any(m.startswith(k) or k in m for k in keys):
            return vendor
    return None


def _classify_in(vendor: str, name: str) -> tuple[KernelClass, str] | None:
    upper = name.upper()
    if vendor == "siemens":
        m = _SIEMENS.match(name)
        if m:
            n = int(m.group(2))
            cls: KernelClass = "sharp" if n >= _SIEMENS_SHARP_FROM else "soft"
            return (
                cls,
                f"Siemens {m.group(1)}{n}: {'>=' if cls == 'sharp' else '<'} {_SIEMENS_SHARP_FROM} is {cls}",
            )
        return None
    if vendor == "ge":
        if upper in _GE:
            return _GE[upper], f"GE {upper} is {_GE[upper]}"  # type: ignore[return-value]
        return None
    if vendor == "philips":
        if upper in _PHILIPS:
            return _PHILIPS[upper], f"Philips {upper} is {_PHILIPS[upper]}"  # type: ignore[return-value]
        return None
    if vendor == "toshiba":
        m = _TOSHIBA.match(upper)
        if m:
            n = int(m.group(2))
            if m.group(1) == "L":
                return "sharp", f"Toshiba/Canon FL{n:02d} (lung) is sharp"
            cls = "sharp" if n >= _TOSHIBA_SHARP_FROM else "soft"
            return (
                cls,
                f"Toshiba/Canon FC{n:02d}: {'>=' if cls == 'sharp' else '<'} FC{_TOSHIBA_SHARP_FROM} is {cls}",
            )
        return None
    return None


def classify_kernel(name: str | None, manufacturer: str | None = None) -> KernelInfo:
    """Class a reconstruction kernel (DICOM ConvolutionKernel) soft or sharp.

    The manufacturer picks the vendor table; without one (or with an unknown one) the name is
    tried against every table and classed when exactly one vendor knows it. Multi-valued names
    (``Br40\\3``: kernel and iterative strength) are classed by their first value.
    """
    if name is None or not str(name).strip():
        return KernelInfo(None, vendor_of(manufacturer), "unknown", "no kernel name")
    first = str(name).split("\\")[0].strip()
    vendor = vendor_of(manufacturer)
    if vendor is not None:
        hit = _classify_in(vendor, first)
        if hit is not None:
            return KernelInfo(first, vendor, hit[0], hit[1])
    hits = [(v, h) for v, _ in _VENDORS if (h := _classify_in(v, first)) is not None]
    if len(hits) == 1:
        v, (cls, reason) = hits[0]
        return KernelInfo(
            first,
            v,
            cls,
            reason
            + (
                " (vendor guessed from the name)"
                if vendor is None
                else f" (name not in the {vendor} table)"
            ),
        )
    if len({h[0] for _, h in hits}) == 1 and hits:
        cls = hits[0][1][0]
        return KernelInfo(first, vendor, cls, f"{first} is {cls} in every table that knows it")
    why = "known to several vendors with different classes" if hits else "not in any vendor table"
    return KernelInfo(first, vendor, "unknown", f"{first} is {why}")
