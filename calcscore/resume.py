"""Resuming a cohort: one provenance file per scan says that its outputs are complete and how
they were made (``calcscore score`` skips such a scan unless ``--overwrite``).

A scan's outputs are written into a hidden staging folder beside them
(``.<scan>.partial-XXXXXX``, :func:`staging`); when all are written, :func:`commit` moves them
into place and writes ``<scan>_provenance.json`` last, atomically
(:func:`calcscore.bundle.atomic_write`). So its presence means the scan is complete, and a run
killed half way leaves only a staging folder, which the next run of that scan removes. The file
records

- ``key``: what the outputs depend on; a scan is skipped only when the key of this run is
  equal: the provenance format, the calcscore version, the model (the hash of its network files
  and model.json, :func:`calcscore.bundle.model_identity`), the input (its file names, sizes
  and modification times, :func:`input_fingerprint`; also of the manifest's reference label
  map) and the settings that change the outputs (the Agatston convention, CNN2 threshold, rim
  fill, safety net, precision, overlay, report page, DICOM);
- ``outputs``: every output file with its size and SHA-256, checked before a skip (an output
  deleted or changed since gets the scan scored again);
- ``model`` (name, version), ``input`` (path), ``device``, ``checks`` (the kernel class and the
  checks' warnings), ``seconds`` and ``written`` (UTC): what the cohort summary and a reader
  need, not part of the key.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calcscore import __version__
from calcscore.bundle import atomic_write

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = "_provenance.json"


def provenance_path(out_dir: str | Path, scan_id: str) -> Path:
    return Path(out_dir) / f"{scan_id}{SUFFIX}"


def input_fingerprint(image: str | Path) -> str:
    """SHA-256 of the names (relative to ``image``), sizes and modification times of the input's
    files (an image file, or every file of a DICOM folder): cheap, and changed by any rewrite."""
    p = Path(image)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        rel = f.relative_to(p).as_posix() if p.is_dir() else f.name
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def run_key(
    *,
    model_sha256: str,
    image: str | Path,
    settings: dict[str, Any],
    reference: str | Path | None = None,
) -> dict[str, Any]:
    """What a scan's outputs depend on (see the module's doc), JSON-normalised.

    Args:
        model_sha256: the model's hash (:func:`calcscore.bundle.model_identity`).
        image: the scan's image file or DICOM folder.
        settings: the settings that change the outputs, by name.
        reference: the manifest's reference label map of the scan (its scores go into the
            scan's outputs), None when it has none.

    Returns:
        the key, as it reads back from JSON.
    """
    key = {
        "format": FORMAT,
        "calcscore": __version__,
        "model_sha256": model_sha256,
        "input_sha256": input_fingerprint(image),
        "reference_sha256": None if reference is None else input_fingerprint(reference),
        "settings": settings,
    }
    return json.loads(json.dumps(key))


def file_record(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def read_provenance(out_dir: str | Path, scan_id: str) -> dict[str, Any] | None:
    """The scan's provenance record, None when it has none (or an unreadable one)."""
    path = provenance_path(out_dir, scan_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def why_not_complete(out_dir: str | Path, scan_id: str, key: dict[str, Any]) -> str | None:
    """Whether a scan can be skipped: its outputs are complete and were made with ``key``.

    Args:
        out_dir: the output folder.
        scan_id: the scan.
        key: this run's :func:`run_key` of the scan.

    Returns:
        None when the scan can be skipped; else why not, for the log ("not scored yet", "made
        with another overlay", "<scan>_lesions.csv is missing", ...).
    """
    record = read_provenance(out_dir, scan_id)
    if record is None:
        return "not scored yet"
    old = record.get("key", {})
    if old != key:
        changed = sorted(k for k in set(key) | set(old) if key.get(k) != old.get(k))
        if "settings" in changed:
            new_s, old_s = key["settings"], old.get("settings", {})
            changed.remove("settings")
            changed += sorted(k for k in set(new_s) | set(old_s) if new_s.get(k) != old_s.get(k))
        return f"made with another {', '.join(changed)}"
    for name, rec in record.get("outputs", {}).items():
        f = Path(out_dir) / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != rec.get("bytes") or file_record(f) != rec:
            return f"{name} changed since"
    return None


def remove_partials(out_dir: Path, scan_id: str) -> None:
    """Remove the staging folders of ``scan_id`` in ``out_dir`` (left by a run or a worker
    process that stopped while scoring it)."""
    for old in out_dir.glob(f".{glob.escape(scan_id)}.partial-*"):
        log.info("%s: removing %s, left by a run that stopped half way", scan_id, old.name)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staging(out_dir: str | Path, scan_id: str) -> Iterator[Path]:
    """A hidden folder in ``out_dir`` to write the scan's outputs into (under their final
    names), removed at the end; the staging folders of earlier runs killed while scoring this
    scan are removed first. Under torchrun a scan belongs to one rank, so no other process
    touches its staging folders."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out, scan_id)
    tmp = Path(tempfile.mkdtemp(prefix=f".{scan_id}.partial-", dir=out))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def commit(staged: Path, out_dir: str | Path, scan_id: str, record: dict[str, Any]) -> Path:
    """Move the files of ``staged`` into ``out_dir`` and write the scan's provenance last.

    The old provenance goes first, so a run killed between the moves leaves a scan that the
    next run scores again; outputs of the old record that this one did not write (e.g. an
    overlay before ``--no-overlay``) are removed.

    Args:
        staged: the staging folder (:func:`staging`) holding the scan's outputs.
        out_dir: the output folder.
        scan_id: the scan.
        record: what the provenance holds besides ``outputs`` and ``written`` (``key``,
            ``model``, ``input``, ``checks``, ``seconds``, ...).

    Returns:
        the path of ``<scan>_provenance.json``.
    """
    out = Path(out_dir)
    path = provenance_path(out, scan_id)
    old = read_provenance(out, scan_id) or {}
    path.unlink(missing_ok=True)
    files = sorted(f for f in staged.iterdir() if f.is_file())
    outputs = {f.name: file_record(f) for f in files}
    for f in files:
        os.replace(f, out / f.name)
    for name in old.get("outputs", {}):
        if name not in outputs and name != path.name and Path(name).name == name:
            (out / name).unlink(missing_ok=True)
    full = {
        **record,
        "outputs": outputs,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write(path, lambda f: f.write(json.dumps(full, indent=1)), binary=False)
    os.chmod(path, 0o666 & ~_umask())  # mkstemp makes it private; readable as the outputs are
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
