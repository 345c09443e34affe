"""`calcscore build-model RECIPE --out DIR`: build a model from a recipe, stage by stage.

The recipe (TOML; the shipped model's is calcscore/models/default/recipe.toml) names every
stage and its settings: phantoms, real_negatives, cnn1, cnn2, thresholds, rim, evaluation, card.
Each stage is cached in --cache (default DIR/.cache) by the hash of its recipe section and of the
stages before it: run the same command again after an interruption and it goes on where it
stopped (a training stage from its checkpoint); change a setting and that stage and those after
it run again (the card also when the code that writes it changed; after a change to inference,
the safety net or the fills, --rerun rim runs that stage and those after it again). DIR
receives cnn1.pt, cnn2.pt, model.json, MODEL_CARD.md, recipe.toml and stages.json (which stages
ran, which were cached).

Stages on two machines: run the GPU stages on one (--only cnn1, then --only cnn2, or the whole
build with --stage-minutes cnn2=9 to stop in time), copy the cache folder to the other
(rsync -a CACHE/ other:CACHE/) and run the build there with the same recipe and --cache.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-model",
        help="build a model (networks, model.json, model card) from a recipe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", metavar="RECIPE", help="the recipe, a TOML file")
    p.add_argument("--out", required=True, metavar="DIR", help="the model folder to write")
    p.add_argument("--cache", metavar="DIR", help="the stages' folder (default: OUT/.cache)")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto (default): a GPU where there is one",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="auto (default): bf16 where the device runs it natively, else fp32",
    )
    p.add_argument(
        "--stage-minutes",
        nargs="+",
        default=[],
        metavar="STAGE=MIN",
        help="time budget of a training stage (cnn1, cnn2): it stops resumable when spent",
    )
    p.add_argument(
        "--only", metavar="STAGE", help="run this stage only (those it needs must be cached)"
    )
    p.add_argument(
        "--rerun",
        metavar="STAGE",
        help="run this stage (thresholds, rim, evaluation or card) and those after it again, "
        "though cached (after a code change; the old record is kept)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_minutes(items: list[str]) -> dict[str, float]:
    """``["cnn1=30", "cnn2=9.5"]`` -> ``{"cnn1": 30.0, "cnn2": 9.5}``."""
    from calcscore.errors import CalcscoreError

    out = {}
    for item in items:
        stage, _, value = item.partition("=")
        try:
            minutes = float(value)
        except ValueError:
            minutes = -1.0
        if stage not in ("cnn1", "cnn2") or not minutes > 0:
            raise CalcscoreError(
                f"--stage-minutes {item}: expected cnn1=MIN or cnn2=MIN with MIN > 0"
            )
        out[stage] = minutes
    return out


def run(args: argparse.Namespace) -> int:
    import logging

    from calcscore.errors import CalcscoreError
    from calcscore.pipeline import build, load_recipe

    logging.getLogger("calcscore").setLevel(logging.INFO)  # stage progress, also without --verbose
    if args.threads is not None:
        if args.threads < 1:
            raise CalcscoreError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe)
    result = build(
        recipe,
        args.out,
        cache=args.cache,
        device=args.device,
        precision=args.precision,
        minutes=parse_minutes(args.stage_minutes),
        only=args.only,
        rerun=args.rerun,
        progress=not args.no_progress,
    )
    for stage, status in result.status.items():
        sec = result.seconds.get(stage)
        print(
            f"{stage:15s} {status}"
            + (f" ({sec:.1f} s)" if status == "ran" and sec is not None else "")
        )
    if result.stopped:
        print(f"stopped: {result.stopped}")
        return 3
    print(f"model: {args.out}" if result.complete else "model not written yet (stages left to run)")
    return 0
