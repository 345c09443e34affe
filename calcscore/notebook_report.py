"""Notebooks as reports, and the few steps the notebooks share.

:func:`run_notebook` executes a notebook with papermill (parameters injected after the cell
tagged ``parameters``) and writes the executed notebook and an HTML export (nbconvert), each
atomically; ``calcscore report`` is its command line. Every notebook in ``notebooks/`` keeps a
tiny parameter set in its metadata (``metadata.calcscore.tiny_parameters``, see
:func:`tiny_parameters`) with which it runs end to end on a CPU in seconds; the tests run every
notebook with it.

The helpers below are the steps that several notebooks repeat (find the repository's shared
data, cache phantoms for training, train CNN1 and CNN2, label a cohort); the notebooks stay thin
and the tests exercise the same code.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from calcscore.errors import CalcscoreError, InputError, optional_import

if TYPE_CHECKING:
    from calcscore.networks import CNN1, CNN2

log = logging.getLogger(__name__)

#: The kernel the notebooks run in (ipykernel's default name).
DEFAULT_KERNEL = "python3"
#: Where a notebook keeps its tiny parameter set.
METADATA_KEY = "calcscore"


# --------------------------------------------------------------------------------- parameters
def parse_value(text: str) -> Any:
    """A command-line parameter value as JSON, else YAML (``4`` -> 4, ``[32, 96, 96]`` -> list,
    ``null`` -> None, ``true`` -> True, ``paper`` -> "paper")."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_parameters(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    """``[("n_scans", "4"), ("preset", "paper")]`` -> ``{"n_scans": 4, "preset": "paper"}``."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        if len(pair) != 2:
            raise CalcscoreError(f"a parameter is NAME VALUE, got {' '.join(pair)!r}")
        name, value = pair
        if not name.isidentifier():
            raise CalcscoreError(f"parameter name {name!r} is not a Python identifier")
        out[name] = parse_value(value)
    return out


def _read_notebook(path: Path):
    nbformat = optional_import("nbformat", "running notebooks", "notebooks")
    if not path.is_file():
        raise InputError(
            path, "no such notebook", "pass a .ipynb file, e.g. notebooks/01_data.ipynb"
        )
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for a broken file
        raise InputError(path, f"is not a readable notebook ({type(exc).__name__})") from None


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The names and default values in a notebook's cell tagged ``parameters``."""
    p = Path(path)
    nb = _read_notebook(p)
    cells = [
        c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])
    ]
    if not cells:
        raise InputError(
            p,
            "has no code cell tagged 'parameters'",
            "tag the first code cell 'parameters' (View > Cell metadata)",
        )
    papermill = optional_import("papermill", "running notebooks", "notebooks")
    found = papermill.inspect_notebook(str(p))
    return {name: v["default"] for name, v in found.items()}


def tiny_parameters(path: str | Path) -> dict[str, Any]:
    """The notebook's tiny parameter set (``metadata.calcscore.tiny_parameters``): seconds on a
    CPU, numbers that mean nothing; ``{}`` when it has none."""
    nb = _read_notebook(Path(path))
    return dict(nb.metadata.get(METADATA_KEY, {}).get("tiny_parameters", {}))


# --------------------------------------------------------------------------------- running
@dataclass(frozen=True)
class NotebookRun:
    """What :func:`run_notebook` wrote."""

    notebook: Path
    html: Path | None
    parameters: dict[str, Any]
    seconds: float


