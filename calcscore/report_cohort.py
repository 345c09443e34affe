"""The cohort page ``cohort_report.html`` that ``calcscore score`` writes beside
``cohort_summary.csv``.

Self-contained like the scan pages (:mod:`calcscore.report_html`): how the scans fall into the
CAC-DRS, risk and ordinal categories (counts and a bar chart), and one table row per scan that
links to its ``<scan>_report.html`` (relative links, so the folder can be moved). Where the
manifest gives reference label maps (its ``labels`` column), every scan's reference is scored on
the same CT (:func:`reference_scores`) and the page adds the agreement figures of ``calcscore
evaluate`` (:mod:`calcscore.stats`): the risk-category and CAC-DRS confusion matrices (reference
rows) with linearly weighted kappa, and a Bland-Altman plot of the CAC Agatston scores.
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from calcscore.assessment import NOT_ASSESSABLE
from calcscore.report_html import RESEARCH_USE, esc, fmt, page, table
from calcscore.scoring import RISK_CATEGORIES
from calcscore.standards import CAC_DRS_CATEGORIES

log = logging.getLogger(__name__)

COHORT_REPORT = "cohort_report.html"


def reference_scores(volume, labels_path: str | Path, *, convention: str) -> dict[str, Any]:
    """Score a reference label map on the scan's CT.

    Args:
        volume: the scan.
        labels_path: the reference label map.
        convention: the Agatston convention of the scan's own scores.

    Returns:
        ``{"labels_file", "CAC_agatston", "risk_category", "cac_drs"}``, or ``{"labels_file",
        "error"}`` when it cannot be read or does not share the scan's grid (the scan itself is
        still scored).
    """
    from calcscore.errors import CalcscoreError
    from calcscore.io import read_labels
    from calcscore.orientation import onto_layout
    from calcscore.scoring import agatston
    from calcscore.standards import cac_drs

    try:
        ref = onto_layout(read_labels(labels_path), volume)  # the same voxels, another layout
        scores = agatston(volume, ref, convention=convention)
    except (CalcscoreError, ValueError) as exc:
        log.warning("reference %s not scored: %s", labels_path, exc)
        return {"labels_file": str(labels_path), "error": " ".join(str(exc).split())}
    arteries = {k: scores[k].agatston for k in ("LAD", "LCX", "RCA")}
    return {
        "labels_file": str(labels_path),
        "CAC_agatston": scores.cac_agatston,
        "risk_category": scores.risk_category,
        "cac_drs": cac_drs(arteries).label,
    }


def _figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _counts(values: pd.Series, categories: Sequence[str]) -> list[int]:
    return [int((values == c).sum()) for c in categories]


def _distribution(ok: pd.DataFrame) -> str:
    """Counts per category and a bar chart of them."""
    from calcscore.viz import _pyplot

    drs = ok["cac_drs"].astype(str).str.split("/").str[0]
    ordinal = ok["ordinal_score"].round().astype("Int64").astype(str)
    ord_cats = [str(i) for i in range(10)]
    # a scan scored with --force or with its heart cut has no category (calcscore.assessment)
    drs_cats = [*CAC_DRS_CATEGORIES, NOT_ASSESSABLE]
    risk_cats = [*RISK_CATEGORIES, NOT_ASSESSABLE]
    groups = [
        ("CAC-DRS", drs_cats, _counts(drs, drs_cats)),
        ("Risk category", risk_cats, _counts(ok["risk_category"], risk_cats)),
        ("Ordinal score", ord_cats, _counts(ordinal, ord_cats)),
    ]
    tables = "".join(
        f'<div class="box" data-item="{esc(name)}">{esc(name)}'
        + table([esc(c) for c in cats], [[str(n) for n in counts]], cls="distribution")
        + "</div>"
        for name, cats, counts in groups
    )
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 2.8))
    for ax, (name, cats, counts) in zip(axes, groups):
        ax.bar(cats, counts, color="0.35")
        ax.set_title(name)
        ax.set_ylabel("scans")
        ax.yaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    src = _figure_uri(fig)
    plt.close(fig)
    return (
        f"<h2>Distribution of categories ({len(ok)} scans scored)</h2>"
        + f'<div class="summary">{tables}</div>'
        + f'<img class="chart" alt="bar charts of the category counts" src="{src}" '
        'style="max-width:100%">'
    )


def _scan_table(summary: pd.DataFrame, out_dir: Path) -> str:
    rows = []
    for r in summary.to_dict("records"):
        scan = str(r["scan_id"])
        name = f"{scan}_report.html"
        link = esc(scan)
        if (out_dir / name).is_file():
            link = f'<a href="{esc(quote(name))}">{link}</a>'
        ok = r.get("status") == "ok"
        rows.append(
            [
                link,
                esc(r.get("status")),
                fmt(r.get("CAC_agatston")) if ok else "–",
                esc(r.get("cac_drs")) if ok else "–",
                esc(r.get("risk_category")) if ok else "–",
                fmt(r.get("ordinal_score"), 0) if ok else "–",
                fmt(r.get("TAC_agatston")) if ok else "–",
                esc(_text(r.get("check_warnings")) or _text(r.get("error"))),
            ]
        )
    header = ["Scan", "Status", "CAC Agatston", "CAC-DRS", "Risk", "Ordinal", "TAC Agatston"]
    return "<h2>Scans</h2>" + table(header + ["Warnings / error"], rows, cls="scans")


def _text(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _agreement(ok: pd.DataFrame) -> str:
    """Confusion matrices, kappa and a Bland-Altman plot where references were scored."""
    from calcscore.stats import confusion_matrix, plot_bland_altman, weighted_kappa
    from calcscore.viz import _pyplot

    if "ref_CAC_agatston" not in ok:
        return ""
    ref = ok[np.isfinite(pd.to_numeric(ok["ref_CAC_agatston"], errors="coerce"))]
    if ref.empty:
        return ""
    unfit = ref["assessable"].astype(str) == "False" if "assessable" in ref else ref.index < 0
    parts = [f"<h2>Agreement with the reference ({len(ref)} scans)</h2>"]
    if unfit.any():  # no category to compare (calcscore.assessment)
        parts.append(
            f'<p class="info">{int(unfit.sum())} not assessable: left out of the categories.</p>'
        )
    for name, r_col, p_col, cats in (
        []
        if unfit.all()
        else [
            ("Risk category", "ref_risk_category", "risk_category", list(RISK_CATEGORIES)),
            ("CAC-DRS category", "ref_cac_drs", "cac_drs", list(CAC_DRS_CATEGORIES)),
        ]
    ):
        r_vals = ref[~unfit][r_col].astype(str).str.split("/").str[0].tolist()
        p_vals = ref[~unfit][p_col].astype(str).str.split("/").str[0].tolist()
        cm = confusion_matrix(r_vals, p_vals, categories=cats)
        k = weighted_kappa(r_vals, p_vals, categories=cats)
        rows = [[f"<b>{esc(c)}</b>", *[str(int(v)) for v in cm.loc[c]]] for c in cats]
        parts.append(
            f"<h3>{esc(name)}: reference rows, calcscore columns</h3>"
            + table(["reference \\ calcscore", *map(esc, cats)], rows, cls="confusion")
            + f'<p class="kappa">Linearly weighted kappa {fmt(k.kappa, 2)} (95 % CI '
            f"{fmt(k.ci_low, 2)} to {fmt(k.ci_high, 2)}); exact agreement "
            f"{fmt(100 * k.agreement)} % of {k.n} scans.</p>"
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_bland_altman(
        ref["ref_CAC_agatston"].astype(float),
        ref["CAC_agatston"].astype(float),
        ax=ax,
        title="CAC Agatston: calcscore (b) vs reference (a)",
    )
    fig.tight_layout()
    parts.append(
        f'<img class="bland-altman" alt="Bland-Altman plot of CAC Agatston" '
        f'src="{_figure_uri(fig)}" style="max-width:100%">'
    )
    plt.close(fig)
    return "".join(parts)


def render_cohort_report(summary: pd.DataFrame, out_dir: str | Path) -> str:
    """The HTML of ``cohort_report.html`` for a cohort summary (``cohort_summary.csv``) whose
    scan pages lie in ``out_dir``."""
    out = Path(out_dir)
    ok = summary[summary["status"] == "ok"]
    n_failed = len(summary) - len(ok)
    body = [
        "<h1>Calcium scoring: cohort report</h1>",
        f'<div class="ruo" id="research-use">{esc(RESEARCH_USE)}</div>',
        f"<p>{len(summary)} scans: {len(ok)} scored, {n_failed} failed. Summary table: "
        '<a href="cohort_summary.csv">cohort_summary.csv</a>.</p>',
        _distribution(ok) if len(ok) else "<p>No scan was scored.</p>",
        _agreement(ok),
        _scan_table(summary, out),
        f"<footer>{esc(RESEARCH_USE)}</footer>",
    ]
    return page("calcscore cohort report", "\n".join(b for b in body if b))


def write_cohort_report(summary: pd.DataFrame, out_dir: str | Path) -> Path:
    """Write ``cohort_report.html`` into ``out_dir`` atomically."""
    from calcscore.report_html import write_html

    return write_html(Path(out_dir) / COHORT_REPORT, render_cohort_report(summary, out_dir))
