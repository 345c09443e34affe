"""The stages of a model build, in order, each a function of a :class:`Context` that works in
its cache folder and returns what its ``done.json`` records (its ``result``).

======================  =====================================================  ===============
stage                   does                                                   depends on
======================  =====================================================  ===============
``phantoms``            the training cohort cached on the network grid; the    --
                        split by participant into training and validation
``real_negatives``      real scans without calcium annotations cached as       --
                        training negatives (skipped where the recipe has none)
``cnn1``                trains CNN1 (resumes from its checkpoint)              phantoms, real_negatives
``cnn2``                trains CNN2 on CNN1's candidates                       phantoms, real_negatives, cnn1
``thresholds``          CNN2's threshold per label group (or the paper's 0.5)  .., cnn2
``rim``                 the rim fill's noise margin                            .., thresholds
``evaluation``          figures on the held-out test participants              .., rim
``card``                the model folder: networks, model.json, card, recipe   every stage
======================  =====================================================  ===============
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from calcscore.bundle import write_model_info
from calcscore.errors import CalcscoreError
from calcscore.inference import Model
from calcscore.phantom.cohort import participant_id
from calcscore.pipeline import evaluation
from calcscore.pipeline.cohort import THICK, cache_participants, limit_full, val_full_scans
from calcscore.pipeline.hybrids import cache_hybrids, validation_hybrids
from calcscore.pipeline.recipe import (
    Phantoms,
    Recipe,
    participants,
    real_negative_files,
    reuses,
)
from calcscore.pipeline.recipe_hybrid import hearts_file
from calcscore.sampling import cache_scan, load_cached
from calcscore.training import (
    TrainConfig,
    get_config,
    saved_architecture,
    split_by_participant,
    train,
)

log = logging.getLogger(__name__)


class StageStopped(Exception):
    """A stage stopped before it finished (a training time budget spent): not marked done."""


@dataclass
class Context:
    """What the stages share: the recipe, the run's device and precision, the per-stage time
    budgets (minutes), and the folders and ``done.json`` results of the stages so far."""

    recipe: Recipe
    device: str
    precision: str
    minutes: dict[str, float] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    progress: bool = True


def hardware(device: str) -> dict[str, Any]:
    """Where a stage ran (model.json ``hardware``)."""
    return {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------------ phantoms
def scan_size(ph: Phantoms, i: int) -> str:
    """The scan size of training participant ``i``: the first ``whole_chest`` participants are
    whole-chest scans (the first ``thick`` of them with 5 mm slices, :data:`THICK`, the others
    "full"), the next ``gated`` gated heart-only ones, the others ``train_size``. The phantoms
    stage and the rim stage (which generates validation participants again at their own size)
    both ask here."""
    k = i - ph.train[0]
    if k < ph.whole_chest:
        return THICK if k < ph.thick else "full"
    return "gated" if k < ph.whole_chest + ph.gated else ph.train_size


def by_size(ph: Phantoms, numbers: Iterable[int]) -> dict[str, list[int]]:
    """Participants ``numbers`` grouped by :func:`scan_size`, in order."""
    groups: dict[str, list[int]] = {}
    for i in numbers:
        groups.setdefault(scan_size(ph, i), []).append(i)
    return groups


def run_phantoms(ctx: Context, folder: Path) -> dict[str, Any]:
    ph = ctx.recipe.phantoms
    ids = list(participants(ph.train))
    scans = []
    for size, part in by_size(ph, ids).items():
        scans += cache_participants(
            part,
            seed=ph.seed,
            size=size,
            cache=folder / "scans",
            workers=ph.workers,
            anatomy=ph.anatomy,
            insert_fraction=ph.insert_fraction,
        )
    val = split_by_participant(
        [s.participant_id for s in scans], val_fraction=ph.validation_fraction, rng=ph.seed
    )
    return {
        "scans": [s.scan_id for s in scans],
        "validation": sorted(val),
        "ids": f"{participant_id(ids[0])}..{participant_id(ids[-1])}",
        "whole_chest": ph.whole_chest,
        "gated": ph.gated,
        "heart_region": len(ids) - ph.whole_chest - ph.gated,
        "heart_region_size": ph.train_size,
    } | ({"whole_chest_5mm": ph.thick} if ph.thick else {})


def split_scans(ctx: Context) -> tuple[list, list]:
    """The cached training and validation scans of the phantoms stage."""
    res, folder = ctx.results["phantoms"], ctx.folders["phantoms"] / "scans"
    scans = [load_cached(folder / s) for s in res["scans"]]
    val = set(res["validation"])
    return [s for s in scans if s.participant_id not in val], [
        s for s in scans if s.participant_id in val
    ]


def run_real_negatives(ctx: Context, folder: Path) -> dict[str, Any]:
    """Cache the recipe's real negatives (image + label map with IGNORE near the heart) on the
    network grid; their background candidates join the training pools. With ``hybrid``, copies of
    them with synthetic coronary lesions join too (:func:`cache_hybrids`)."""
    from calcscore.io import read_labels, read_volume

    out, n_background, n_lesions = [], 0, 0
    rn = ctx.recipe.real_negatives
    hearts = json.loads(hearts_file(ctx.recipe).read_text()) if rn and rn.hybrid else {}
    for k, name in enumerate(rn.scans if rn is not None else []):
        image, labels = real_negative_files(ctx.recipe, name)
        volume, label_map = read_volume(image), read_labels(labels)
        scan = cache_scan(
            volume,
            label_map,
            folder / "scans" / f"real-{name}",
            scan_id=f"real-{name}",
            participant_id=f"real-{name}",
        )
        if len(scan.calcium_index):
            raise CalcscoreError(
                f"{labels}: a real negative holds calcium labels; it must hold only 0 and "
                "255 (make it with data/real_negatives/make_labels.py)"
            )
        out.append(scan.scan_id)
        n_background += len(scan.background_index)
        if rn is not None and rn.hybrid:
            hybrids = cache_hybrids(
                volume, label_map, hearts[name], rn.hybrid, k, folder / "scans", name
            )
            out += [h for h, _ in hybrids]
            n_lesions += sum(n for _, n in hybrids)
    return {"scans": out, "background_candidates": n_background, "hybrid_lesions": n_lesions}


def real_negative_scans(ctx: Context) -> list:
    """The cached real negatives (none where the stage was skipped)."""
    res = ctx.results.get("real_negatives") or {}
    return [load_cached(ctx.folders["real_negatives"] / "scans" / s) for s in res.get("scans", [])]


def skipped(ctx: Context, stage: str) -> bool:
    """Whether a stage has nothing to do for this recipe (no real negatives): it counts as
    finished without a run or a cache folder."""
    return stage == "real_negatives" and not (
        ctx.recipe.real_negatives and ctx.recipe.real_negatives.scans
    )


# ------------------------------------------------------------------------------------ training
def network_config(ctx: Context, name: str) -> TrainConfig:
    """The TrainConfig of ``name`` ("cnn1" / "cnn2"): the recipe's preset and settings, the
    saved architecture of ``init`` where given, this run's device and precision."""
    net, seed = getattr(ctx.recipe, name), ctx.recipe.phantoms.seed
    changes: dict[str, Any] = {
        "max_iterations": net.iterations,
        "batch_size": net.batch_size,
        "learning_rate": net.learning_rate,
        "select_by": net.select_by,
        "seed": seed,
        "device": ctx.device,
        "precision": ctx.precision,
        "channels_last": True,
        "z_crop": net.z_crop,
        **({"z_crop_mm": tuple(net.z_crop_mm)} if net.z_crop_mm else {}),
        **net.architecture,
    }
    if net.eval_every:
        changes["eval_every"] = changes["checkpoint_every"] = net.eval_every
    if (
        name == "cnn1"
        and "max_dilation" in net.architecture
        and "patch_size" not in net.architecture
    ):
        changes["patch_size"] = (
            4 * net.architecture["max_dilation"] + 3 + 10
        )  # 11 x 11 auxiliary labels
    init = ctx.recipe.resolve(net.init)
    if init is not None:  # the saved network's shape, whatever the preset's
        changes.update(saved_architecture(init, name))
    return get_config(net.preset, name, **changes)


