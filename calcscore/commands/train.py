"""`calcscore train cnn1|cnn2 --data MANIFEST --out DIR`: train a network of the method.

CNN1 first, then CNN2 on the voxels that CNN1 calls calcium (``--cnn1`` names CNN1's folder).
Run it again with the same ``--out`` to resume after an interruption. For several GPUs or nodes:
``torchrun --nproc_per_node N -m calcscore.cli train ...``.
"""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train CNN1 or CNN2 on a manifest of annotated scans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("network", choices=("cnn1", "cnn2"), help="which network to train")
    p.add_argument(
        "--data",
        required=True,
        metavar="MANIFEST",
        help="manifest CSV (scan_id, participant_id, image, labels[, split])",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: cnn1.pt / cnn2.pt, metrics.csv, checkpoint.pt",
    )
    p.add_argument(
        "--config",
        choices=("paper", "workshop"),
        default="paper",
        help="paper: the published settings; workshop: ~50x cheaper, for a CPU (default: paper)",
    )
    p.add_argument("--max-iterations", type=int, metavar="N", help="stop after N iterations in all")
    p.add_argument(
        "--max-minutes",
        type=float,
        metavar="M",
        help="time budget: validate, checkpoint and stop after M minutes of training "
        "(run again with the same --out to go on)",
    )
    p.add_argument("--cnn1", metavar="DIR", help="folder of the trained CNN1 (needed for cnn2)")
    p.add_argument(
        "--init",
        metavar="PT",
        help="start from this saved network (e.g. the shipped calcscore/models/default/cnn2.pt) "
        "instead of random weights: fine-tuning; its architecture replaces the preset's, "
        "--config sets the rest (learning rate, batch size, ...)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="folder for scans preprocessed to the network grid (default: OUT/cache, or "
        "the CNN1 folder's cache when training cnn2)",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on recent GPUs)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--batch-size", type=int, metavar="N", help="patches per process and iteration")
    p.add_argument(
        "--learning-rate",
        type=float,
        metavar="LR",
        help="Adam's learning rate (default: the config's, the paper's 5e-4); for fine-tuning "
        "with --init a smaller one, e.g. 1e-4, moves the saved network less at the start",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.errors import CalcscoreError
    from calcscore.training import get_config, saved_architecture, train_from_manifest

    if args.threads is not None:
        if args.threads < 1:
            raise CalcscoreError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    changes = {}
    if args.max_iterations is not None:
        if args.max_iterations < 1:
            raise CalcscoreError(f"--max-iterations must be >= 1, got {args.max_iterations}")
        changes["max_iterations"] = args.max_iterations
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise CalcscoreError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.device:
        changes["device"] = args.device
    if args.bf16:
        changes["precision"] = "bf16"
    if args.channels_last:
        changes["channels_last"] = True
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.learning_rate is not None:
        if not args.learning_rate > 0:
            raise CalcscoreError(f"--learning-rate must be > 0, got {args.learning_rate}")
        changes["learning_rate"] = args.learning_rate
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.network == "cnn2" and not args.cnn1:
        raise CalcscoreError("training cnn2 needs the trained CNN1: add --cnn1 DIR")
    if args.init:  # the saved network's shape, whatever the preset's
        changes.update(saved_architecture(args.init, args.network))
    try:
        config = get_config(args.config, args.network, **changes)
    except ValueError as exc:
        raise CalcscoreError(str(exc)) from None
    result = train_from_manifest(
        config,
        args.data,
        args.out,
        cnn1=args.cnn1,
        cache_dir=args.cache,
        progress=not args.no_progress,
        init=args.init,
        max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    last = result.metrics[-1] if result.metrics else {}
    val = last.get("val_loss", float("nan"))
    stopped = (
        f" (time budget spent; of {config.max_iterations}: run again to go on)"
        if result.iteration < config.max_iterations
        else ""
    )
    print(
        f"{args.network}: {result.iteration} iterations{stopped}, model {result.model_path}"
        + (f", last validation loss {val:.4f}" if val == val else "")
    )
    return 0
