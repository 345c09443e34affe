"""The per-scan report page ``<scan>_report.html`` that ``calcscore score`` writes.

One self-contained HTML file (styles inline, images as base64 PNG ``data:`` URIs, no script, no
network) that a clinician can read and print: the scan header the input carries (what is not
there is not printed, so anonymised inputs stay anonymous), CAC-DRS, the risk category and the
ordinal score, a table per artery and one beside it for the aorta and valves, one key image per
lesion in the colours of the paper's Fig. 6, the warnings of :mod:`calcscore.checks`, the model's
name and training data, and "for research use only". :mod:`calcscore.report_pdf` prints it to
PDF; :mod:`calcscore.report_cohort` links the pages of a cohort.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calcscore import __version__
from calcscore.labels import CAC_LABELS, COLOURS, DISPLAY_NAMES, Label
from calcscore.volume import CTMeta, CTVolume, LabelVolume

#: Key images shown per scan at most (largest Agatston first); the rest are counted.
MAX_KEY_IMAGES = 48
RESEARCH_USE = (
    "For research use only. Not a medical device; not for diagnosis or treatment decisions."
)
RISK_RANGES = {"I": "0-10", "II": "11-100", "III": "101-1000", "IV": "> 1000"}

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:10.5pt;color:#111;margin:18px;
max-width:1000px}
h1{font-size:16pt;margin:0 0 4px}h2,h3{break-after:avoid}h2{font-size:12.5pt;margin:16px 0 6px;border-bottom:1px solid
#999}
.ruo{background:#fff3cd;border:1px solid #d39e00;padding:5px 8px;margin:6px 0;font-weight:bold}
.warn{background:#fdecea;border:1px solid #c0392b;padding:5px 8px;margin:4px 0}
.info{color:#444}
table{border-collapse:collapse;margin:4px 0 8px}td,th{border:1px solid #bbb;padding:3px 8px;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#eee}
table.kv td{text-align:left}
.summary{display:flex;gap:12px;flex-wrap:wrap}.box{border:2px solid #333;padding:6px 12px}
.box b{font-size:15pt;display:block}
.swatch{display:inline-block;width:10px;height:10px;margin-right:5px;border:1px solid #333}
.keys{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:172px;break-inside:avoid}
figure img{width:172px;height:auto;image-rendering:pixelated;border:1px solid #333}
figcaption{font-size:8.5pt}
.overview img{max-width:300px;width:100%;image-rendering:pixelated}
footer{margin-top:16px;font-size:9pt;color:#444}
@page{size:A4;margin:12mm}
@media print{body{margin:0;max-width:none}tr,figure,.box{break-inside:avoid}
figure,figure img{width:150px}}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML page around ``body``."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def png_data_uri(rgb: np.ndarray, *, scale: int = 1) -> str:
    from calcscore.viz import png_bytes

    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, scale=scale)).decode()


def table(header: list[str] | None, rows: list[list[str]], *, cls: str = "") -> str:
    """An HTML table.

    Args:
        header: the header cells; None for no header row.
        rows: the body's cells, HTML already (escape text with :func:`esc`).
        cls: the table's CSS class.

    Returns:
        the ``<table>`` element.
    """
    head = "".join(f"<th>{h}</th>" for h in header or [])
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    attr = f' class="{cls}"' if cls else ""
    thead = f"<thead><tr>{head}</tr></thead>" if header else ""
    return f"<table{attr}>{thead}<tbody>{body}</tbody></table>"


def fmt(v: Any, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v):,.{digits}f}"


def swatch(label: Label) -> str:
    r, g, b = (int(round(255 * c)) for c in COLOURS[label])
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


# ------------------------------------------------------------------------------------- header
def scan_header(scan_id: str, meta: CTMeta) -> list[tuple[str, str]]:
    """(name, value) of what the input says about the patient and the scan; absent fields are
    left out, never filled in."""
    extra = meta.extra or {}
    fields = [
        ("Scan", scan_id),
        ("Patient name", extra.get("patient_name")),
        ("Patient ID", meta.patient_id),
        ("Study date", _date(extra.get("study_date"))),
        ("Study", extra.get("study_description")),
        ("Series", extra.get("series_description")),
        ("Scanner", " ".join(v for v in (meta.manufacturer, meta.model) if v) or None),
        ("Tube voltage", f"{meta.kvp:g} kVp" if meta.kvp else None),
        ("Kernel", meta.kernel),
        ("Slice thickness", f"{meta.slice_thickness_mm:g} mm" if meta.slice_thickness_mm else None),
        ("Study UID", meta.study_uid),
        ("Series UID", meta.series_uid),
    ]
    return [(k, str(v)) for k, v in fields if v not in (None, "")]


def _date(v: str | None) -> str | None:
    """DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if v and len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v or None


