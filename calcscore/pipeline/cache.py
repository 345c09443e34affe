"""The build cache: one folder per stage and input hash, finished when it holds ``done.json``.

A stage's hash is the SHA-256 of its recipe section, the hashes of the stages it depends on and
the phantom generator version (:data:`calcscore.phantom.GENERATOR_VERSION`), and for the card
the source of :mod:`calcscore.pipeline.card`, which writes it; its folder is
``CACHE/<stage>-<first 12 hex digits>/``. A stage works in its folder (a training stage keeps
its checkpoint there, so a stopped build resumes it) and, when it is finished, writes
``done.json`` (``{"stage", "hash", "result", "seconds", ...}``) atomically: a folder without it
is unfinished, whatever else it holds. A changed setting changes the stage's hash and so those of
the stages after it: they get new folders and run again; the old folders stay until deleted.
The hashes do not see the code a stage runs (but the card's writer): after a change to
inference, the safety net or the fills, :func:`set_aside` a stage's ``done.json``
(``build-model --rerun STAGE``) and it runs again in its folder.

The cache is plain files: copy the folder to another machine (``rsync -a CACHE/ other:CACHE/``),
run one stage there (``calcscore build-model RECIPE --out DIR --cache CACHE --only cnn2``) and
copy it back; the stages after it find it done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from calcscore.bundle import atomic_write

log = logging.getLogger(__name__)

DONE = "done.json"


def stage_hash(section: dict[str, Any], depends: dict[str, str], generator: str) -> str:
    """The hash of a stage's inputs.

    Args:
        section: the stage's recipe section (:meth:`Recipe.section`).
        depends: the hashes of the stages it depends on, by name.
        generator: the phantom generator version.

    Returns:
        64 hex digits.
    """
    blob = json.dumps(
        {"section": section, "depends": depends, "generator": generator}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def stage_dir(cache: Path, stage: str, digest: str) -> Path:
    """The folder of a stage (created).

    Args:
        cache: the build's cache folder.
        stage: the stage's name.
        digest: its input hash (:func:`stage_hash`).

    Returns:
        ``CACHE/<stage>-<hash[:12]>``.
    """
    folder = Path(cache) / f"{stage}-{digest[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json_atomic(path: Path, data: Any) -> None:
    """JSON to a temporary file beside ``path``, synced, then renamed over it."""
    atomic_write(path, lambda f: json.dump(data, f, indent=1), binary=False)


def read_done(folder: Path, digest: str) -> dict[str, Any] | None:
    """The ``done.json`` of a finished stage with this hash, else None."""
    path = folder / DONE
    if not path.is_file():
        return None
    done = json.loads(path.read_text())
    return done if done.get("hash") == digest else None


def mark_done(folder: Path, done: dict[str, Any]) -> None:
    """Record a stage as finished (atomically: a build killed meanwhile leaves it unfinished)."""
    write_json_atomic(folder / DONE, done)
    log.info("%s: done (%s)", done["stage"], folder)


def set_aside(folder: Path) -> Path | None:
    """Rename a finished stage's ``done.json`` to ``done-<UTC time>.json`` (kept, no longer read),
    so that the stage runs again in its folder.

    Args:
        folder: the stage's folder.

    Returns:
        the new name of the record, or None where the stage was not finished.
    """
    path = folder / DONE
    if not path.is_file():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = folder / f"done-{stamp}.json"
    n = 1
    while kept.exists():  # two in one second: keep both
        kept, n = folder / f"done-{stamp}-{n}.json", n + 1
    path.rename(kept)
    log.info("%s: its record set aside as %s, to run again", folder.name, kept.name)
    return kept
