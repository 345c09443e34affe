"""Run a recipe's stages in order, each skipped where the cache holds it finished."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calcscore.errors import CalcscoreError
from calcscore.phantom import GENERATOR_VERSION
from calcscore.pipeline import card as card_writer
from calcscore.pipeline.cache import (
    mark_done,
    read_done,
    set_aside,
    stage_dir,
    stage_hash,
    write_json_atomic,
)
from calcscore.pipeline.recipe import Recipe
from calcscore.pipeline.stages import STAGES, Context, StageStopped, skipped, summary_line
from calcscore.runtime import bf16_supported, resolve_device

log = logging.getLogger(__name__)

#: the stages ``--rerun`` may name: those after training, which run the trained networks
RERUNNABLE = ("thresholds", "rim", "evaluation", "card")

#: The file in OUT that says, per stage, whether this run ran it or found it cached, and how long it took.
STAGES_JSON = "stages.json"
MODEL_FILES = (
    "cnn1.pt",
    "cnn2.pt",
    "cnn1_metrics.csv",
    "cnn2_metrics.csv",
    "model.json",
    "MODEL_CARD.md",
    "recipe.toml",
)


@dataclass
class BuildResult:
    """What a build did: per stage "ran", "cached", "skipped" (nothing to do) or "not run", the seconds of those it ran,
    and whether the model folder was written (the card stage finished)."""

    status: dict[str, str]
    seconds: dict[str, float]
    complete: bool
    stopped: str | None = None


def resolve_run(device: str, precision: str) -> tuple[str, str]:
    """("cpu" / "cuda" / "cuda:N", "fp32" / "bf16") from the command line's auto values."""
    dev = str(resolve_device(device))
    if precision == "auto":
        precision = "bf16" if bf16_supported(dev) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise CalcscoreError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    return dev, precision


def _hash(ctx: Context, stage: str) -> str:
    depends = {d: ctx.hashes[d] for d in STAGES[stage][1]}
    section = ctx.recipe.section(stage)
    if stage == "card":  # the card is text written by code: new wording, new card
        section["writer"] = hashlib.sha256(Path(card_writer.__file__).read_bytes()).hexdigest()
    return stage_hash(section, depends, GENERATOR_VERSION)