def model_summary(model: Any | None) -> dict[str, str | None]:
    """Name, source folder and training data of a loaded model (anything with ``info`` and
    ``source``, e.g. :class:`calcscore.inference.Model`), for the report."""
    if model is None:
        return {"name": None, "source": None, "trained_on": None, "version": __version__}
    info = dict(getattr(model, "info", {}) or {})
    source = str(getattr(model, "source", "") or "") or None
    name = info.get("name") or (Path(source).name if source else None)
    return {
        "name": name,
        "source": source,
        "trained_on": info.get("trained_on"),
        "version": __version__,
    }


# --------------------------------------------------------------------------------- key images
def lesion_index(volume: CTVolume, row: pd.Series) -> tuple[int, int, int]:
    """The voxel (z, y, x) nearest a lesion's centroid (``centroid_*_mm`` of a lesion table),
    with z kept within the lesion's slices."""
    p = np.array([row["centroid_z_mm"], row["centroid_y_mm"], row["centroid_x_mm"]], float)
    idx = ((p - np.asarray(volume.origin_mm)) @ volume.direction) / np.asarray(volume.spacing_mm)
    z, y, x = (int(round(v)) for v in idx)
    z = int(np.clip(z, row["first_slice"], row["last_slice"]))
    return (
        int(np.clip(z, 0, volume.shape[0] - 1)),
        int(np.clip(y, 0, volume.shape[1] - 1)),
        int(np.clip(x, 0, volume.shape[2] - 1)),
    )


def key_images(
    volume: CTVolume,
    labels: LabelVolume,
    lesions: pd.DataFrame,
    *,
    half_width_mm: float = 25.0,
    max_images: int = MAX_KEY_IMAGES,
) -> list[dict[str, Any]]:
    """One axial close-up per lesion, largest Agatston first.

    Args:
        volume: the scan.
        labels: its label map.
        lesions: its :func:`calcscore.scoring.lesion_table`.
        half_width_mm: each close-up reaches this far around the lesion.
        max_images: at most this many.

    Returns:
        ``{"lesion", "label", "slice", "agatston", "volume_mm3", "src"}`` per image, ``src`` a
        PNG data URI (labels in the Fig. 6 colours).
    """
    from calcscore.viz import crop, render_slice

    out = []
    order = lesions.sort_values(["agatston", "volume_mm3"], ascending=False, kind="stable")
    hy, hx = (max(2, int(round(half_width_mm / s))) for s in volume.spacing_mm[1:])
    for _, row in order.head(max_images).iterrows():
        z, y, x = lesion_index(volume, row)
        box = (
            slice(z, z + 1),
            slice(max(0, y - hy), y + hy + 1),
            slice(max(0, x - hx), x + hx + 1),
        )
        rgb = render_slice(crop(volume, box), crop(labels, box), plane="axial", index=0)
        scale = max(1, int(round(172 / max(rgb.shape[1], 1))))
        out.append(
            {
                "lesion": int(row["lesion"]),
                "label": str(row["label"]),
                "slice": z,
                "agatston": float(row["agatston"]),
                "volume_mm3": float(row["volume_mm3"]),
                "src": png_data_uri(rgb, scale=scale),
            }
        )
    return out


