"""A model bundle on disk: the folder that ``calcscore score --model DIR`` reads.

A bundle holds

- ``cnn1.pt`` (required) and ``cnn2.pt`` (optional): one network each, saved by
  :func:`save_network` as ``{"config": dict, "state_dict": ..., **extra}``; ``config`` is the
  :class:`calcscore.training.TrainConfig` the network was trained with, as a dict (its
  architecture settings rebuild the network), and ``extra`` what the training adds (the
  ``iteration`` and ``val_loss`` of the kept weights, ``initialised_from``);
- ``model.json`` (optional): what is known about the model, :class:`ModelInfo`; inference reads
  four of its keys (``cnn2_thresholds``, ``rim_sigmas``, ``rim_fill``, ``safety_net``), the rest describes how
  the model was made and measured (``calcscore build-model`` writes it, :mod:`calcscore.pipeline.card`
  turns it into MODEL_CARD.md).

This module sits below inference and training (it imports only :mod:`calcscore.networks`,
:mod:`calcscore.runtime` and the leaf modules), so both read and write bundles through it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, cast

import torch
from torch import nn

from calcscore.errors import InputError
from calcscore.labels import GROUPS, N_CLASSES
from calcscore.networks import CNN1, CNN2, build_network
from calcscore.runtime import unwrap_ddp

log = logging.getLogger(__name__)

#: The shipped model (no real annotated scan trained it, see its MODEL_CARD.md).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "models" / "default"
NETWORKS = ("cnn1", "cnn2")
MODEL_JSON = "model.json"


class ModelInfo(TypedDict, total=False):
    """The keys of ``model.json`` (all optional; a bundle without model.json is valid).

    Read by inference (:meth:`calcscore.inference.Model.load`):

    - ``cnn2_thresholds``: CNN2's decision threshold per label group, ``{"CAC": 0.85, ...}``
      (groups of :data:`calcscore.labels.GROUPS`; groups not named use the paper's 0.5), chosen
      on validation scans (:mod:`calcscore.calibration`);
    - ``rim_sigmas``: the rim fill's noise margin in noise SDs
      (:func:`calcscore.inference.rim_threshold_hu`); absent: 3.0;
    - ``rim_fill``: whether the rim fill runs (default true);
    - ``safety_net``: whether labels outside their anatomical regions are removed
      (:mod:`calcscore.regions`; default true).

    Written by ``calcscore build-model`` (:func:`calcscore.pipeline.card.model_info`) to describe
    the model (read by :func:`calcscore.pipeline.card.card`): ``trained_on``, ``command``, ``seed``,
    ``training_participants``, ``test_participants``, ``cnn1_config`` / ``cnn2_config`` (the
    TrainConfig dicts), ``kept_iterations`` / ``trained_iterations`` (per network),
    ``seconds``, ``hardware``, ``torch``, ``test_metrics`` (per kernel and label group),
    ``cnn2_calibration`` and ``rim_choice`` (the validation tables behind the three keys
    above), ``how_it_was_run``, ``previous_model``, ``notes`` and a few more; the code that
    writes them is their documentation.
    """

    cnn2_thresholds: dict[str, float]
    rim_sigmas: float
    rim_fill: bool
    safety_net: bool
    trained_on: str
    command: str
    seed: int
    cnn1_config: dict[str, Any]
    cnn2_config: dict[str, Any]
    test_metrics: dict[str, Any]
    notes: list[str]


# --------------------------------------------------------------------------------- model.json
def read_model_info(folder: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a bundle folder ({} when it has none)."""
    card = Path(folder) / MODEL_JSON
    return json.loads(card.read_text()) if card.is_file() else {}


def write_model_info(folder: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model.json`` into a bundle folder (indented by one space, as the shipped one)."""
    path = Path(folder) / MODEL_JSON
    path.write_text(json.dumps(info, indent=1))
    return path


def model_identity(folder: str | Path) -> dict[str, str]:
    """The name and version by which outputs name the model of a bundle folder: ``name`` is
    model.json's "name", else ``calcscore-<folder name>`` (``calcscore-default`` for the
    shipped model); ``sha256`` is the hash of its network files and model.json, in that order;
    ``version`` is model.json's "version", else the first 12 digits of ``sha256``;
    ``trained_on`` is model.json's (empty when unknown)."""
    path = Path(folder)
    digest = hashlib.sha256()
    for name in (*(f"{n}.pt" for n in NETWORKS), MODEL_JSON):
        f = path / name
        if f.is_file():
            digest.update(name.encode())
            with f.open("rb") as fh:
                for block in iter(functools.partial(fh.read, 1 << 20), b""):
                    digest.update(block)
    info = read_model_info(path)
    sha = digest.hexdigest()
    return {
        "name": str(info.get("name") or f"calcscore-{path.resolve().name}"),
        "version": str(info.get("version") or sha[:12]),
        "sha256": sha,
        "trained_on": str(info.get("trained_on") or ""),
    }


def threshold_table(
    thresholds: float | dict[str, float] | None, *, default: float = 0.5
) -> torch.Tensor:
    """A (7,) tensor: the CNN2 threshold of each label (background's is unused), from one
    threshold for all labels, one per label group (others: ``default``; model.json's
    ``cnn2_thresholds``), or None (``default``)."""
    if isinstance(thresholds, int | float):
        default, thresholds = thresholds, None
    if not 0.0 <= float(default) <= 1.0:
        raise ValueError(f"a CNN2 threshold must lie in [0, 1], got {default}")
    out = torch.full((N_CLASSES,), float(default))
    for name, t in (thresholds or {}).items():
        if name not in GROUPS:
            raise ValueError(
                f"unknown label group {name!r} in CNN2 thresholds; valid: {', '.join(GROUPS)}"
            )
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"CNN2 threshold of {name} must lie in [0, 1], got {t}")
        for lab in GROUPS[name]:
            out[int(lab)] = float(t)
    return out


