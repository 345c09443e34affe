import subprocess
import sys
from pathlib import Path

import calcscore
from calcscore.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "calcscore.cli", *args], capture_output=True, text=True
    )


def test_help_lists_commands():
    r = run_cli("--help")
    assert r.returncode == 0 and "info" in r.stdout and "calcscore" in r.stdout


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"calcscore {calcscore.__version__}"


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "calcscore"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    import calcscore.io as cio

    def boom(*a, **k):
        raise RuntimeError("disk\non fire")

    monkeypatch.setattr(cio, "read_volume", boom)
    assert main(["info", "whatever"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: disk on fire" in err[0] and "--debug" in err[0]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    start = readme.index("<!-- test-command -->")
    block = readme[start:].split("```")[1].strip().splitlines()
    command = [ln for ln in block if ln and not ln.startswith("bash")][0].strip()
    assert command in ci
