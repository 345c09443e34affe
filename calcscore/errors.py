"""Errors that reach the user as one line from the command line."""

from __future__ import annotations

from pathlib import Path


class CalcscoreError(Exception):
    """An error the user can fix: the message names the file, the problem and the fix.

    The command line prints it as one line on stderr and exits non-zero, without a traceback.
    """


class InputError(CalcscoreError, ValueError):
    """Bad input data: unreadable, unsupported or inconsistent."""

    def __init__(self, path: str | Path | None, problem: str, fix: str | None = None):
        self.path = None if path is None else Path(path)
        self.problem = problem
        self.fix = fix
        where = f"{path}: " if path is not None else ""
        msg = f"{where}{problem}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class MissingDependencyError(CalcscoreError, ImportError):
    """An optional dependency needed for one feature is not installed."""


def optional_import(module: str, feature: str, extra: str):
    """Import an optional dependency, naming the feature and the pip extra when it is missing.

    Args:
        module: the module to import, e.g. "highdicom".
        feature: what needs it, for the message, e.g. "DICOM SEG output".
        extra: the pip extra that installs it (``pip install 'calcscore[extra]'``).

    Returns:
        the imported module.

    Raises MissingDependencyError when the import fails.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the package '{module}', which is not installed "
            f"(pip install 'calcscore[{extra}]')"
        ) from exc
