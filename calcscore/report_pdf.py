"""Report pages as PDF (``calcscore score --pdf``): the HTML printed by Chromium.

Why Chromium through Playwright: the PDF is then the page a browser shows (the browser test drives
the same engine), Playwright is a well-kept library (Microsoft, monthly releases) that calcscore
already uses for its browser tests, and ``page.pdf`` prints A4 with the page's own ``@page`` and
``@media print`` rules and background colours. WeasyPrint would need the Pango system libraries
and renders its own subset of CSS; xhtml2pdf and fpdf2 do not lay out modern CSS (flex boxes).

Playwright never downloads a browser here: it drives Debian's chromium (``apt-get install
chromium``), found at /usr/bin/chromium or on the PATH. When either is missing, :func:`find_pdf_engine`
raises one line that says what to install, before any scan is scored.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from calcscore.errors import MissingDependencyError, optional_import

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PDF_OPTIONS = {
    "format": "A4",
    "print_background": True,
    "prefer_css_page_size": True,
    "margin": {"top": "12mm", "bottom": "12mm", "left": "12mm", "right": "12mm"},
}


def find_chromium() -> Path | None:
    """Debian's /usr/bin/chromium, else the first of :data:`CHROMIUM_NAMES` on the PATH."""
    debian = Path("/usr/bin/chromium")
    if debian.is_file() and os.access(debian, os.X_OK):
        return debian
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def find_pdf_engine() -> Path:
    """The Chromium that prints PDFs; raises :class:`MissingDependencyError` (one line, with the
    fix) when Playwright or Chromium is missing."""
    optional_import("playwright.sync_api", "--pdf (printing reports with Chromium)", "pdf")
    chromium = find_chromium()
    if chromium is None:
        raise MissingDependencyError(
            "--pdf needs Chromium, which was not found at /usr/bin/chromium or on the PATH "
            "(install it: apt-get install chromium; or leave out --pdf and print the HTML report)"
        )
    return chromium


def html_to_pdf(
    pages: Iterable[tuple[str | Path, str | Path]], *, chromium: str | Path | None = None
) -> list[Path]:
    """Print each (HTML file, PDF file) pair with one Chromium; each PDF is written atomically.
    Returns the PDF paths."""
    from calcscore.io import atomic_path

    exe = Path(chromium) if chromium is not None else find_pdf_engine()
    sync_api = optional_import("playwright.sync_api", "--pdf (printing reports)", "pdf")
    pairs = [(Path(h), Path(p)) for h, p in pages]
    out: list[Path] = []
    if not pairs:
        return out
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(exe), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page()
            for html_path, pdf_path in pairs:
                page.goto(html_path.resolve().as_uri(), wait_until="load")
                page.emulate_media(media="print")
                with atomic_path(pdf_path) as tmp:
                    page.pdf(path=str(tmp / pdf_path.name), **PDF_OPTIONS)
                log.info("wrote %s", pdf_path)
                out.append(pdf_path)
        finally:
            browser.close()
    return out
