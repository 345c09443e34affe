"""The report pages of `calcscore score` (calcscore.report_html, report_cohort, report_pdf):
what they say, from hand-made scans and summaries. The browser renders them in
test_report_browser.py."""

from __future__ import annotations

import base64
import io
import re

import matplotlib.image
import numpy as np
import pytest
from report_cases import FakeModel, cohort_summary, scan

from calcscore.checks import check_scan
from calcscore.cli import main
from calcscore.io import write_volume
from calcscore.report_cohort import render_cohort_report
from calcscore.report_html import render_scan_report
from calcscore.scoring import lesion_table, score_report
from calcscore.volume import CTMeta

IDENTIFIED = CTMeta(
    slice_thickness_mm=5.0,
    kernel="B30f",
    manufacturer="SIEMENS",
    patient_id="PID-0042",
    extra={"patient_name": "Doe^Jane", "study_date": "20240131", "series_description": "LDCT"},
)


def _page(meta=None, *, trained_on="synthetic phantoms only (calcscore.phantom)", checks=True):
    volume, labels = scan(meta)
    report = score_report(volume, labels, scan="s1")
    from calcscore.report_html import model_summary

    return report, render_scan_report(
        report,
        volume,
        labels,
        checks=check_scan(volume) if checks else None,
        model=model_summary(FakeModel(trained_on)),
    )


def _pngs(html: str, cls: str) -> list[np.ndarray]:
    srcs = re.findall(rf'<img class="{cls}"[^>]*src="data:image/png;base64,([^"]+)"', html)
    return [
        np.round(matplotlib.image.imread(io.BytesIO(base64.b64decode(s)))[..., :3] * 255)
        for s in srcs
    ]


def test_scan_page_has_scores_categories_and_one_key_image_per_lesion():
    report, html = _page()
    # 12 pixels of 0.64 mm^2 x factor 3 per lesion (normalisation 3 mm / 3 mm = 1): 23.04
    assert report["labels"]["LAD"]["agatston"] == pytest.approx(23.04)
    assert report["cac_drs"]["label"] == "A1/N3"
    assert 'data-item="CAC-DRS"' in html and "<b>A1/N3</b>" in html
    assert "<b>II</b>" in html  # risk category of CAC 69.1 (11-100)
    assert "69.1" in html
    assert html.count("<tr>") >= 4 + 3  # three arteries + CAC; TAC, AV, MV beside
    assert "Aorta and valves (beside CAC, not part of it)" in html
    lesions = lesion_table(*scan())
    images = _pngs(html, "lesion")
    assert len(images) == len(lesions) == 4
    # every key image shows its label in the Fig. 6 colour, blended (alpha 0.7) over grey
    first = re.findall(r'<img class="lesion" alt="lesion (\d+) \((\w+)\)"', html)
    colour = {"LAD": (1, 0, 0), "LCX": (0, 0.8, 0), "RCA": (0, 0.3, 1), "TAC": (1, 0.9, 0)}
    for (_, name), rgb in zip(first, images):
        grey = rgb.min(axis=2, keepdims=True)  # no label colour here is grey-free
        want = 0.7 * 255 * np.asarray(colour[name])
        hit = np.abs((rgb - grey) - (want - want.min())).max(axis=2) < 6
        assert hit.sum() >= 12, name
    # self-contained: every image inline, nothing fetched
    assert not re.search(r'src="(?!data:image/png;base64,)', html)
    assert "http://" not in html and "https://" not in html


def test_scan_page_prints_only_the_header_the_input_has():
    _, anonymous = _page(CTMeta())
    header = anonymous.split('class="kv header"')[1].split("</table>")[0]
    assert "Scan" in header
    for absent in ("Patient", "Study date", "Scanner", "Kernel", "UID"):
        assert absent not in header
    _, named = _page(IDENTIFIED)
    for present in ("Doe^Jane", "PID-0042", "2024-01-31", "LDCT", "SIEMENS", "B30f", "5 mm"):
        assert present in named


def test_scan_page_warns_and_names_the_model():
    _, html = _page(IDENTIFIED)
    assert 'data-code="thick_slices"' in html  # 5 mm slices
    assert "For research use only" in html
    assert 'data-code="synthetic_model"' in html and "Trained on synthetic phantoms" in html
    _, real = _page(IDENTIFIED, trained_on="1,200 annotated patient scans")
    assert "synthetic_model" not in real and "1,200 annotated patient scans" in real
    _, unknown = _page(trained_on=None, checks=False)
    assert "not recorded in the model" in unknown and "checks were not run" in unknown


def test_cohort_page_counts_links_and_agreement(tmp_path):
    (tmp_path / "a_report.html").write_text("<html></html>")
    html = render_cohort_report(cohort_summary(), tmp_path)
    assert "5 scans: 4 scored, 1 failed" in html
    assert '<a href="a_report.html">a</a>' in html
    assert 'href="b_report.html"' not in html  # no page, no link
    assert "refused: contrast-enhanced" in html
    # CAC-DRS counts A0 0, A1 2, A2 0, A3 2
    drs = html.split('data-item="CAC-DRS"')[1].split("</table>")[0]
    assert re.findall(r"<td>(\d+)</td>", drs) == ["0", "2", "0", "2", "0"]
    agreement = html.split("Agreement with the reference (4 scans)")[1]
    risk = agreement.split("CAC-DRS category")[0]
    assert "Linearly weighted kappa 0.78" in risk  # worked out by hand (report_cases)
    iv_row = risk.split("<b>IV</b>")[1].split("</tr>")[0]
    assert re.findall(r"<td>(\d+)</td>", iv_row) == ["0", "0", "1", "0"]
    assert "exact agreement 75.0 %" in risk
    assert 'class="bland-altman"' in html


