"""The report pages in a real browser: Debian's chromium through Playwright (never a downloaded
browser). The scan page is opened from disk, its tables and every image must render
(``naturalWidth > 0``), a screenshot must show the LAD's Fig. 6 red, the cohort page's link must
open the scan page, and the PDF printed by calcscore.report_pdf must be an A4 document whose
rendering shows the same red. Screenshots are kept under the test's tmp_path."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from report_cases import FakeModel, cohort_summary, scan

from calcscore.checks import check_scan
from calcscore.report_cohort import write_cohort_report
from calcscore.report_html import write_scan_page
from calcscore.report_pdf import CHROMIUM_ARGS, html_to_pdf
from calcscore.scoring import score_report
from calcscore.volume import CTMeta

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


def _red_pixels(png: bytes) -> int:
    """Pixels of the LAD label (Fig. 6 red at alpha 0.7 over grey g: R = 0.3 g + 178.5,
    G = B = 0.3 g)."""
    rgb = np.round(matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((np.abs(r - g - 178.5) < 8) & (np.abs(g - b) < 3)).sum())


@pytest.fixture
def pages(tmp_path) -> Path:
    volume, labels = scan(CTMeta(patient_id="PID-7", kernel="B30f", manufacturer="SIEMENS"))
    report = score_report(volume, labels, scan="a")
    write_scan_page(
        report, volume, labels, tmp_path, checks=check_scan(volume), model=FakeModel("synthetic")
    )
    write_cohort_report(cohort_summary(), tmp_path)
    return tmp_path


@pytest.mark.slow  # the fast lane stays under 3 minutes; CI runs it
def test_report_pages_render_in_chromium(pages, tmp_path):
    from playwright import sync_api  # a dev dependency: its absence is a failure, not a skip

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto((pages / "a_report.html").as_uri(), wait_until="load")
            assert page.title() == "calcscore report a"
            rows = page.locator("table.arteries tbody tr")
            assert rows.count() == 4  # LAD, LCX, RCA, CAC
            assert rows.nth(0).inner_text().startswith("LAD")
            assert page.locator("table.arteries").bounding_box()["height"] > 80
            images = page.evaluate(
                "() => [...document.images].map(i => [i.className, i.complete, i.naturalWidth,"
                " i.getBoundingClientRect().width])"
            )
            assert [i[0] for i in images].count("lesion") == 4
            assert all(done and nat > 0 and shown > 0 for _, done, nat, shown in images)
            assert page.locator("#research-use").is_visible()
            shot = page.screenshot(path=str(tmp_path / "scan_page.png"), full_page=True)
            keys = page.locator("div.keys").screenshot(path=str(tmp_path / "key_images.png"))
            assert _red_pixels(keys) > 100 and _red_pixels(shot) > 100

            page.goto((pages / "cohort_report.html").as_uri(), wait_until="load")
            assert page.locator("table.scans tbody tr").count() == 5
            assert page.evaluate(
                "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(tmp_path / "cohort_page.png"), full_page=True)
            with page.expect_navigation():
                page.click('table.scans a[href="a_report.html"]')
            assert page.url.endswith("/a_report.html")
        finally:
            browser.close()


def test_report_prints_to_a4_pdf(pages, tmp_path):
    (pdf,) = html_to_pdf([(pages / "a_report.html", tmp_path / "a_report.pdf")])
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert boxes and all(
        abs(float(w) - 595.92) < 2 and abs(float(h) - 842.88) < 2 for w, h in boxes
    )
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed: the PDF was not looked at")
    import subprocess

    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pngs = sorted(tmp_path.glob("page*.png"))
    assert pngs and sum(_red_pixels(p.read_bytes()) for p in pngs) > 20