def run_notebook(
    notebook: str | Path,
    out_dir: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    tiny: bool = False,
    kernel_name: str = DEFAULT_KERNEL,
    cwd: str | Path | None = None,
    html: bool = True,
    cell_timeout_s: float | None = None,
) -> NotebookRun:
    """Execute ``notebook`` with papermill and write ``out_dir/<name>.ipynb`` and
    ``out_dir/<name>.html``.

    ``parameters`` override the defaults of the cell tagged ``parameters`` (unknown names are an
    error); ``tiny`` starts from the notebook's tiny parameter set. The notebook runs in ``cwd``
    (default: ``out_dir``, so the files it writes land beside the report). Both outputs are
    written atomically; when a cell fails, the partly executed notebook is kept as
    ``out_dir/<name>.failed.ipynb`` and a :class:`~calcscore.errors.CalcscoreError` names the
    cell's error.

    Args:
        notebook: the .ipynb to run (it is not modified).
        out_dir: the output folder (created).
        parameters: values for names of the ``parameters`` cell.
        tiny: start from the notebook's tiny parameter set (:func:`tiny_parameters`).
        kernel_name: the Jupyter kernel to run in.
        cwd: the notebook's working directory (default: ``out_dir``).
        html: also write the HTML export.
        cell_timeout_s: seconds a cell may run (None: no limit).

    Returns:
        a :class:`NotebookRun`: the executed notebook, the HTML (or None), the parameters used
        and the wall-clock seconds.
    """
    papermill = optional_import("papermill", "running notebooks", "notebooks")
    from calcscore.io import atomic_path

    src = Path(notebook)
    known = notebook_parameters(src)
    params = {**(tiny_parameters(src) if tiny else {}), **dict(parameters or {})}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise CalcscoreError(
            f"{src}: unknown parameter(s) {', '.join(unknown)}; the notebook's "
            f"parameters are {', '.join(known) or 'none'}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(cwd) if cwd is not None else out
    target = out / f"{src.stem}.ipynb"
    t0 = time.perf_counter()
    with atomic_path(target) as tmp:
        executed = tmp / target.name
        try:
            papermill.execute_notebook(
                str(src),
                str(executed),
                parameters=params,
                kernel_name=kernel_name,
                cwd=str(run_dir),
                progress_bar=False,
                log_output=False,
                execution_timeout=cell_timeout_s,
            )
        except papermill.PapermillExecutionError as exc:
            failed = out / f"{src.stem}.failed.ipynb"
            if executed.is_file():
                executed.replace(failed)
            raise CalcscoreError(
                f"{src}: cell {exc.exec_count} failed with {exc.ename}: {' '.join(str(exc.evalue).split())[:300]} "
                f"(the partly executed notebook is {failed})"
            ) from None
        html_path = None
        if html:
            html_path = out / f"{src.stem}.html"
            (tmp / html_path.name).write_text(export_html(executed), encoding="utf-8")
    seconds = time.perf_counter() - t0
    log.info("ran %s in %.1f s -> %s", src, seconds, target)
    return NotebookRun(target, html_path, params, seconds)


def export_html(notebook: str | Path) -> str:
    """The HTML export (nbconvert's ``lab`` template) of an executed notebook."""
    nbconvert = optional_import("nbconvert", "exporting notebooks to HTML", "notebooks")
    nb = _read_notebook(Path(notebook))
    # nbconvert warns about every figure without alt text (matplotlib's never have one)
    quiet = logging.getLogger("traitlets")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        body, _ = nbconvert.HTMLExporter(template_name="lab").from_notebook_node(nb)
    finally:
        quiet.setLevel(level)
    return body


def has_outputs(notebook: str | Path) -> list[int]:
    """Indices of the code cells that hold outputs or an execution count (committed notebooks
    must have none)."""
    nb = _read_notebook(Path(notebook))
    return [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


# ------------------------------------------------------------------- steps the notebooks share
def repo_path(relative: str | Path, *, start: str | Path | None = None) -> Path:
    """``relative`` resolved against the calcscore repository root (the folder with calcscore's
    ``pyproject.toml``), found above ``start`` (the working directory) or above the installed
    package; ``../shared/data/...`` then names the shared data beside the repository."""
    candidates = [Path(start) if start is not None else Path.cwd(), Path(__file__).resolve().parent]
    for base in candidates:
        for folder in [base.resolve(), *base.resolve().parents]:
            pyproject = folder / "pyproject.toml"
            if pyproject.is_file() and 'name = "calcscore"' in pyproject.read_text(
                errors="replace"
            ):
                return (folder / relative).resolve()
    return (Path.cwd() / relative).resolve()


def cache_phantoms(scans: Iterable, folder: str | Path) -> list:
    """Cache phantom scans (:class:`calcscore.phantom.CohortScan`) on the network grid for
    training: one sub-folder per scan (:func:`calcscore.sampling.cache_scan`)."""
    from calcscore.sampling import cache_scan

    folder = Path(folder)
    return [
        cache_scan(
            s.volume,
            s.labels,
            folder / s.scan_id,
            scan_id=s.scan_id,
            participant_id=s.participant_id,
        )
        for s in scans
    ]


def split_cached(
    cached: Sequence, *, val_fraction: float = 0.25, seed: int = 0
) -> tuple[list, list]:
    """(training, validation) cached scans, split by participant
    (:func:`calcscore.training.split_by_participant`).

    Args:
        cached: cached scans (:class:`calcscore.sampling.CachedScan`).
        val_fraction: the fraction of participants that go to validation.
        seed: seed of the draw.

    Returns:
        (training scans, validation scans); all scans of a participant on one side.
    """
    from calcscore.training import split_by_participant

    val = split_by_participant(
        [c.participant_id for c in cached], val_fraction=val_fraction, rng=seed
    )
    return [c for c in cached if c.participant_id not in val], [
        c for c in cached if c.participant_id in val
    ]


def train_networks(
    train_scans: Sequence,
    val_scans: Sequence,
    out_dir: str | Path,
    *,
    preset: str = "workshop",
    cnn1: Mapping[str, Any] | None = None,
    cnn2: Mapping[str, Any] | None = None,
    progress: bool = False,
):
    """Train CNN1 and then, unless ``cnn2`` is None, CNN2 (:func:`calcscore.training.train`).

    ``cnn1`` and ``cnn2`` are changes to ``get_config(preset, ...)`` (e.g.
    ``{"max_iterations": 20}``). Outputs: ``out_dir/cnn1`` and ``out_dir/cnn2`` (model,
    ``metrics.csv``, checkpoint), and copies of ``cnn1.pt`` and ``cnn2.pt`` in ``out_dir``, so
    that ``Model.load(out_dir)`` (or ``model_path = out_dir`` in a notebook) loads the pair.

    Args:
        train_scans: cached training scans (:class:`calcscore.sampling.CachedScan`).
        val_scans: cached validation scans.
        out_dir: the output folder.
        preset: "workshop" or "paper" (:func:`calcscore.training.get_config`).
        cnn1: changes to CNN1's preset settings.
        cnn2: changes to CNN2's preset settings; None trains no CNN2.
        progress: progress bars during training.

    Returns:
        the trained pair as a :class:`calcscore.inference.Model`.
    """
    import shutil

    from calcscore.inference import Model
    from calcscore.training import get_config, load_model, train

    out = Path(out_dir)
    config1 = get_config(preset, "cnn1", **dict(cnn1 or {}))
    r1 = train(config1, train_scans, val_scans, out / "cnn1", progress=progress)
    model1, _ = load_model(r1.model_path, network="cnn1")
    model2 = None
    if cnn2 is not None:
        config2 = get_config(preset, "cnn2", **dict(cnn2))
        r2 = train(
            config2, train_scans, val_scans, out / "cnn2", cnn1=r1.model_path, progress=progress
        )
        model2, _ = load_model(r2.model_path, network="cnn2")
    shutil.copy2(r1.model_path, out / "cnn1.pt")
    if cnn2 is None:
        (out / "cnn2.pt").unlink(missing_ok=True)
    else:
        shutil.copy2(r2.model_path, out / "cnn2.pt")
    info = {"preset": preset, "trained_on": "synthetic phantoms", "n_train_scans": len(train_scans)}
    return Model(cast("CNN1", model1), cast("CNN2 | None", model2), info, str(out))


def label_scans(
    scans: Iterable, model, *, use_cnn2: bool = True, reference: str = "labels"
) -> list:
    """:class:`calcscore.metrics.ScanCase` for every scan: the reference label map against
    ``model``'s labels.

    Args:
        scans: phantom scans (:class:`calcscore.phantom.CohortScan`) with their labels.
        model: a :class:`calcscore.inference.Model`.
        use_cnn2: run CNN2's false-positive reduction (False: CNN1's labels).
        reference: "labels" (the ground truth) or an observer's name, e.g. "observer2".

    Returns:
        one :class:`calcscore.metrics.ScanCase` per scan, with its volume.
    """
    from calcscore.inference import InferenceOptions, segment
    from calcscore.metrics import ScanCase

    opts = InferenceOptions(use_cnn2=use_cnn2)
    cases = []
    for s in scans:
        ref = s.labels if reference == "labels" else s.observers[reference]
        cases.append(ScanCase(s.scan_id, ref, segment(s.volume, model, opts).labels, s.volume))
    return cases


#: The two stages of the method, as :func:`label_scans_by_stage` names them.
STAGES = ("CNN1", "CNN1 + CNN2")


def label_scans_by_stage(scans: Iterable, model, *, reference: str = "labels") -> dict[str, list]:
    """Like :func:`label_scans`, with one segmentation per scan giving both stages (the paper's
    Table II): ``{"CNN1": cases, "CNN1 + CNN2": cases}``. CNN1's labels are mapped back to the
    scan grid as :func:`calcscore.inference.segment` maps the final ones (nearest neighbour,
    kept on voxels >= 130 HU, the rim fill); without a CNN2 both stages are the same.

    Args:
        scans, model, reference: as for :func:`label_scans`.

    Returns:
        ``{stage: [ScanCase, ...]}`` for the stages of :data:`STAGES`.
    """
    from calcscore.inference import segment
    from calcscore.metrics import ScanCase

    out: dict[str, list] = {stage: [] for stage in STAGES}
    for s in scans:
        ref = s.labels if reference == "labels" else s.observers[reference]
        seg = segment(s.volume, model)
        out["CNN1"].append(ScanCase(s.scan_id, ref, seg.cnn1_labels(s.volume), s.volume))
        out["CNN1 + CNN2"].append(ScanCase(s.scan_id, ref, seg.labels, s.volume))
    return out


def f1_table(
    evaluations: Mapping[str, Any],
    *,
    groups: Sequence[str] = ("CAC", "TAC", "AV", "MV"),
    column: str = "f1_mean",
):
    """One row per evaluation, one column per label group: a summary column (mean F1 per scan
    by default); ``nan`` where undefined.

    Args:
        evaluations: name -> :class:`calcscore.metrics.Evaluation`.
        groups: the label groups (columns), in order.
        column: the column of ``Evaluation.summary`` to show, e.g. "f1_pooled".

    Returns:
        a DataFrame indexed by evaluation name.
    """
    import pandas as pd

    rows = {}
    for name, ev in evaluations.items():
        s = ev.summary
        rows[name] = {g: float(s.loc[g, column]) if g in s.index else math.nan for g in groups}
    return pd.DataFrame.from_dict(rows, orient="index")
