"""Every notebook in notebooks/ (found by glob) runs end to end with papermill at its tiny
parameters, is committed without outputs, is thin and says where its numbers come from."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from calcscore.notebook_report import (
    has_outputs,
    notebook_parameters,
    run_notebook,
    tiny_parameters,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
#: Notebooks that score with the shipped model when ``model_path`` is None.
SHIPPED_MODEL = ROOT / "calcscore" / "models" / "default" / "cnn1.pt"
#: Notebooks with a ``real_scan`` parameter run on this real non-contrast chest CT.
REAL_CHEST_CT = ROOT.parent / "shared" / "data" / "open-chest-ct" / "lungdx-a0001-b.nii.gz"

pytestmark = [
    # jupyter_client / zmq / papermill deprecations raised inside the libraries, not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning:jupyter_client.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:zmq.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:papermill.*"),
    pytest.mark.filterwarnings("ignore:Jupyter is migrating its paths:DeprecationWarning"),
]


def _real_chest_ct() -> str:
    """The real chest CT beside the repository; else "" (the notebook's default, the shipped
    example) where calcscore ships one; else skip."""
    if REAL_CHEST_CT.is_file():
        return str(REAL_CHEST_CT)
    try:
        from calcscore.datasets.examples import chest_ct  # noqa: F401
    except ImportError:
        pytest.skip(f"real chest CT not found at {REAL_CHEST_CT}, and none ships with calcscore")
    return ""


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 8, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_without_outputs(path):
    assert has_outputs(path) == [], (
        f"{path.name} was saved with outputs: clear them before committing"
    )


def test_a_notebook_with_outputs_is_caught(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    code.execution_count = 1
    saved = tmp_path / "with_outputs.ipynb"
    nbformat.write(nb, saved)
    assert has_outputs(saved) == [next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_structure(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", []), (
        "the first code cell must be tagged 'parameters'"
    )
    assert "calcscore.show_versions()" in code[0].source + code[1].source
    assert nb.metadata.kernelspec.name == "python3"
    long = {
        i: len(c.source.splitlines()) for i, c in enumerate(code) if len(c.source.splitlines()) > 15
    }
    assert not long, f"cells longer than 15 lines belong in the package: {long}"
    tiny = tiny_parameters(path)
    assert set(tiny) <= set(notebook_parameters(path)), (
        "tiny parameters must be notebook parameters"
    )
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown").lower()
    assert "where the numbers come from" in text and "phantom" in text, (
        f"{path.name} must say which numbers come from phantoms and which from real data"
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_at_tiny_parameters(path, tmp_path):
    params = tiny_parameters(path)
    assert params, f"{path.name} has no tiny parameter set (metadata.calcscore.tiny_parameters)"
    if (
        "model_path" in notebook_parameters(path)
        and params.get("model_path") is None
        and not SHIPPED_MODEL.is_file()
    ):
        pytest.skip(f"the shipped model is not installed ({SHIPPED_MODEL})")
    if "real_scan" in notebook_parameters(path):
        params = {**params, "real_scan": _real_chest_ct()}
    t0 = time.perf_counter()
    run = run_notebook(path, tmp_path / "out", parameters=params, cwd=tmp_path)
    seconds = time.perf_counter() - t0
    executed = nbformat.read(run.notebook, as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # every code cell ran, and papermill injected the tiny parameters
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    injected = [c for c in code if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and all(name in injected[0].source for name in params)
    assert run.html is not None and "<html" in run.html.read_text()[:2000].lower()
    # the versions cell printed the environment
    assert any("calcscore" in o.get("text", "") for c in code for o in c.get("outputs", []))
    assert seconds < 300, f"{path.name} took {seconds:.0f} s at its tiny parameters"
