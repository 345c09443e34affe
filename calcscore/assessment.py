"""A scan that cannot be scored gets numbers but no category: "not assessable".

A screening programme files the category ``calcscore score`` prints. A scan that misses the
heart or cuts it, holds NaN or infinite voxels, is not in HU, has slices over 5 mm or is
contrast-enhanced cannot say "no coronary calcium": a CAC of 0 there is no risk category I.
Such a scan is refused by :mod:`calcscore.checks` unless forced; forced, or with the heart only
partly covered, it is scored, and :func:`mark_not_assessable` replaces every category in its
score report (:func:`calcscore.scoring.score_report`'s dict) with :data:`NOT_ASSESSABLE` and
records why. The numbers stay: they are a lower bound where the heart is cut.

Every category a report can hold is named in :data:`CATEGORY_KEYS`: the risk category and the
CAC-DRS category (issue 28), so that a category added to the report is covered by adding its key.
"""

from __future__ import annotations

from typing import Any

#: The category of a scan that cannot be scored confidently.
NOT_ASSESSABLE = "not assessable"
#: The keys of a score report that hold a category (CAC-DRS: "cac_drs", a dict whose "label"
#: and "agatston_category" are replaced).
CATEGORY_KEYS: tuple[str, ...] = ("risk_category", "cac_drs")


def mark_assessable(report: dict[str, Any]) -> dict[str, Any]:
    """Record in ``report`` (in place, and returned) that its categories may be read."""
    report["assessable"] = True
    report["not_assessable_reason"] = None
    return report


def mark_not_assessable(report: dict[str, Any], reason: str) -> dict[str, Any]:
    """Replace every category of ``report`` (:data:`CATEGORY_KEYS` present in it) with
    :data:`NOT_ASSESSABLE` and record ``reason`` (in place, and returned)."""
    if not reason:
        raise ValueError("a scan that is not assessable needs a reason")
    for key in CATEGORY_KEYS:
        if isinstance(report.get(key), dict):  # CAC-DRS: {"label": "A2/N3", ...}
            category = dict(report[key], label=NOT_ASSESSABLE)
            if "agatston_category" in category:
                category["agatston_category"] = NOT_ASSESSABLE
            report[key] = category
        elif key in report:
            report[key] = NOT_ASSESSABLE
    report["assessable"] = False
    report["not_assessable_reason"] = reason
    return report
