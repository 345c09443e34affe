"""The recipe's schema: a TOML table read into a section's dataclass, every key checked.

A missing key, an unknown one or a value of the wrong type is a :class:`RecipeError`, one line
that names the file, the section and key, the problem and the fix.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from pathlib import Path
from typing import Any

from calcscore.errors import CalcscoreError


class RecipeError(CalcscoreError):
    """A recipe that cannot be built: ``FILE: [section] key: problem (fix)``."""

    def __init__(self, path: str | Path, where: str, problem: str, fix: str = ""):
        super().__init__(f"{path}: {where}: {problem}" + (f" ({fix})" if fix else ""))


def _type_ok(value: Any, annotation: str) -> bool:
    base: dict[str, type | tuple[type, ...]] = {
        "int": int,
        "float": (int, float),
        "str": str,
        "bool": bool,
    }
    if annotation.startswith("list["):
        inner = base[annotation[5:-1]]
        return isinstance(value, list) and all(
            isinstance(v, inner) and not isinstance(v, bool) for v in value
        )
    if annotation.startswith("dict"):
        return isinstance(value, dict)
    if annotation == "bool":
        return isinstance(value, bool)
    return isinstance(value, base[annotation]) and not isinstance(value, bool)


def read_section(path: Path, name: str, cls: type, table: Any) -> Any:
    """Section ``name`` of a recipe as dataclass ``cls``, every key checked for presence, name and
    type.

    Args:
        path: the recipe file (named in errors).
        name: the section's name.
        cls: the section's dataclass.
        table: the section as TOML read it.

    Returns:
        An instance of ``cls``; raises :class:`RecipeError` where a key is missing, unknown or of
        the wrong type.
    """
    if not isinstance(table, dict):
        raise RecipeError(path, f"[{name}]", "is not a table", f"write it as a [{name}] section")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise RecipeError(
                path, f"[{name}] {key}", "unknown key", f"valid keys: {', '.join(known)}"
            )
    values = {}
    for f in known.values():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.name not in table:
            if required:
                raise RecipeError(
                    path,
                    f"[{name}] {f.name}",
                    "missing key",
                    f"add `{f.name} = ...` ({f.type}) to [{name}]",
                )
            continue
        value = table[f.name]
        if not _type_ok(value, str(f.type)):
            raise RecipeError(
                path,
                f"[{name}] {f.name}",
                f"must be {f.type}, got {type(value).__name__} {value!r}",
                f"write e.g. `{f.name} = {_example(str(f.type))}`",
            )
        values[f.name] = float(value) if f.type == "float" else value
    return cls(**values)


def _example(annotation: str) -> str:
    return {
        "int": "1",
        "float": "0.5",
        "str": '"text"',
        "bool": "true",
        "list[int]": "[0, 9]",
        "list[str]": '["a", "b"]',
    }.get(annotation, "{}")


def check_range(path: Path, where: str, r: list[int], *, empty_ok: bool = False) -> None:
    """Refuse a participant range that is not ``[first, last]`` with 0 <= first <= last.

    Args:
        path: the recipe file (named in the error).
        where: the section and key, e.g. "[phantoms] train".
        r: the range as read.
        empty_ok: whether [] (no participants) is allowed.

    Returns:
        None; raises :class:`RecipeError` for a bad range.
    """
    if empty_ok and not r:
        return
    if len(r) != 2 or not 0 <= r[0] <= r[1]:
        raise RecipeError(
            path, where, f"must be [first, last] participant numbers, got {r}", "e.g. [0, 119]"
        )


def participants(r: list[int]) -> range:
    """The participant numbers of a ``[first, last]`` range (empty for [])."""
    return range(r[0], r[1] + 1) if r else range(0)
