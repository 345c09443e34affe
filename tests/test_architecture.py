"""The layers contract of pyproject.toml ([tool.importlinter]): the core modules depend one way,
constants/runtime -> networks -> bundle -> inference -> training -> calibration -> pipeline ->
commands. import-linter checks every import, also those inside functions and indirect ones."""

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _layers() -> list[str]:
    (contract,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    return contract["layers"]


def _modules(layer: str) -> list[str]:
    return [m.strip() for m in layer.replace(":", "|").split("|")]


def _lint(config: Path) -> tuple[int, str]:
    """lint-imports in its own process (in this one it would reconfigure logging and silence the
    loggers other tests read)."""
    exe = Path(sys.executable).parent / "lint-imports"
    exe = str(exe) if exe.exists() else shutil.which("lint-imports")
    if exe is None:
        pytest.fail(
            "import-linter is not installed; it is a dev dependency (pip install -e .[dev])"
        )
    r = subprocess.run(
        [exe, "--no-cache", "--config", str(config)], cwd=ROOT, capture_output=True, text=True
    )
    return r.returncode, r.stdout + r.stderr


def _write(tmp_path: Path, layers: list[str]) -> Path:
    body = ",\n".join(f'    "{layer}"' for layer in layers)
    path = tmp_path / "importlinter.toml"
    path.write_text(
        '[tool.importlinter]\nroot_package = "calcscore"\n\n[[tool.importlinter.contracts]]\n'
        f'name = "layers"\ntype = "layers"\nlayers = [\n{body},\n]\n'
    )
    return path


def test_the_contract_names_the_core_modules_in_order():
    """The contract is the one the architecture asks for, and names modules that exist (a
    misspelt module would make import-linter fail for the wrong reason)."""
    flat = [m for layer in _layers() for m in _modules(layer)]
    core = [
        "calcscore.constants",
        "calcscore.runtime",
        "calcscore.networks",
        "calcscore.bundle",
        "calcscore.inference",
        "calcscore.training",
        "calcscore.calibration",
        "calcscore.batch",
        "calcscore.commands",
        "calcscore.cli",
    ]
    assert set(core) <= set(flat)
    order = [m for m in reversed(flat) if m in core]  # lowest first
    for lower, upper in [
        ("calcscore.networks", "calcscore.bundle"),
        ("calcscore.bundle", "calcscore.inference"),
        ("calcscore.inference", "calcscore.training"),
        ("calcscore.training", "calcscore.calibration"),
        ("calcscore.calibration", "calcscore.batch"),
        ("calcscore.batch", "calcscore.commands"),
    ]:
        assert order.index(lower) < order.index(upper)
    for m in flat:
        assert importlib.util.find_spec(m) is not None, m


def test_the_imports_keep_the_layers_contract():
    code, out = _lint(ROOT / "pyproject.toml")
    assert code == 0, out


def test_the_check_fails_when_the_layers_are_reversed(tmp_path):
    """The same check on the contract turned upside down must fail: the test above can fail."""
    code, out = _lint(_write(tmp_path, _layers()[::-1]))
    assert code != 0
    assert (
        "BROKEN" in out and "calcscore.inference is not allowed to import calcscore.bundle" in out
    )