def _train(
    ctx: Context, name: str, folder: Path, train_scans: list, val_scans: list
) -> dict[str, Any]:
    """Train (or resume) one network in the stage's folder.

    Args:
        ctx: the build.
        name: "cnn1" or "cnn2".
        folder: the stage's cache folder (its checkpoint, metrics.csv and network file).
        train_scans: the cached training scans.
        val_scans: the cached validation scans.

    Returns:
        The stage's result: config, iterations trained and kept, starting weights, hardware;
        raises :class:`StageStopped` where the time budget ran out first.
    """
    cfg = network_config(ctx, name)
    init = ctx.recipe.resolve(getattr(ctx.recipe, name).init)
    minutes = ctx.minutes.get(name)
    r = train(
        cfg,
        train_scans,
        val_scans,
        folder,
        cnn1=ctx.folders["cnn1"] if name == "cnn2" else None,
        max_seconds=None if minutes is None else 60.0 * minutes,
        init=init,
        progress=ctx.progress,
    )
    if r.iteration < cfg.max_iterations:
        raise StageStopped(
            f"{name}: stopped by its time budget at iteration {r.iteration:,} of "
            f"{cfg.max_iterations:,} (checkpoint kept: run the build again to go on)"
        )
    kept = int(
        torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=False)["iteration"]
    )
    return {
        "config": cfg.to_dict(),
        "trained_iterations": r.iteration,
        "kept_iteration": kept,
        "initialised_from": None if init is None else str(init),
        "hardware": hardware(ctx.device),
    }


