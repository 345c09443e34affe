import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_files() -> list[str]:
    """The tracked Python files (all of them on a clean clone), else the source folders."""
    r = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    files = r.stdout.split() if r.returncode == 0 else []
    return files or ["calcscore", "tests", "benchmarks"]


def test_ruff_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed; it is a dev dependency (pip install -e .[dev])")
    r = subprocess.run([exe, "check", *_python_files()], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean():
    """The tree is formatted by `ruff format` (run it before committing)."""
    ruff = Path(sys.executable).parent / "ruff"
    exe = str(ruff) if ruff.exists() else shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed; it is a dev dependency (pip install -e .[dev])")
    r = subprocess.run(
        [exe, "format", "--check", *_python_files()], cwd=ROOT, capture_output=True, text=True
    )
    assert r.returncode == 0, "run `ruff format .`:\n" + r.stdout + r.stderr


@pytest.mark.slow
def test_mypy_is_clean():
    """calcscore/ type-checks (configuration in pyproject.toml's [tool.mypy])."""
    mypy = Path(sys.executable).parent / "mypy"
    exe = str(mypy) if mypy.exists() else shutil.which("mypy")
    if exe is None:
        pytest.fail("mypy is not installed; it is a dev dependency (pip install -e .[dev])")
    r = subprocess.run([exe, "calcscore"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