# ------------------------------------------------------------------------------ network files
def atomic_write(path: Path, write: Callable[[Any], None], *, binary: bool = True) -> None:
    """``write(file)`` to a temporary file beside ``path``, synced, then renamed over it: a reader
    (or a run killed mid-write) never sees half a file.

    Args:
        path: the file to write; its folder is created when missing.
        write: called once with the open temporary file; writes the whole contents.
        binary: open the temporary file as bytes ("wb"), else as text ("w").
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_network(model: nn.Module, config: dict[str, Any], path: str | Path, **extra: Any) -> Path:
    """Write ``{"config": config, "state_dict": ..., **extra}`` atomically (the weights on the
    CPU, a DistributedDataParallel wrapper taken off).

    Args:
        model: the network (CNN1 or CNN2, DDP-wrapped or not).
        config: its settings as a dict (``TrainConfig`` as a dict, read back by
            :func:`load_network`).
        path: the file to write (``cnn1.pt`` or ``cnn2.pt`` by convention).
        extra: further keys stored beside ``config`` and ``state_dict``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    state = {k: v.detach().cpu() for k, v in unwrap_ddp(model).state_dict().items()}
    atomic_torch_save({"config": config, "state_dict": state, **extra}, Path(path))
    return Path(path)


def read_network_file(
    path: str | Path, *, network: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """The file and the contents of a saved ``cnn1.pt`` / ``cnn2.pt`` (or of the folder holding
    it: ``network``'s file, else the first of cnn1.pt and cnn2.pt there), checked to hold a
    ``config`` and a ``state_dict``."""
    p = Path(path)
    if p.is_dir():
        names = [network] if network else list(NETWORKS)
        found = [p / f"{n}.pt" for n in names if (p / f"{n}.pt").is_file()]
        if not found:
            raise InputError(
                p,
                f"holds no {' or '.join(n + '.pt' for n in names)}",
                "pass the output folder of `calcscore train`",
            )
        p = found[0]
    if not p.is_file():
        raise InputError(p, "no such model file", "pass a cnn1.pt / cnn2.pt or its folder")
    saved = load_model_file(p)
    if not isinstance(saved, dict) or "config" not in saved or "state_dict" not in saved:
        raise InputError(p, "is not a calcscore model (needs 'config' and 'state_dict')")
    return p, saved


def load_model_file(path: Path) -> Any:
    """``torch.load`` a saved network, with one line naming the file when it is truncated or
    corrupt (an interrupted copy or download)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        detail = " ".join(str(exc).split())[:100]
        raise InputError(
            path,
            f"could not be read: a truncated or corrupt model file ({type(exc).__name__}: {detail})",
            "copy the model folder again, or train it again",
        ) from None
    except Exception as exc:  # unpickling errors of a file that is not a model at all
        raise InputError(
            path,
            f"could not be read as a model file ({type(exc).__name__})",
            "pass a cnn1.pt / cnn2.pt written by calcscore",
        ) from None


def load_network(
    path: str | Path, *, network: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from a saved ``cnn1.pt`` / ``cnn2.pt`` (or the folder holding it).

    Args:
        path: the file, or a folder holding it (see :func:`read_network_file`).
        network: "cnn1" or "cnn2": the file to pick in a folder, and the kind the file must
            hold (an :class:`~calcscore.errors.InputError` otherwise); None takes either.
        device: where the weights go.

    Returns:
        (the network in eval mode on ``device``, its saved config dict: the one
        :class:`calcscore.training.TrainConfig` reads, see :func:`calcscore.training.load_model`).
    """
    p, saved = read_network_file(path, network=network)
    config = saved["config"]
    kind = config.get("network", "cnn1")
    if network and kind != network:
        raise InputError(p, f"holds a {kind}, not a {network}")
    model = build_network(kind, config)
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval(), config


def load_bundle(
    folder: str | Path | None = None, *, device: str | torch.device = "cpu"
) -> tuple[CNN1, CNN2 | None, dict[str, Any], Path]:
    """(CNN1, CNN2 or None, model.json, folder) of a bundle folder; the shipped model when
    ``folder`` is None."""
    path = DEFAULT_MODEL_DIR if folder is None else Path(folder)
    if not (path / "cnn1.pt").is_file():
        if folder is None:
            raise InputError(
                path,
                "the shipped model is missing from this installation",
                "reinstall calcscore or pass --model DIR",
            )
        raise InputError(path, "holds no cnn1.pt", "pass a folder written by `calcscore train`")
    cnn1, _ = load_network(path / "cnn1.pt", network="cnn1", device=device)
    cnn2 = None
    if (path / "cnn2.pt").is_file():
        cnn2, _ = load_network(path / "cnn2.pt", network="cnn2", device=device)
    return cast(CNN1, cnn1), cast(CNN2 | None, cnn2), read_model_info(path), path