def run_cnn1(ctx: Context, folder: Path) -> dict[str, Any]:
    train_scans, val_scans = split_scans(ctx)
    return _train(ctx, "cnn1", folder, train_scans + real_negative_scans(ctx), val_scans)


def run_cnn2(ctx: Context, folder: Path) -> dict[str, Any]:
    net = ctx.recipe.cnn2
    if reuses(ctx.recipe, "cnn2"):  # iterations = 0: the saved CNN2 of `init`, unchanged
        init = ctx.recipe.resolve(net.init)
        assert init is not None  # reuses() checked it
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(init, folder / "cnn2.pt")
        saved = torch.load(init, map_location="cpu", weights_only=False)
        return {
            "config": {"preset": net.preset, **saved["config"]},
            "trained_iterations": 0,
            "kept_iteration": int(saved.get("iteration", 0)),
            "initialised_from": str(init),
            "hardware": saved["config"].get("hardware") or {"device": "n/a", "gpu": None},
            "reused": True,
        }
    train_scans, val_scans = split_scans(ctx)
    full = (
        None if net.full_scans < 0 else net.full_scans
    )  # CNN1 labels 2-2.5 M candidates per whole chest
    train_scans, val_scans = (
        limit_full(train_scans, full),
        limit_full(val_scans, val_full_scans(full)),
    )
    if net.scans:
        train_scans, val_scans = train_scans[: net.scans], val_scans[: max(2, net.scans // 4)]
    if not net.phantoms_only:
        train_scans = train_scans + real_negative_scans(ctx)
    out = _train(ctx, "cnn2", folder, train_scans, val_scans)
    out.update(
        training_scans=[s.scan_id for s in train_scans],
        validation_scans=[s.scan_id for s in val_scans],
    )
    return out


# ------------------------------------------------------------------------- model and choices
def assemble(ctx: Context, folder: Path, info: dict[str, Any]) -> Path:
    """A bundle folder of the trained networks.

    Args:
        ctx: the build (its cnn1 and cnn2 stages done).
        folder: where to write cnn1.pt, cnn2.pt, their metrics.csv and model.json.
        info: model.json.

    Returns:
        ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("cnn1", "cnn2"):
        shutil.copy(ctx.folders[name] / f"{name}.pt", folder / f"{name}.pt")
        if (ctx.folders[name] / "metrics.csv").is_file():
            shutil.copy(ctx.folders[name] / "metrics.csv", folder / f"{name}_metrics.csv")
    write_model_info(folder, info)
    return folder


def model_so_far(ctx: Context, folder: Path) -> Model:
    """The trained networks with the thresholds and rim margin chosen so far."""
    info: dict[str, Any] = {}
    for stage in ("thresholds", "rim"):
        info.update(
            {
                k: v
                for k, v in ctx.results.get(stage, {}).items()
                if k
                in ("cnn2_thresholds", "rim_fill", "rim_sigmas", "lesion_fill", "lesion_fill_hu")
            }
        )
    return Model.load(assemble(ctx, folder / "model", info), device=ctx.device)


def run_thresholds(ctx: Context, folder: Path) -> dict[str, Any]:
    th = ctx.recipe.thresholds
    if not th.calibrate:
        return {"cnn2_thresholds": dict(th.values), "thresholds_given": True} if th.values else {}
    model = model_so_far(ctx, folder)
    full = ctx.recipe.cnn2.full_scans
    val = limit_full(split_scans(ctx)[1], val_full_scans(None if full < 0 else full))
    return evaluation.calibrate(
        model, val, n_scans=th.scans, device=ctx.device, precision=ctx.precision
    )


def run_rim(ctx: Context, folder: Path) -> dict[str, Any]:
    rim, ph = ctx.recipe.rim, ctx.recipe.phantoms
    if not rim.choose:
        return {}
    model = model_so_far(ctx, folder)
    return evaluation.choose_rim(
        model,
        ctx.results["phantoms"]["validation"],
        n_participants=rim.participants,
        seed=ph.seed,
        groups=lambda numbers: by_size(ph, numbers),
        device=ctx.device,
        workers=ph.workers,
        anatomy=ph.anatomy,
        insert_fraction=ph.insert_fraction,
        lesion_fill=rim.lesion_fill,
        hybrids=validation_hybrids(ctx.recipe, rim.hybrids, rim.heart_only),
    )


def run_evaluation(ctx: Context, folder: Path) -> dict[str, Any]:
    ph, ev = ctx.recipe.phantoms, ctx.recipe.evaluation
    if not ev.enabled:
        return {}
    model = model_so_far(ctx, folder)
    out = {
        "test_metrics": evaluation.evaluate_model(
            model,
            participants(ph.test),
            seed=ph.seed,
            size=ph.test_size,
            device=ctx.device,
            groups=ev.groups,
            workers=ph.workers,
            anatomy=ph.anatomy,
        )
    }
    for key, ids, size in (
        ("test_metrics_whole_chest", ph.whole_chest_test, "full"),
        ("test_metrics_gated", ph.gated_test, "gated"),
    ):
        if ids:
            out[key] = evaluation.evaluate_model(
                model,
                participants(ids),
                seed=ph.seed,
                size=size,
                device=ctx.device,
                groups=ev.groups,
                workers=ph.workers,
                anatomy=ph.anatomy,
            )
    return out


def run_card(ctx: Context, folder: Path) -> dict[str, Any]:
    from calcscore.pipeline.card import model_info, write_card

    info = model_info(ctx)
    model = assemble(ctx, folder / "model", info)
    (model / "recipe.toml").write_text(ctx.recipe.text)
    write_card(model, info)
    return {"model": "model", "keys": sorted(info)}


#: stage -> (function, the stages it depends on), in the order a build runs them.
STAGES: dict[str, tuple[Callable[[Context, Path], dict[str, Any]], tuple[str, ...]]] = {
    "phantoms": (run_phantoms, ()),
    "real_negatives": (run_real_negatives, ()),
    "cnn1": (run_cnn1, ("phantoms", "real_negatives")),
    "cnn2": (run_cnn2, ("phantoms", "real_negatives", "cnn1")),
    "thresholds": (run_thresholds, ("phantoms", "cnn1", "cnn2")),
    "rim": (run_rim, ("phantoms", "cnn1", "cnn2", "thresholds")),
    "evaluation": (run_evaluation, ("phantoms", "cnn1", "cnn2", "thresholds", "rim")),
    "card": (
        run_card,
        ("phantoms", "real_negatives", "cnn1", "cnn2", "thresholds", "rim", "evaluation"),
    ),
}


def summary_line(stage: str, result: dict[str, Any]) -> str:
    """One line of what a stage made, for the log."""
    keep = {
        k: v for k, v in result.items() if isinstance(v, int | float | str | bool) and k != "hash"
    }
    return f"{stage}: " + json.dumps(keep)[:200]
