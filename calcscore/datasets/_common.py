"""What the importers share: the per-scan loop, the error table and the manifest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from calcscore.errors import InputError
from calcscore.io import atomic_path, write_labels, write_volume
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)

FORMATS = ("nii.gz", "mha")
ERRORS_FILE = "import_errors.csv"
MANIFEST_FILE = "manifest.csv"


@dataclass
class ImportResult:
    """What an import wrote: the manifest (None when no scan was imported), the scans imported,
    the scans that failed (``scan_id, path, problem``) and any other tables written."""

    out_dir: Path
    manifest: Path | None
    scan_ids: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    errors_file: Path | None = None
    tables: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"imported {len(self.scan_ids)} scan(s)"]
        if self.manifest is not None:
            parts.append(f"manifest {self.manifest}")
        parts += [f"{name} {path}" for name, path in self.tables.items()]
        if self.errors:
            parts.append(f"{len(self.errors)} failed (see {self.errors_file})")
        return "; ".join(parts)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"`fmt` must be one of {', '.join(FORMATS)}, got {fmt=}")
    return fmt


def prepare_out(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder", "choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_scan(out: Path, scan_id: str, volume: CTVolume, labels: LabelVolume, fmt: str) -> dict:
    """Write one scan's image and label map.

    Args:
        out: the import's output folder (``images/`` and ``labels/`` go under it).
        scan_id: the file name stem of both files.
        volume: the scan.
        labels: its label map.
        fmt: the file format, one of :data:`FORMATS` (``"nii.gz"`` or ``"mha"``).

    Returns:
        The manifest's path columns: ``{"image": path, "labels": path}``.
    """
    image = write_volume(volume, out / "images" / f"{scan_id}.{fmt}")
    label_path = write_labels(labels, out / "labels" / f"{scan_id}.{fmt}")
    return {"image": image, "labels": label_path}


def run_scans(
    items: Iterable[tuple[str, Path, Callable[[], dict]]], result: ImportResult, *, keep_going: bool
) -> list[dict]:
    """Call each ``(scan_id, path, make_row)``; an InputError fails that scan only (with
    ``keep_going``) and is recorded in ``result.errors``.

    Args:
        items: ``(scan_id, path, make_row)`` per scan: ``path`` names the input in the error
            table, ``make_row()`` imports the scan and returns its manifest row.
        result: the import's result; the scans imported and the errors are added to it.
        keep_going: record an InputError and go on with the next scan; False raises it.

    Returns:
        The manifest rows of the scans imported, in order.
    """
    rows = []
    for scan_id, path, make_row in items:
        try:
            rows.append(make_row())
            result.scan_ids.append(scan_id)
        except InputError as exc:
            if not keep_going:
                raise
            log.error("%s: %s", scan_id, exc)
            result.errors.append(
                {"scan_id": scan_id, "path": str(exc.path or path), "problem": str(exc)}
            )
    return rows


def finish(out: Path, rows: list[dict], result: ImportResult) -> ImportResult:
    """Write the manifest (when a scan was imported) and the error table (when a scan failed).

    Args:
        out: the import's output folder.
        rows: the manifest rows (:func:`run_scans`).
        result: the import's result, completed here with the paths written.

    Returns:
        ``result``.
    """
    from calcscore.manifest import write_manifest

    if rows:
        result.manifest = write_manifest(pd.DataFrame(rows), out / MANIFEST_FILE)
    errors_path = out / ERRORS_FILE
    if result.errors:
        with atomic_path(errors_path) as tmp:
            pd.DataFrame(result.errors, columns=["scan_id", "path", "problem"]).to_csv(
                tmp / errors_path.name, index=False
            )
        result.errors_file = errors_path
    elif errors_path.exists():
        errors_path.unlink()  # from an earlier import of the same folder, now fixed
    return result
