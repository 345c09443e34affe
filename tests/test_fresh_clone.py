"""A fresh clone without the shared data beside it shows the real scans (issue 30).

The repository's files are copied to a temporary folder with no ``shared`` folder next to it
(``fresh_clone`` in conftest.py); the notebook kernels import calcscore from that copy
(PYTHONPATH), so the only real scans they can reach are those the repository ships. Notebooks
01, 03 and 08 run there at their tiny parameters and must show the real scans.

``test_binder_requirements_run_notebooks`` checks the Binder files the way Binder uses them,
short of repo2docker (no docker here): ``binder/requirements.txt`` into a fresh virtual
environment, then ``binder/postBuild``, then notebooks 00 and 08 at their tiny parameters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from calcscore.notebook_report import run_notebook

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:zmq.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:papermill.*"),
    pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning"),
]


def outputs(notebook: Path) -> tuple[str, int]:
    """All text a notebook printed or displayed, and the number of images it showed."""
    nb = nbformat.read(notebook, as_version=4)
    text, images = [], 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            assert o.get("output_type") != "error", o.get("evalue")
            text.append(o.get("text", ""))
            data = o.get("data", {})
            text.append(data.get("text/plain", ""))
            images += "image/png" in data
    return "\n".join(text), images


#: what each notebook must print about the shipped real scans at its tiny parameters
SHOWS = {
    "01_data": ["real (QRM) from {data}", "47 x 512 x 512"],
    "03_inference_scoring": ["real (QRM) from {data}", "15 x 240 x 240", "model: {clone}"],
    "08_domain_shift": [
        "the real scans ship with calcscore: {data}",
        "shape (z, y, x) 64 x 360 x 512",  # the whole real chest CT
        "shape (z, y, x) 47 x 512 x 512",  # the whole QRM scan
        "model: {clone}",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHOWS))
def test_notebook_shows_real_scans_without_shared(name, fresh_clone, tmp_path, monkeypatch):
    assert not (fresh_clone.parent / "shared").exists()
    monkeypatch.setenv("PYTHONPATH", str(fresh_clone))
    work = tmp_path / "work"  # no pyproject above it: repo_path finds the clone via the package
    work.mkdir()
    run = run_notebook(
        fresh_clone / "notebooks" / f"{name}.ipynb", tmp_path / "out", tiny=True, cwd=work
    )
    text, images = outputs(run.notebook)
    data = fresh_clone / "calcscore" / "datasets" / "data"
    for expected in SHOWS[name]:
        assert expected.format(data=data, clone=fresh_clone) in text, expected
    assert "not at" not in text and "skipped" not in text
    assert images >= 3


@pytest.mark.slow
def test_binder_requirements_run_notebooks(fresh_clone, tmp_path):
    """Binder's install, in a fresh venv, from the fresh clone; then notebooks 00 and 08."""
    runtime = (fresh_clone / "binder" / "runtime.txt").read_text().strip()  # "python-3.11"
    if runtime != f"python-{sys.version_info.major}.{sys.version_info.minor}":
        pytest.skip(f"binder/runtime.txt asks for {runtime}, this is Python {sys.version}")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)

    def sh(*cmd, timeout=1200):
        done = subprocess.run(
            cmd, cwd=fresh_clone, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    sh("pip", "install", "-q", "-r", "binder/requirements.txt")
    sh("bash", "binder/postBuild")
    where = sh(
        "python", "-c", "import calcscore, torch; print(calcscore.__file__, torch.__version__)"
    )
    assert where.split()[0].startswith(str(fresh_clone)) and "+cpu" in where.split()[1]
    for name in ("00_slice_viewer", "08_domain_shift"):
        out = tmp_path / name
        sh("calcscore", "report", f"notebooks/{name}.ipynb", "--out", str(out), "--tiny")
        text, images = outputs(out / f"{name}.ipynb")
        assert images >= 1 and (out / f"{name}.html").is_file()
        assert (
            f"calcscore      {sh('python', '-c', 'import calcscore; print(calcscore.__version__)').strip()}"
            in text
        )
    assert f"the real scans ship with calcscore: {fresh_clone}" in text
