"""What the checks of :mod:`calcscore.checks` report: one :class:`Finding` per problem, a
:class:`CheckReport` per scan, and :class:`ScanRefusedError` for a scan that must not be scored.
All three are importable from :mod:`calcscore.checks` as before."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from calcscore.coverage import HeartCoverage
from calcscore.errors import InputError
from calcscore.kernels import KernelInfo

Severity = Literal["refusal", "warning", "info"]


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
        force = (
            "force it with calcscore score --force: it is then scored and its risk category is "
            "'not assessable'"
        )
        if "not_axial" in report.codes():  # not even forced (calcscore.checks.ensure_scorable)
            fix = fixes
        else:
            fix = f"{fixes}; or {force}" if fixes else force
        super().__init__(report.source, f"refused: {problem}", fix)
