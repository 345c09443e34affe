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

How the blood pool is found: the scan is averaged in blocks of about 3 mm and smoothed with a
3 x 3 x 3 mean. The voxels between 150 and 700 HU are eroded by two blocks (about 6 mm, which cuts
the descending aorta from most of the vertebrae it lies on) and split into connected cores. In
each core, the largest connected part within 40 HU of the core's most common value is a blood
pool when it holds at least 25 cm^3, is at least 12 cm^2 wide in one slice and under 15 % of its
blocks hold cortical bone (a voxel above 800 HU). Bone marrow (sternum, vertebral bodies) reads
150-330 HU too and a chain of vertebral bodies can be as homogeneous (up to 71 cm^3 on the
phantoms), but it is narrow: at most 8 cm^2 per slice after the erosion, where the heart's
chambers give 17-40 cm^2 (enhanced blood pools on the phantoms: 51-253 cm^3). Any blood pool
makes the scan contrast-enhanced (non-contrast blood reads 30-60 HU).

For the blood pool of an unenhanced region, the slices where a row holds a run of at least 80 mm
of mediastinal tissue with lung right and left of it, over 30 mm of rows, are taken (over 20 mm
of slices); the median of the soft tissue in those runs is the reported blood pool HU: 150 HU or more is a contrast-enhanced heart too, 90-150 HU gives a
warning (possibly a late contrast phase).

:func:`ensure_scorable` runs the checks and raises :class:`ScanRefusedError` on a refusal;
``calcscore score`` calls it before scoring each scan. A refused scan is scored only with
``--force``, and then, like a scan whose heart is only partly covered, it is **not assessable**
(:attr:`CheckReport.assessable`): it gets numbers but no risk category.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from calcscore.coverage import NOT_COVERED, PARTLY_COVERED, HeartCoverage, heart_coverage
from calcscore.errors import InputError
from calcscore.kernels import KernelClass, KernelInfo, classify_kernel, vendor_of
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
]

#: A blood pool whose median is at least this is contrast-enhanced (refused).
CONTRAST_BLOOD_POOL_HU = 150.0
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
#: The smallest contrast-enhanced blood pool: connected, within 40 HU of one value (cm^3).
MIN_POOL_CM3 = 25.0
#: ... and at least this wide in one axial slice, after a 6 mm erosion (cm^2).
MIN_POOL_AREA_CM2 = 12.0
_EROSION_BLOCKS = 2
_BLOCK_MM = 3.0
_BONE_HU = 800.0  # a block holding a voxel above this holds cortical bone
_MAX_BONE_FRACTION = 0.15  # of a blood pool's blocks
_POOL_BAND_HU = 40.0
_PADDING_HU = -1500.0  # values below are outside the field of view (-2048, -3024 ...)

Severity = Literal["refusal", "warning", "info"]


# ------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class Finding:
    """One result of the checks: ``code`` (contrast, not_hu, no_heart, thick_slices, kernel ...),
    ``severity`` (refusal, warning, info), a message for the user and, for a refusal, the fix."""

    code: str
    severity: Severity
    message: str
    fix: str = ""