def overview_image(volume: CTVolume, labels: LabelVolume) -> tuple[int, str]:
    """The axial slice with the most labelled voxels, labels on top: (slice, PNG data URI)."""
    from calcscore.viz import default_index, render_slice

    z = default_index(volume.shape, "axial", labels)
    return z, png_data_uri(render_slice(volume, labels, plane="axial", index=z))


def _read_as_standard(
    volume: CTVolume, labels: LabelVolume, lesions: pd.DataFrame
) -> tuple[list[dict[str, Any]], int, tuple[int, str]]:
    """:func:`key_images` and :func:`overview_image` of a scan shown in the standard layout (as
    radiologists read it, whatever the file's: :mod:`calcscore.orientation`), their slices
    numbered as the scan's own; and the number of lesions."""
    from calcscore.orientation import orientation_of

    orient, n, rows = orientation_of(volume.direction), volume.shape[0], lesions.copy()
    if orient.slices_reversed and len(rows):  # each lesion's slices, as the standard layout's
        rows["first_slice"] = orient.own_slice(lesions.last_slice, n)
        rows["last_slice"] = orient.own_slice(lesions.first_slice, n)
    std_volume, std_labels = orient.apply(volume), orient.apply(labels)
    images = key_images(std_volume, std_labels, rows)
    z, src = overview_image(std_volume, std_labels)
    for im in images:
        im["slice"] = orient.own_slice(im["slice"], n)
    return images, len(lesions), (orient.own_slice(z, n), src)


# ------------------------------------------------------------------------------------ sections
def _summary(report: dict) -> str:
    cac = report["labels"]["CAC"]["agatston"]
    risk = report["risk_category"]
    boxes = [
        ("CAC-DRS", report["cac_drs"]["label"], "Hecht et al. 2018; N: arteries with calcium"),
        (
            "Risk category",
            risk,
            f"CAC Agatston {fmt(cac)} (category range {RISK_RANGES[risk]})"
            if risk in RISK_RANGES  # else "not assessable" (calcscore.assessment), and why
            else f"CAC Agatston {fmt(cac)}: {report.get('not_assessable_reason') or ''}",
        ),
        (
            "Ordinal score",
            f"{report['ordinal_score']['total']} / {report['ordinal_score']['max']}",
            "Shemesh et al. 2010, left main within the LAD",
        ),
    ]
    cells = "".join(
        f'<div class="box" data-item="{esc(k)}">{esc(k)}<b>{esc(v)}</b>'
        f'<span class="info">{esc(n)}</span></div>'
        for k, v, n in boxes
    )
    ref = report.get("reference")
    line = ""
    if ref:
        line = (
            f'<p class="info">Reference annotation: CAC Agatston {fmt(ref.get("CAC_agatston"))}, '
            f"CAC-DRS {esc(ref.get('cac_drs'))}, risk category {esc(ref.get('risk_category'))}.</p>"
        )
    return f'<h2>Summary</h2><div class="summary">{cells}</div>{line}'