def _run_stage(ctx: Context, stage: str, cache: Path, fresh: bool = False) -> tuple[str, float]:
    """Run one stage unless its folder is done (``fresh``: its record set aside first, so it
    runs); record it in ``ctx``. Returns (status, seconds)."""
    digest = ctx.hashes[stage] = _hash(ctx, stage)
    if skipped(ctx, stage):
        log.info("%s: nothing to do for this recipe, skipped", stage)
        ctx.results[stage], ctx.seconds[stage] = {"skipped": True}, 0.0
        return "skipped", 0.0
    folder = ctx.folders[stage] = stage_dir(cache, stage, digest)
    if fresh:
        set_aside(folder)
    done = read_done(folder, digest)
    if done is not None:
        log.info("%s: cached in %s, skipped", stage, folder.name)
        ctx.results[stage], ctx.seconds[stage] = done["result"], done["seconds"]
        return "cached", 0.0
    missing = [d for d in STAGES[stage][1] if d not in ctx.results]
    if missing:
        raise CalcscoreError(
            f"stage {stage} needs {', '.join(missing)} finished first: run the build without "
            f"--only, or copy the cache folder of a build that ran them into {cache}"
        )
    log.info("%s: running in %s", stage, folder)
    t = time.perf_counter()
    result = STAGES[stage][0](ctx, folder)
    seconds = time.perf_counter() - t
    mark_done(
        folder,
        {
            "stage": stage,
            "hash": digest,
            "result": result,
            "seconds": seconds,
            "device": ctx.device,
            "precision": ctx.precision,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    ctx.results[stage], ctx.seconds[stage] = result, seconds
    log.info(summary_line(stage, result))
    return "ran", seconds


def _look_up(ctx: Context, stage: str, cache: Path) -> None:
    """Record a stage that this run does not run (``--only`` another): its hash, and its result
    where the cache holds it finished."""
    digest = ctx.hashes[stage] = _hash(ctx, stage)
    if skipped(ctx, stage):
        ctx.results[stage], ctx.seconds[stage] = {"skipped": True}, 0.0
        return
    folder = ctx.folders[stage] = Path(cache) / f"{stage}-{digest[:12]}"
    done = read_done(folder, digest) if folder.is_dir() else None
    if done is not None:
        ctx.results[stage], ctx.seconds[stage] = done["result"], done["seconds"]


def build(
    recipe: Recipe,
    out: str | Path,
    *,
    cache: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    minutes: dict[str, float] | None = None,
    only: str | None = None,
    rerun: str | None = None,
    progress: bool = True,
) -> BuildResult:
    """Build the model a recipe describes into ``out``.

    Args:
        recipe: a loaded recipe (:func:`calcscore.pipeline.load_recipe`).
        out: the model folder to write (cnn1.pt, cnn2.pt, model.json, MODEL_CARD.md, recipe.toml)
            and ``stages.json`` (what this run did).
        cache: the stages' folder (default ``out/.cache``).
        device: "auto", "cpu", "cuda" or "cuda:N".
        precision: "auto", "fp32" or "bf16" (for training and calibration).
        minutes: time budgets of training stages, e.g. ``{"cnn2": 30}``: a stage that spends it
            stops resumable and the build stops after it.
        only: run this stage only (the stages it needs must be in the cache).
        rerun: run this stage and those after it again even where the cache holds them done
            (their hashes do not see code: after a change to inference, the safety net or the
            fills); one of :data:`RERUNNABLE`.
        progress: progress bars during training.

    Returns:
        A :class:`BuildResult`.
    """
    out = Path(out)
    cache = Path(cache) if cache else out / ".cache"
    if only is not None and only not in STAGES:
        raise CalcscoreError(f"--only {only}: no such stage; stages: {', '.join(STAGES)}")
    if rerun is not None and rerun not in RERUNNABLE:
        raise CalcscoreError(
            f"--rerun {rerun}: only a stage that runs the trained networks runs again "
            f"({', '.join(RERUNNABLE)}); to train again, give the build a new --cache"
        )
    order = list(STAGES)
    fresh = set(order[order.index(rerun) :]) if rerun is not None else set()
    dev, prec = resolve_run(device, precision)
    ctx = Context(
        recipe=recipe, device=dev, precision=prec, minutes=dict(minutes or {}), progress=progress
    )
    result = BuildResult(status={}, seconds={}, complete=False)
    for stage in STAGES:
        if only is not None and stage != only:
            _look_up(ctx, stage, cache)
            result.status[stage] = "not run"
            continue
        try:
            result.status[stage], result.seconds[stage] = _run_stage(
                ctx, stage, cache, stage in fresh
            )
        except StageStopped as exc:
            result.status[stage], result.stopped = "stopped", str(exc)
            log.warning("%s", exc)
            break
    out.mkdir(parents=True, exist_ok=True)
    if "card" in ctx.results and result.status.get("card") in ("ran", "cached"):
        _copy_model(ctx.folders["card"] / "model", out)
        result.complete = True
    write_json_atomic(
        out / STAGES_JSON,
        {
            "status": result.status,
            "seconds": result.seconds,
            "hashes": ctx.hashes,
            "cache": str(cache),
            "stopped": result.stopped,
        },
    )
    return result


def _copy_model(src: Path, out: Path) -> None:
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, out / name)
    log.info("model written to %s", out)


def stage_hashes(recipe: Recipe) -> dict[str, str]:
    """The input hash of every stage of ``recipe`` (what names its cache folder)."""
    ctx = Context(recipe=recipe, device="cpu", precision="fp32")
    for stage in STAGES:
        ctx.hashes[stage] = _hash(ctx, stage)
    return ctx.hashes


def stage_results(recipe: Recipe, cache: str | Path) -> dict[str, dict[str, Any]]:
    """The results of the stages of ``recipe`` that ``cache`` holds finished (for inspection)."""
    ctx = Context(recipe=recipe, device="cpu", precision="fp32")
    for stage in STAGES:
        _look_up(ctx, stage, Path(cache))
    return ctx.results
