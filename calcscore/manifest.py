"""Cohort manifests: one CSV row per scan.

Columns: ``scan_id, participant_id, image, labels, kernel, scanner`` and optional more. Path
columns (``image``, ``labels`` and every column whose name starts with ``labels_``, such as the
observers' ``labels_observer2``) are written relative to the manifest's folder and read back as
absolute paths, so a cohort folder can be moved as a whole.
"""

from __future__ import annotations

import io as _io
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.errors import InputError
from calcscore.io import write_text_atomic

REQUIRED_COLUMNS = ("scan_id", "image")
STANDARD_COLUMNS = ("scan_id", "participant_id", "image", "labels", "kernel", "scanner")


def path_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c in ("image", "labels") or str(c).startswith("labels_")]


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV; path columns come back absolute. Raises InputError on bad input."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such manifest file", "check the path")
    try:
        df = pd.read_csv(p, dtype={"scan_id": str, "participant_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(
            p,
            f"is not a readable CSV manifest ({type(exc).__name__})",
            "write it with the columns scan_id,image[,labels,...]",
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            p,
            f"lacks the column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})",
            "a manifest needs at least scan_id and image",
        )
    for col in REQUIRED_COLUMNS:
        blank = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if blank.any():
            rows = ", ".join(str(i + 2) for i in np.flatnonzero(blank.to_numpy())[:5])
            raise InputError(
                p, f"has no {col} on line(s) {rows}", f"fill in the {col} column of every row"
            )
    if df["scan_id"].duplicated().any():
        dup = df.loc[df["scan_id"].duplicated(), "scan_id"].iloc[0]
        raise InputError(p, f"lists scan_id {dup!r} more than once", "make scan ids unique")
    if "participant_id" not in df.columns:
        df["participant_id"] = df["scan_id"]
    root = p.resolve().parent
    for col in path_columns(df):
        df[col] = [
            None if pd.isna(v) or v == "" else str((root / str(v)).resolve()) for v in df[col]
        ]
    return df


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest atomically, with path columns relative to its folder where possible."""
    p = Path(path)
    root = p.resolve().parent
    out = df.copy()
    for col in path_columns(out):
        rel = []
        for v in out[col]:
            if v is None or (isinstance(v, float) and pd.isna(v)):
                rel.append("")
                continue
            q = Path(v)
            q = q if q.is_absolute() else (Path.cwd() / q)
            try:
                rel.append(q.resolve().relative_to(root).as_posix())
            except ValueError:
                rel.append(str(q.resolve()))
        out[col] = rel
    buf = _io.StringIO()
    out.to_csv(buf, index=False)
    write_text_atomic(p, buf.getvalue())
    return p