def _artery_table(report: dict) -> str:
    labels = report["labels"]
    ordinal = report["ordinal_score"]["arteries"]
    rows = []
    for lab in CAC_LABELS:
        s, o = labels[lab.name], ordinal[lab.name]
        rows.append(
            [
                f"{swatch(lab)}{esc(lab.name)} <span class='info'>{esc(DISPLAY_NAMES[lab])}</span>",
                fmt(s["agatston"]),
                fmt(s["volume_mm3"]),
                fmt(s["mass_mg"]),
                str(s["n_lesions"]),
                f"{o['grade']} ({esc(o['extent'])})",
                f"{fmt(o['calcified_length_mm'])} / {fmt(o['artery_length_mm'], 0)}",
            ]
        )
    c = labels["CAC"]
    rows.append(
        [
            "<b>CAC</b> (LAD + LCX + RCA)",
            f"<b>{fmt(c['agatston'])}</b>",
            fmt(c["volume_mm3"]),
            fmt(c["mass_mg"]),
            str(c["n_lesions"]),
            f"<b>{report['ordinal_score']['total']}</b>",
            "",
        ]
    )
    header = ["Artery", "Agatston", "Volume mm³", "Mass mg", "Lesions", "Ordinal grade"]
    header.append("Calcified / nominal length mm")
    return (
        "<h2>Coronary arteries</h2>"
        + table(header, rows, cls="arteries")
        + f'<p class="info">{esc(report["cac_drs"]["note"])}. Ordinal score: '
        f"{esc(report['ordinal_score']['note'])} (see calcscore.standards for the rule and its "
        "limits).</p>"
    )


def _beside_table(report: dict) -> str:
    rows = []
    for name in report["beside_cac"]["labels"]:
        lab, s = Label[name], report["labels"][name]
        rows.append(
            [
                f"{swatch(lab)}{esc(name)} <span class='info'>{esc(DISPLAY_NAMES[lab])}</span>",
                fmt(s["agatston"]),
                fmt(s["volume_mm3"]),
                fmt(s["mass_mg"]),
                str(s["n_lesions"]),
            ]
        )
    return "<h2>Aorta and valves (beside CAC, not part of it)</h2>" + table(
        ["Structure", "Agatston", "Volume mm³", "Mass mg", "Lesions"], rows
    )


def _checks(checks: Any | None, report: dict) -> str:
    if checks is None:
        return "<h2>Checks</h2><p class='info'>The scan checks were not run for this report.</p>"
    d = checks.to_dict() if hasattr(checks, "to_dict") else dict(checks)
    items = []
    order = {"refusal": 0, "warning": 1, "info": 2}
    for f in sorted(d.get("findings", []), key=lambda f: order.get(f["severity"], 3)):
        cls = "info" if f["severity"] == "info" else "warn"
        tag = "FORCED" if f["severity"] == "refusal" else f["severity"]
        items.append(
            f'<div class="{cls}" data-code="{esc(f["code"])}"><b>{esc(tag)}</b> '
            f"{esc(f['code'])}: {esc(f['message'])}</div>"
        )
    if not any(f["severity"] != "info" for f in d.get("findings", [])):
        items.insert(
            0,
            '<p class="info">No warnings: contrast, metal, slice thickness and HU '
            "checks passed.</p>",
        )
    net = report.get("safety_net")
    if isinstance(net, dict):
        removed = net.get("removed_voxels") or {}
        if isinstance(removed, dict):
            removed = ", ".join(f"{k} {v}" for k, v in removed.items() if v) or "none"
        text = (
            f"labelled voxels removed outside their regions: {removed}"
            if net.get("applied")
            else f"not applied ({net.get('reason')})"
        )
        items.append(f'<p class="info">Anatomical safety net: {esc(text)}.</p>')
    return "<h2>Checks</h2>" + "".join(items)


def _model(model: dict[str, str | None]) -> str:
    trained = model.get("trained_on")
    rows = [
        ["Model", esc(model.get("name") or "not recorded")],
        ["Training data", esc(trained or "not recorded in the model's model.json")],
        ["calcscore", esc(model.get("version"))],
    ]
    warn = ""
    if trained and "synthetic" in trained.lower():
        warn = (
            '<div class="warn" data-code="synthetic_model"><b>Trained on synthetic phantoms,'
            " not on annotated patient scans.</b> Its scores on patient scans are not "
            "validated.</div>"
        )
    return "<h2>Model</h2>" + warn + table(None, rows, cls="kv")


