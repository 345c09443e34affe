"""The slice viewer in a real browser: JupyterLab on localhost, headless Chromium via Playwright.

The notebook ``notebooks/00_slice_viewer.ipynb`` is copied into a temporary root folder, opened
in JupyterLab, all its cells run; then the slice slider is dragged and the >= 130 HU overlay
toggled, and the rendered image must change each time (screenshots of the first panel are
compared pixel by pixel and saved under the test's tmp_path/screenshots). In the notebook's
annotation viewer the cursor is moved, a brush stroke painted and undone. Skipped only when
Debian's chromium is not installed at /usr/bin/chromium; Playwright never downloads a browser.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from calcscore.report_pdf import CHROMIUM_ARGS as CHROMIUM_FLAGS
from calcscore.viz import THRESHOLD_COLOUR

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "00_slice_viewer.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = list(CHROMIUM_FLAGS)  # the project's flags (calcscore.report_pdf prints with them)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except OSError:
        return 0


@pytest.fixture
def jupyterlab(tmp_path):
    """A JupyterLab server on a free localhost port with a token, rooted in a temporary folder
    that holds the slice viewer notebook; yields (base url, token, notebook name)."""
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
    }
    log = open(tmp_path / "jupyterlab.log", "w")  # noqa: SIM115 - closed below
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.port_retries=0",
        "--allow-root",
        "--LabApp.expose_app_in_browser=True",
        # nothing from the network: no update check, no extension manager queries
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while _get(f"{base}/api/status?token={token}") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    "JupyterLab did not start:\n"
                    + (tmp_path / "jupyterlab.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield base, token, NOTEBOOK.name
    finally:
        req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
        try:
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _pixels(png: bytes) -> np.ndarray:
    return np.round(matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3] * 255).astype(
        int
    )


def _cyan_pixels(rgb: np.ndarray) -> int:
    """Pixels in the >= 130 HU overlay colour blended over grey g (0.45 g + 0.55 colour): green
    and blue exceed red by 0.55 x the colour's green and blue, whatever g."""
    excess = 0.55 * 255 * np.asarray(THRESHOLD_COLOUR)
    g_r, b_r = rgb[..., 1] - rgb[..., 0], rgb[..., 2] - rgb[..., 0]
    return int(((np.abs(g_r - excess[1]) < 12) & (np.abs(b_r - excess[2]) < 12)).sum())


def _run_notebook(page, base: str, token: str, name: str) -> None:
    """Open the notebook in JupyterLab, wait for its kernel and run every cell."""
    page.goto(f"{base}/lab/tree/{name}?token={token}&reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=120_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function(
        """() => { const w = window.jupyterapp.shell.currentWidget;
                   const k = w && w.sessionContext && w.sessionContext.session
                             && w.sessionContext.session.kernel;
                   return k && k.status === 'idle'; }""",
        timeout=120_000,
    )
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")


def test_slice_viewer_in_jupyterlab(jupyterlab, tmp_path):
    from playwright import sync_api  # a dev dependency: its absence is a failure, not a skip

    base, token, name = jupyterlab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _run_notebook(page, base, token, name)
            image = page.locator(".calcscore-viewer img.calcscore-image").first
            image.wait_for(state="visible", timeout=180_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('.calcscore-viewer img.calcscore-image');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=60_000,
            )
            image.scroll_into_view_if_needed()
            viewer = page.locator(
                ".calcscore-viewer"
            ).first  # the second one is the annotation tool
            viewer.screenshot(path=str(shots / "0_viewer.png"))
            first = image.screenshot(path=str(shots / "1_initial.png"))
            readout = viewer.locator(".calcscore-slice-slider .widget-readout")
            slice_before = readout.inner_text()

            # drag the slice slider to the right
            src = image.get_attribute("src")
            handle = viewer.locator(".calcscore-slice-slider .noUi-handle")
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2, steps=8)
            page.mouse.up()
            page.wait_for_function(
                "(old) => document.querySelector('.calcscore-viewer img.calcscore-image').src !== old",
                arg=src,
                timeout=30_000,
            )
            page.wait_for_timeout(300)
            moved = image.screenshot(path=str(shots / "2_slider_moved.png"))
            assert readout.inner_text() != slice_before
            a, b = _pixels(first), _pixels(moved)
            assert a.shape == b.shape and np.abs(a - b).mean() > 1.0

            # the >= 130 HU overlay on
            src = image.get_attribute("src")
            viewer.locator(".calcscore-threshold-toggle input[type=checkbox]").click()
            page.wait_for_function(
                "(old) => document.querySelector('.calcscore-viewer img.calcscore-image').src !== old",
                arg=src,
                timeout=30_000,
            )
            page.wait_for_timeout(300)
            overlay = image.screenshot(path=str(shots / "3_threshold_overlay.png"))
            viewer.screenshot(path=str(shots / "4_viewer_after.png"))
            c = _pixels(overlay)
            assert np.abs(c - b).mean() > 1.0
            assert _cyan_pixels(c) > _cyan_pixels(b) + 50
        finally:
            browser.close()
    assert sorted(p.name for p in shots.iterdir()) == [
        "0_viewer.png",
        "1_initial.png",
        "2_slider_moved.png",
        "3_threshold_overlay.png",
        "4_viewer_after.png",
    ]