@dataclass(frozen=True)
class CheckReport:
    """What the checks found in one scan.

    ``blood_pool_hu`` is the median HU of the largest homogeneous region of the blood pool or
    the heart (``nan`` when none was found); ``refused`` is True when a refusal was found and
    the checks were not forced.
    """

    findings: tuple[Finding, ...]
    kernel: KernelInfo
    blood_pool_hu: float
    contrast_enhanced: bool
    heart_found: bool
    slice_thickness_mm: float
    forced: bool = False
    source: str | None = None
    details: dict = field(default_factory=dict, compare=False)
    coverage: HeartCoverage | None = None

    @property
    def refusals(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "refusal")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def refused(self) -> bool:
        return bool(self.refusals) and not self.forced

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    @property
    def assessable(self) -> bool:
        """False when a score of this scan must not be read as a risk category: it was refused
        and forced (no heart, non-finite voxels, not HU, slices over 5 mm, contrast), or the
        heart is only partly covered. Such a scan is scored, but its categories are
        "not assessable" (:func:`calcscore.assessment.mark_not_assessable`)."""
        return not self.refusals and "heart_cut" not in self.codes()

    @property
    def not_assessable_reason(self) -> str | None:
        """Why the scan is not assessable (the refusals' and the cut heart's messages), or None."""
        why = [f.message for f in self.findings if f.severity == "refusal" or f.code == "heart_cut"]
        return "; ".join(why) or None

    def raise_if_refused(self) -> None:
        """Raise :class:`ScanRefusedError` (one line, with the fix) when the scan is refused."""
        if self.refused:
            raise ScanRefusedError(self)

    def summary(self) -> str:
        """One line per finding, most severe first."""
        order = {"refusal": 0, "warning": 1, "info": 2}
        lines = []
        for f in sorted(self.findings, key=lambda f: order[f.severity]):
            tag = "REFUSED" if f.severity == "refusal" and not self.forced else f.severity
            lines.append(f"{tag:8s} {f.code}: {f.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready dict (for a scan's report)."""
        return {
            "source": self.source,
            "refused": self.refused,
            "forced": self.forced,
            "contrast_enhanced": self.contrast_enhanced,
            "heart_found": self.heart_found,
            "heart_coverage": None if self.coverage is None else self.coverage.to_dict(),
            "assessable": self.assessable,
            "not_assessable_reason": self.not_assessable_reason,
            "blood_pool_hu": None
            if not np.isfinite(self.blood_pool_hu)
            else round(float(self.blood_pool_hu), 1),
            "slice_thickness_mm": round(float(self.slice_thickness_mm), 3),
            "kernel": {
                "name": self.kernel.name,
                "vendor": self.kernel.vendor,
                "class": self.kernel.kernel_class,
                "reason": self.kernel.reason,
            },
            "findings": [
                {"code": f.code, "severity": f.severity, "message": f.message}
                for f in self.findings
            ],
        }


class ScanRefusedError(InputError):
    """A scan the method must not score (contrast-enhanced, no heart, non-finite voxels, not HU,
    slices over 5 mm); pass ``force`` to score it anyway, as not assessable."""

    def __init__(self, report: CheckReport):
        self.report = report
        problem = "; ".join(f.message for f in report.refusals)
        fixes = "; ".join(dict.fromkeys(f.fix for f in report.refusals if f.fix))
        super().__init__(
            report.source,
            f"refused: {problem}",
            f"{fixes + '; or ' if fixes else ''}force it with calcscore score --force: it is then "
            "scored and its risk category is 'not assessable'",
        )


# ------------------------------------------------------------------------------------ checks
def check_scan(
    volume: CTVolume,
    *,
    force: bool = False,
    source: str | Path | None = None,
    max_slice_thickness_mm: float = MAX_SLICE_THICKNESS_MM,
) -> CheckReport:
    """Run every check on ``volume``; never raises for what it finds (see :func:`ensure_scorable`).

    ``force`` keeps refusals in the report but marks the scan as scorable (and not assessable);
    ``source`` (a path) names the scan in messages.
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
    pool = _blood_pool(volume)
    findings += _contrast_findings(pool)
    findings += _metal_findings(volume)
    coverage = heart_coverage(volume)
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
    """:func:`check_scan`, raising :class:`ScanRefusedError` when the scan is refused."""
    report = check_scan(volume, force=force, source=source)
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


def _block_mean(
    hu: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Average in blocks of about 3 mm; returns the block means and the block size (voxels)."""
    f = np.array([max(1, int(round(_BLOCK_MM / s))) for s in spacing_mm])
    n = (np.array(hu.shape) // f) * f
    a = np.clip(hu[: n[0], : n[1], : n[2]], -1024.0, 3000.0, dtype=np.float32)
    a = a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).mean(axis=(1, 3, 5))
    return a, f


def _block_max(hu: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = (np.array(hu.shape) // f) * f
    a = hu[: n[0], : n[1], : n[2]]
    return a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).max(axis=(1, 3, 5))


def _blood_pool(volume: CTVolume) -> dict:
    """Find a contrast-enhanced blood pool, and the heart, in a block-averaged scan."""
    out = {
        "contrast": False,
        "blood_pool_hu": float("nan"),
        "heart_found": False,
        "regions": [],
        "heart_slices": 0,
    }
    d, f = _block_mean(volume.hu, volume.spacing_mm)
    if min(d.shape) < 3:
        return out
    block_mm = np.asarray(volume.spacing_mm) * f
    block_cm3 = float(np.prod(block_mm)) / 1000.0
    smooth = ndimage.uniform_filter(d, 3, mode="nearest")
    bone = _block_max(volume.hu, f) > _BONE_HU

    # contrast: a large region between 150 and 700 HU that is not bone marrow (see the module
    # docstring: marrow blocks touch cortex, or carry the cortical shell in their upper tail)
    enhanced = (smooth >= CONTRAST_BLOOD_POOL_HU) & (smooth < 700)
    # erode by about 6 mm to cut the aorta from the vertebrae it lies on; in each core, the
    # largest connected part within 40 HU of the core's most common value is the candidate pool
    cores, n = ndimage.label(ndimage.binary_erosion(enhanced, iterations=_EROSION_BLOCKS))
    sizes = np.bincount(cores.ravel(), minlength=n + 1)
    regions = []
    for k in np.flatnonzero(sizes * block_cm3 >= MIN_POOL_CM3):
        if k == 0:
            continue
        core = cores == k
        counts, edges = np.histogram(
            smooth[core], bins=np.arange(CONTRAST_BLOOD_POOL_HU, 711.0, 10.0)
        )
        mode = float(edges[int(np.argmax(counts))] + 5.0)
        parts, n_parts = ndimage.label(core & (np.abs(smooth - mode) < _POOL_BAND_HU))
        part_sizes = np.bincount(parts.ravel(), minlength=n_parts + 1)
        part_sizes[0] = 0
        pool = parts == int(np.argmax(part_sizes))
        median = float(np.median(smooth[pool]))
        regions.append(
            {
                "mode_hu": mode,
                "median_hu": round(median, 1),
                "max_area_cm2": round(
                    float(pool.sum(axis=(1, 2)).max() * block_mm[1] * block_mm[2] / 100.0), 1
                ),
                "core_cm3": round(float(sizes[k] * block_cm3), 1),
                "pool_cm3": round(float(part_sizes.max() * block_cm3), 1),
                "bone_fraction": round(float(bone[pool].mean()), 3),
            }
        )
    regions.sort(key=lambda r: -r["pool_cm3"])
    out["regions"] = regions[:8]
    pools = [
        r
        for r in regions
        if r["pool_cm3"] >= MIN_POOL_CM3
        and r["max_area_cm2"] >= MIN_POOL_AREA_CM2
        and r["bone_fraction"] < _MAX_BONE_FRACTION
    ]
    if pools:
        out["contrast"] = True
        out["blood_pool_hu"] = pools[0]["median_hu"]

    # heart: slices whose rows hold a wide run of mediastinal tissue with lung on both sides
    lung = (smooth > -960) & (smooth < -500)
    tissue = (smooth >= -500) & (smooth < 700)
    min_run = max(3, int(round(80.0 / block_mm[2])))
    heart_slices = 0
    soft_tissue = []
    for z in range(d.shape[0]):
        rows = [
            (y, run)
            for y in range(d.shape[1])
            for run in _lung_bounded_runs(lung[z, y], tissue[z, y], min_run)
        ]
        if len(rows) * block_mm[1] >= 30.0:
            heart_slices += 1
            values = np.concatenate([smooth[z, y, a:b] for y, (a, b) in rows])
            soft_tissue.append(values[(values > -20) & (values < 700)])
    out["heart_slices"] = heart_slices
    out["heart_found"] = heart_slices * block_mm[0] >= 20.0
    if not pools and out["heart_found"]:
        values = np.concatenate(soft_tissue)
        if values.size:
            out["blood_pool_hu"] = float(np.median(values))
    if not pools and out["blood_pool_hu"] >= CONTRAST_BLOOD_POOL_HU:  # the heart itself is enhanced
        out["contrast"] = True
    return out


def _lung_bounded_runs(lung: np.ndarray, tissue: np.ndarray, min_len: int) -> list[tuple[int, int]]:
    """(start, stop) of runs of ``tissue`` at least ``min_len`` long with lung right before and after."""
    t = np.concatenate([[False], tissue, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(t))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a >= min_len and a > 0 and b < lung.size and lung[a - 1] and lung[b]:
            out.append((int(a), int(b)))
    return out