def _key_images(images: list[dict], n_lesions: int, overview: tuple[int, str] | None) -> str:
    parts = ["<h2>Key images</h2>"]
    if overview is not None:
        z, src = overview
        parts.append(
            f'<figure class="overview" style="width:auto"><img alt="axial slice {z} with the '
            f'labels" src="{src}"><figcaption>Axial slice {z}, the most labelled voxels; '
            "colours as in the table (paper Fig. 6).</figcaption></figure>"
        )
    if not images:
        parts.append("<p>No calcified lesion was found.</p>")
        return "".join(parts)
    figs = "".join(
        f'<figure><img class="lesion" alt="lesion {im["lesion"]} ({esc(im["label"])})" '
        f'src="{im["src"]}"><figcaption>{swatch(Label[im["label"]])}#{im["lesion"]} '
        f"{esc(im['label'])}, Agatston {fmt(im['agatston'])}, {fmt(im['volume_mm3'])} mm³, "
        f"slice {im['slice']}</figcaption></figure>"
        for im in images
    )
    parts.append(f'<div class="keys">{figs}</div>')
    if n_lesions > len(images):
        parts.append(
            f"<p class='info'>{n_lesions - len(images)} smaller lesions are not shown "
            "(all are in the lesions CSV).</p>"
        )
    return "".join(parts)


# ------------------------------------------------------------------------------------- page
def render_scan_report(
    report: dict,
    volume: CTVolume,
    labels: LabelVolume,
    *,
    lesions: pd.DataFrame | None = None,
    checks: Any | None = None,
    model: dict[str, str | None] | None = None,
) -> str:
    """The HTML of one scan's report.

    Args:
        report: the scores dict of :func:`calcscore.scoring.score_report` (a
            ``<scan>_scores.json``).
        volume: the scan.
        labels: its label map.
        lesions: its :func:`calcscore.scoring.lesion_table` (computed when None).
        checks: a :class:`calcscore.checks.CheckReport` (or its dict).
        model: :func:`model_summary`.

    Returns:
        a self-contained HTML page.
    """
    from calcscore.scoring import lesion_table

    if lesions is None:
        lesions = lesion_table(volume, labels)
    scan_id = str(report.get("scan") or "scan")
    header = table(
        None, [[esc(k), esc(v)] for k, v in scan_header(scan_id, volume.meta)], cls="kv header"
    )
    body = [
        f"<h1>Calcium scoring report: {esc(scan_id)}</h1>",
        f'<div class="ruo" id="research-use">{esc(RESEARCH_USE)}</div>',
        header,
        _summary(report),
        _artery_table(report),
        _beside_table(report),
        _key_images(*_read_as_standard(volume, labels, lesions)),
        _checks(checks, report),
        _model(model or model_summary(None)),
        f"<footer>Written by calcscore {esc(__version__)} (Lessmann et al., IEEE TMI 2018). "
        f"{esc(RESEARCH_USE)}</footer>",
    ]
    return page(f"calcscore report {scan_id}", "\n".join(body))


def write_html(path: str | Path, html_text: str) -> Path:
    """Write an HTML page atomically (UTF-8)."""
    from calcscore.io import atomic_path

    p = Path(path)
    with atomic_path(p) as tmp:
        (tmp / p.name).write_text(html_text, encoding="utf-8")
    return p


def write_scan_page(
    report: dict,
    volume: CTVolume,
    labels: LabelVolume,
    out_dir: str | Path,
    *,
    checks: Any | None = None,
    model: Any | None = None,
) -> Path:
    """Render and write ``<scan>_report.html`` (atomically).

    Args:
        report: the scores dict (a ``<scan>_scores.json``).
        volume: the scan.
        labels: its label map.
        out_dir: the folder to write to.
        checks: a :class:`calcscore.checks.CheckReport` (or its dict).
        model: a loaded model, see :func:`model_summary`.

    Returns:
        the page's path.
    """
    html_text = render_scan_report(
        report, volume, labels, checks=checks, model=model_summary(model)
    )
    return write_html(Path(out_dir) / f"{report['scan']}_report.html", html_text)