def _red_pixels(rgb: np.ndarray) -> int:
    """Pixels in LAD red blended over grey g (0.3 g + 0.7 red): red exceeds green by 0.7 x 255
    and green equals blue, whatever g."""
    r_g, g_b = rgb[..., 0] - rgb[..., 1], rgb[..., 1] - rgb[..., 2]
    return int(((np.abs(r_g - 0.7 * 255) < 12) & (np.abs(g_b) < 6)).sum())


def _wait_src_change(page, selector: str, old: str) -> None:
    page.wait_for_function(
        "([sel, old]) => document.querySelector(sel).src !== old",
        arg=[selector, old],
        timeout=30_000,
    )
    page.wait_for_timeout(300)


def test_annotation_in_jupyterlab(jupyterlab, tmp_path):
    from playwright import sync_api

    base, token, name = jupyterlab
    shots = tmp_path / "screenshots"
    shots.mkdir()
    viewer = ".calcscore-viewer:has(.calcscore-annotate)"
    img_sel = f"{viewer} img.calcscore-image"
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            _run_notebook(page, base, token, name)
            image = page.locator(img_sel).first
            image.wait_for(state="visible", timeout=180_000)
            page.wait_for_function(
                "(sel) => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; }",
                arg=img_sel,
                timeout=60_000,
            )
            image.scroll_into_view_if_needed()
            page.locator(viewer).screenshot(path=str(shots / "0_annotation_viewer.png"))

            # move the cursor ten columns to the right: the cross moves
            start = _pixels(image.screenshot(path=str(shots / "1_start.png")))
            col = page.locator(f"{viewer} .calcscore-cursor-col input")
            src = image.get_attribute("src")
            col.fill(str(int(col.input_value()) + 10))
            col.press("Enter")
            _wait_src_change(page, img_sel, src)
            moved = _pixels(image.screenshot(path=str(shots / "2_cursor_moved.png")))
            assert np.abs(moved - start).mean() > 0.01

            # paint LAD with a 6 mm brush at the cursor
            page.locator(f"{viewer} .calcscore-tool button", has_text="paint").click()
            radius = page.locator(f"{viewer} .calcscore-radius input")
            radius.fill("6")
            radius.press("Enter")
            page.wait_for_timeout(500)
            src = image.get_attribute("src")
            page.locator(f"{viewer} .calcscore-apply").click()
            _wait_src_change(page, img_sel, src)
            painted = _pixels(image.screenshot(path=str(shots / "3_painted.png")))
            message = page.locator(f"{viewer} .calcscore-message").inner_text()
            assert "paint LAD" in message and "voxels changed" in message, message
            assert _red_pixels(painted) > _red_pixels(moved) + 50

            # undo: the image is the one before the stroke again
            src = image.get_attribute("src")
            page.locator(f"{viewer} .calcscore-undo").click()
            _wait_src_change(page, img_sel, src)
            undone = _pixels(image.screenshot(path=str(shots / "4_undone.png")))
            assert "undo" in page.locator(f"{viewer} .calcscore-message").inner_text()
            assert undone.shape == moved.shape and np.abs(undone - moved).mean() < 0.5
        finally:
            browser.close()
    assert len(list(shots.iterdir())) == 5
