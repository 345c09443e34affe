"""Checks before scoring: is this a scan the method was made for?

The method scores non-contrast CT in Hounsfield units with slices of at most 3 mm
(Lessmann et al. 2018, section II). :func:`check_scan` looks at a :class:`CTVolume` and
returns a :class:`CheckReport` with one :class:`Finding` per problem:

``contrast`` (refusal)
    The blood pool of the heart and the aorta reads well above the calcium threshold: the scan
    is contrast-enhanced, every voxel of the blood pool is a calcium candidate and scores are
    meaningless. Refused unless forced.
``non_finite`` (refusal)
    NaN or infinite voxels. They are never turned into numbers silently: forced, they are scored
    as -1024 HU (air) and the report says how many there were.
``not_hu`` (refusal)
    The values do not look like Hounsfield units (no air or lung near -1000 / -850 HU, a tiny
    value range, or raw stored values of 0..4095).
``no_heart`` (refusal) and ``heart_cut`` (warning)
    The heart is not covered, or only partly (cut at the top, the bottom or the field of view),
    measured by :func:`calcscore.coverage.heart_coverage`. A scan without the heart cannot say
    "no coronary calcium"; one with part of it gives a lower bound.
``thick_slices`` (warning; refusal above 5 mm)
    Slices thicker than 3 mm (the thickness the Agatston score was defined on); above 5 mm a
    score of 0 cannot be told from calcium lost to partial volume.
``metal`` (warning)
    At least 1 mm^3 reads 2,800 HU or more: metal (pacemaker leads, sternal wires, prosthetic
    valves, stents), which dense calcium and bone do not reach. Its blur and streaks are labelled
    calcium (on the phantoms, a pacemaker lead next to the aorta gave 1,400 voxels of false
    aortic calcium); the paper excluded scans with severe metal artefacts (3 %).
``kernel`` (information)
    The reconstruction kernel classed soft or sharp from its DICOM name (see
    :func:`classify_kernel`): the paper evaluates soft and sharp reconstructions separately.

How the blood pool is found is told in :mod:`calcscore.blood_pool`.

:func:`ensure_scorable` runs the checks and raises :class:`ScanRefusedError` on a refusal;
``calcscore score`` calls it before scoring each scan. A refused scan is scored only with
``--force``, and then, like a scan whose heart is only partly covered, it is **not assessable**
(:attr:`CheckReport.assessable`): it gets numbers but no risk category.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from calcscore.blood_pool import (  # noqa: F401 - the blood pool's thresholds, as before
    CONTRAST_BLOOD_POOL_HU,
    MIN_POOL_AREA_CM2,
    MIN_POOL_CM3,
    find_blood_pool,
)
from calcscore.check_report import CheckReport, Finding, ScanRefusedError, Severity
from calcscore.coverage import NOT_COVERED, PARTLY_COVERED, HeartCoverage, heart_coverage
from calcscore.kernels import KernelClass, KernelInfo, classify_kernel, vendor_of
from calcscore.orientation import Orientation, orientation_of
from calcscore.volume import CTVolume

log = logging.getLogger(__name__)

__all__ = [  # the kernel classes moved to calcscore.kernels; importable from here as before
    "KernelClass",
    "KernelInfo",
    "classify_kernel",
    "vendor_of",
    "CheckReport",
    "Finding",
    "ScanRefusedError",
    "check_scan",
    "ensure_scorable",
    "finite_volume",
    "Severity",
]

#: A blood pool between this and :data:`CONTRAST_BLOOD_POOL_HU` gives a warning.
SUSPICIOUS_BLOOD_POOL_HU = 90.0
#: The thickest slices the method accepts without a warning (mm).
MAX_SLICE_THICKNESS_MM = 3.0
#: Slices thicker than this are refused (mm): a score of 0 there cannot be told from missed calcium.
MAX_SLICE_THICKNESS_REFUSED_MM = 5.0
#: What a forced scan's NaN and infinite voxels are scored as (air; said in the report).
NON_FINITE_FILL_HU = -1024.0
#: Voxels at or above this are metal (dense calcium and cortical bone stay well below; the
#: phantoms' sharp-kernel noise reaches at most 2,440 HU without metal) ...
METAL_HU = 2800.0
#: ... and a scan holding at least this volume of them gets a warning.
METAL_MIN_MM3 = 1.0
#: The tube voltage Agatston scores are defined at; another gives a warning.
AGATSTON_KVP = 120.0
_NOT_AXIAL_FIX = (
    "score the series of axial slices or reformat the scan to axial slices: Agatston is summed "
    "over axial slices, so --force does not score it"
)
_PADDING_HU = -1500.0  # values below are outside the field of view (-2048, -3024 ...)


# ------------------------------------------------------------------------------------ checks
def check_scan(
    volume: CTVolume,
    *,
    force: bool = False,
    source: str | Path | None = None,
    max_slice_thickness_mm: float = MAX_SLICE_THICKNESS_MM,
) -> CheckReport:
    """Run every check on ``volume``; never raises for what it finds (see :func:`ensure_scorable`).

    Args:
        volume: the scan, in HU as read (NaN and infinite voxels included).
        force: keep refusals in the report but mark the scan as scorable (and not assessable).
        source: the scan's path, to name it in messages and the report.
        max_slice_thickness_mm: slices thicker than this give a ``thick_slices`` warning (those
            over 5 mm are refused whatever this is); must be > 0.

    Returns:
        a :class:`CheckReport` with one :class:`Finding` per problem (and the kernel's class).
    """
    if not max_slice_thickness_mm > 0:
        raise ValueError(f"`max_slice_thickness_mm` must be > 0, got {max_slice_thickness_mm=}")
    meta = volume.meta
    kernel = classify_kernel(meta.kernel, meta.manufacturer)
    findings = [
        Finding(
            "kernel",
            "info",
            f"reconstruction kernel {kernel.name or 'unknown'}: {kernel.kernel_class} "
            f"({kernel.reason})",
        )
    ]
    findings += _non_finite_findings(volume)
    n = volume.shape[0]
    layout, volume, orient = _layout_findings(volume)  # the anatomy, in the standard layout
    findings += layout
    volume = finite_volume(volume)  # the other checks look at the finite voxels
    thickness = (
        float(meta.slice_thickness_mm) if meta.slice_thickness_mm else float(volume.spacing_mm[0])
    )
    findings += _thickness_findings(thickness, max_slice_thickness_mm)
    hu_problem = _hu_problem(volume.hu)
    if hu_problem:
        findings.append(
            Finding(
                "not_hu",
                "refusal",
                f"values do not look like Hounsfield units: {hu_problem}",
                "export the scan in Hounsfield units (with its rescale slope and intercept)",
            )
        )
    pool = find_blood_pool(volume)
    findings += _contrast_findings(pool)
    findings += _metal_findings(volume) + _kvp_findings(meta.kvp)
    coverage = heart_coverage(volume)
    if orient is not None and orient.slices_reversed:
        coverage = _own_slices(coverage, orient, n)
    findings += _coverage_findings(coverage)
    report = CheckReport(
        tuple(findings),
        kernel,
        pool["blood_pool_hu"],
        bool(pool["contrast"]),
        coverage.status != NOT_COVERED,
        thickness,
        forced=force,
        source=None if source is None else str(source),
        details=pool,
        coverage=coverage,
    )
    for f in report.findings:
        if f.severity != "info":
            log.warning("%s%s: %s", f"{source}: " if source else "", f.code, f.message)
    return report


def _layout_findings(volume: CTVolume) -> tuple[list[Finding], CTVolume, Orientation | None]:
    """A scan stored in another layout than the standard one (:mod:`calcscore.orientation`):
    an info for axial slices stored reversed (segmented in the standard layout), a refusal for
    coronal, sagittal or oblique slices (calcium is scored on axial slices). Returns the
    findings, the scan in the standard layout and its orientation (None: it has none)."""
    try:
        orient = orientation_of(volume.direction)
    except ValueError as exc:
        return [Finding("not_axial", "refusal", str(exc), _NOT_AXIAL_FIX)], volume, None
    if orient.is_standard:
        return [], volume, orient
    if not orient.is_axial:
        msg = f"the slices are not axial (the array's {orient.describe()})"
        return [Finding("not_axial", "refusal", msg, _NOT_AXIAL_FIX)], orient.apply(volume), orient
    msg = (
        f"stored with the array's {orient.describe()}: segmented as the standard layout (x to "
        "left, y to posterior, z to superior), labels written on the scan's own grid"
    )
    return [Finding("layout", "info", msg)], orient.apply(volume), orient


def _own_slices(coverage: HeartCoverage, orient: Orientation, n: int) -> HeartCoverage:
    """``coverage`` of the standard layout with the heart's slices numbered as the scan's own."""
    if coverage.first_slice is None or coverage.last_slice is None:
        return coverage
    first, last = sorted(
        orient.own_slice(z, n) for z in (coverage.first_slice, coverage.last_slice)
    )
    old = f"slices {coverage.first_slice}-{coverage.last_slice}"
    reason = coverage.reason.replace(old, f"slices {first}-{last}")
    return replace(coverage, first_slice=first, last_slice=last, reason=reason)


def finite_volume(volume: CTVolume) -> CTVolume:
    """``volume`` with NaN and infinite voxels set to :data:`NON_FINITE_FILL_HU` (air), or
    ``volume`` itself when every voxel is finite. The checks refuse such a scan first
    (``non_finite``); a forced one is scored with the fill, and says so."""
    finite = np.isfinite(volume.hu)
    if finite.all():
        return volume
    return volume.with_array(np.where(finite, volume.hu, np.float32(NON_FINITE_FILL_HU)))


def _non_finite_findings(volume: CTVolume) -> list[Finding]:
    bad = ~np.isfinite(volume.hu)
    n = int(bad.sum())
    if not n:
        return []
    n_nan = int(np.isnan(volume.hu).sum())
    return [
        Finding(
            "non_finite",
            "refusal",
            f"{n} of {volume.hu.size} voxels ({100 * n / volume.hu.size:.3g} %) are not numbers "
            f"({n_nan} NaN, {n - n_nan} infinite); forced, they are scored as "
            f"{NON_FINITE_FILL_HU:g} HU (air)",
            "export the scan again: a CT scan in HU holds finite numbers only",
        )
    ]


def _thickness_findings(thickness: float, max_mm: float) -> list[Finding]:
    if thickness > MAX_SLICE_THICKNESS_REFUSED_MM + 1e-3:
        return [
            Finding(
                "thick_slices",
                "refusal",
                f"slices are {thickness:g} mm thick, more than {MAX_SLICE_THICKNESS_REFUSED_MM:g} "
                "mm: calcifications smaller than a slice fade by partial volume, and a score of "
                "0 cannot be told from missed calcium",
                f"reconstruct slices of at most {max_mm:g} mm",
            )
        ]
    if thickness > max_mm + 1e-3:
        return [
            Finding(
                "thick_slices",
                "warning",
                f"slices are {thickness:g} mm thick, more than {max_mm:g} mm: small "
                "calcifications fade by partial volume and Agatston scores come out low",
            )
        ]
    return []


def _contrast_findings(pool: dict) -> list[Finding]:
    blood_hu = pool["blood_pool_hu"]
    if pool["contrast"]:
        return [
            Finding(
                "contrast",
                "refusal",
                f"contrast-enhanced scan: the blood pool reads {blood_hu:.0f} HU (non-contrast blood "
                f"reads 30-60 HU; calcium starts at 130 HU), so blood would be scored as calcium",
                "score non-contrast CT",
            )
        ]
    if np.isfinite(blood_hu) and blood_hu >= SUSPICIOUS_BLOOD_POOL_HU:
        return [
            Finding(
                "contrast_suspected",
                "warning",
                f"the blood pool reads {blood_hu:.0f} HU, high for non-contrast blood (30-60 HU): "
                "possibly a late contrast phase",
            )
        ]
    return []


def _metal_findings(volume: CTVolume) -> list[Finding]:
    metal_mm3 = float(np.count_nonzero(volume.hu >= METAL_HU)) * float(np.prod(volume.spacing_mm))
    if metal_mm3 < METAL_MIN_MM3:
        return []
    return [
        Finding(
            "metal",
            "warning",
            f"{metal_mm3:.0f} mm3 read {METAL_HU:.0f} HU or more: metal (a pacemaker lead, sternal "
            "wires, a prosthetic valve or a stent); its blur and streaks may be labelled calcium",
        )
    ]


def _kvp_findings(kvp: float | None) -> list[Finding]:
    """Agatston scores are defined at 120 kVp: calcium reads higher in HU at a lower tube voltage
    and lower at a higher one, so the 130 HU threshold and the density factors mean another
    amount of calcium (NLST scanned at 120-140 kVp)."""
    if kvp is None or abs(kvp - AGATSTON_KVP) <= 5:
        return []
    way = "higher" if kvp < AGATSTON_KVP else "lower"
    return [
        Finding(
            "kvp",
            "warning",
            f"acquired at {kvp:g} kVp, not the {AGATSTON_KVP:g} kVp Agatston scores are defined "
            f"at: calcium reads {way} in HU, so its scores come out {way} than at {AGATSTON_KVP:g}"
            " kVp and are not comparable with them",
        )
    ]


def _coverage_findings(coverage: HeartCoverage) -> list[Finding]:
    if coverage.status == NOT_COVERED:
        return [
            Finding(
                "no_heart",
                "refusal",
                f"the scan does not cover the heart ({coverage.reason}), so it cannot show "
                "that there is no coronary calcium",
                "score a scan from above the heart to below it",
            )
        ]
    if coverage.status == PARTLY_COVERED:
        return [
            Finding(
                "heart_cut",
                "warning",
                f"the scan covers the heart only in part: {coverage.reason}; its scores are "
                "a lower bound and its risk category is not assessable",
            )
        ]
    return []


def ensure_scorable(
    volume: CTVolume, *, force: bool = False, source: str | Path | None = None
) -> CheckReport:
    """:func:`check_scan`, raising :class:`ScanRefusedError` when the scan is refused.

    Args:
        volume: the scan, in HU as read.
        force: score a refused scan anyway (it is then not assessable); nothing is raised.
        source: the scan's path, to name it in messages and the error.

    Returns:
        the :class:`CheckReport` of a scan that may be scored.
    """
    report = check_scan(volume, force=force, source=source)
    if "not_axial" in report.codes():  # not even forced: its slice-by-slice scores are wrong
        raise ScanRefusedError(replace(report, forced=False))
    report.raise_if_refused()
    return report


def _hu_problem(hu: np.ndarray) -> str | None:
    """Why ``hu`` does not look like HU, or None."""
    if hu.size == 0:
        return "the scan is empty"
    sample = hu.ravel()[:: max(1, hu.size // 2_000_000)]
    inside = sample[sample > _PADDING_HU]
    if inside.size < 0.05 * sample.size:
        return f"almost every value is below {_PADDING_HU:g}"
    lo, hi = np.percentile(inside, [1.0, 99.0])
    span = float(inside.max() - inside.min())
    if span < 200:
        return (
            f"the values span only {span:.3g} (CT spans air at -1000 HU to bone above 700 HU): "
            "normalised or rescaled data"
        )
    if lo > -400:
        why = (
            "none is negative: raw stored values without the rescale intercept?"
            if inside.min() >= 0
            else "was a rescale slope or intercept lost?"
        )
        return (
            f"the lowest values are about {lo:.0f}, but air and lung read -1000 and -850 HU; {why}"
        )
    if hi > 3500:
        return f"1 % of the values exceed {hi:.0f}, far above bone (700-1500 HU)"
    return None