def test_cohort_page_without_references_has_no_agreement(tmp_path):
    summary = cohort_summary()
    summary["ref_CAC_agatston"] = np.nan
    html = render_cohort_report(summary, tmp_path)
    assert "Agreement" not in html and "bland-altman" not in html


def test_pdf_without_chromium_fails_in_one_line_before_scoring(tmp_path, monkeypatch, capsys):
    pytest.importorskip("playwright")
    import calcscore.report_pdf as report_pdf

    monkeypatch.setattr(report_pdf, "find_chromium", lambda: None)
    volume, _ = scan()
    image = write_volume(volume, tmp_path / "s1.nii.gz")
    out = tmp_path / "out"
    assert main(["score", str(image), "--out", str(out), "--pdf"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "needs Chromium" in err and "apt-get install chromium" in err
    assert not out.exists()  # nothing scored, nothing written


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small random model (as in test_score.py) that calls few voxels calcium."""
    import torch

    from calcscore.networks import build_network
    from calcscore.training import get_config, save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    c1 = get_config("workshop", "cnn1", width=4, head_width=8)
    cnn1 = build_network("cnn1", c1.network_params())
    with torch.no_grad():
        cnn1.head_layers[-1].bias[0] = 4.0
        for sub in cnn1.subnets:
            sub.aux_classifier[-1].bias[0] = 4.0
    save_model(cnn1, c1, folder / "cnn1.pt")
    return folder


def test_score_writes_the_pages_and_scores_the_manifest_reference(tmp_path, tiny_model):
    import json
    from dataclasses import replace

    import pandas as pd

    from calcscore.io import write_labels
    from calcscore.manifest import write_manifest

    volume, labels = scan(replace(IDENTIFIED, slice_thickness_mm=3.0))
    image = write_volume(volume, tmp_path / "in" / "s1.nii.gz")
    ref = write_labels(labels, tmp_path / "in" / "s1_ref.nii.gz")
    manifest = write_manifest(
        pd.DataFrame({"scan_id": ["s1"], "image": [str(image)], "labels": [str(ref)]}),
        tmp_path / "in" / "manifest.csv",
    )
    out = tmp_path / "out"
    args = ["score", str(manifest), "--out", str(out), "--model", str(tiny_model), "--force"]
    assert main([*args, "--no-overlay"]) == 0
    scores = json.loads((out / "s1_scores.json").read_text())
    expected = score_report(volume, labels, scan="s1")  # the reference, scored independently
    assert scores["reference"]["CAC_agatston"] == pytest.approx(69.12)
    assert scores["reference"]["cac_drs"] == expected["cac_drs"]["label"] == "A1/N3"
    summary = pd.read_csv(out / "cohort_summary.csv")
    row = summary.iloc[0]
    assert row["ref_CAC_agatston"] == pytest.approx(69.12) and row["ref_risk_category"] == "II"
    assert row["cac_drs"] == scores["cac_drs"]["label"]
    assert row["ordinal_score"] == scores["ordinal_score"]["total"]
    page = (out / "s1_report.html").read_text(encoding="utf-8")
    # a NIfTI carries the patient ID (in calcscore's sidecar) but not the name
    assert "PID-0042" in page and "Doe^Jane" not in page
    assert "Reference annotation: CAC Agatston 69.1" in page
    cohort = (out / "cohort_report.html").read_text(encoding="utf-8")
    assert '<a href="s1_report.html">s1</a>' in cohort and "Agreement with the reference" in cohort

    quiet = tmp_path / "quiet"
    assert main(["score", str(image), "--out", str(quiet), "--model", str(tiny_model), "--force",
                 "--no-overlay", "--no-report"]) == 0  # fmt: skip
    assert (quiet / "s1_scores.json").is_file()
    assert not list(quiet.glob("*.html"))


def test_cohort_page_counts_scans_that_are_not_assessable(tmp_path):
    """A scan scored with --force (or its heart cut) has no category: the distribution counts it
    under "not assessable", never in A0 or I."""
    summary = cohort_summary()
    summary.loc[summary.scan_id == "a", ["cac_drs", "risk_category"]] = "not assessable"
    summary["assessable"] = summary.scan_id != "a"
    html = render_cohort_report(summary, tmp_path)
    for item in ("CAC-DRS", "Risk category"):
        part = html.split(f'data-item="{item}"')[1].split("</table>")[0]
        assert "not assessable" in part
        assert re.findall(r"<td>(\d+)</td>", part)[-1] == "1"
    drs = html.split('data-item="CAC-DRS"')[1].split("</table>")[0]
    assert re.findall(r"<td>(\d+)</td>", drs) == ["0", "1", "0", "2", "1"]
