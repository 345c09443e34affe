"""`calcscore synth OUT --n-scans N --seed S`: write a synthetic cohort with calcium labels.

Each participant is one simulated subject (non-contrast low-dose chest CT) reconstructed with
every kernel of ``--kernels`` (soft and sharp, as in the paper); ``--n-scans`` counts scans, so
N scans come from ceil(N / number of kernels) participants. OUT gets images/, labels/ (and
labels_observer2/, labels_observer3/ with --observers) and manifest.csv with the columns
scan_id, participant_id, image, labels, kernel, scanner (paths relative to OUT). The same seed
writes the same cohort.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write synthetic low-dose chest CT scans with calcium labels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (created if needed)")
    p.add_argument(
        "--n-scans", type=int, required=True, metavar="N", help="number of scans to write"
    )
    p.add_argument("--seed", type=int, required=True, metavar="S", help="random seed of the cohort")
    p.add_argument(
        "--kernels",
        default="soft,sharp",
        help="comma-separated reconstruction kernels per participant (default: soft,sharp)",
    )
    p.add_argument(
        "--observers",
        action="store_true",
        help="also write simulated observers 2 and 3 (labels_observer2/3 columns)",
    )
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("nii.gz", "mha"),
        default="nii.gz",
        help="file format of images and label maps (default: nii.gz)",
    )
    p.add_argument(
        "--size",
        choices=("full", "medium", "small", "gated"),
        default="full",
        help="full: 512 x 512 whole chest; medium: 256 x 256 x 100 and small: "
        "128 x 128 x 60 around the heart; gated: 512 x 512 x 56 heart only, 3 mm "
        "(default: full)",
    )
    p.add_argument(
        "--anatomy",
        choices=("v2", "v1"),
        default="v2",
        help="v2: realistic chest (shoulders, ribs, cartilage, spine, abdomen; docs/phantoms.md); "
        "v1: the first generator's cartoon anatomy, which the first shipped networks learned from "
        "(default: v2)",
    )
    p.add_argument(
        "--scanner",
        default=None,
        help="one scanner profile for all scans (default: drawn per participant)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.errors import CalcscoreError
    from calcscore.phantom import SCANNERS
    from calcscore.phantom.cohort import write_cohort

    kernels = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
    bad = [k for k in kernels if k not in ("soft", "sharp")]
    if bad or not kernels:
        raise CalcscoreError(f"--kernels must list soft and/or sharp, got {args.kernels!r}")
    if args.n_scans < 1:
        raise CalcscoreError(f"--n-scans must be >= 1, got {args.n_scans}")
    if args.scanner is not None and args.scanner not in SCANNERS:
        raise CalcscoreError(f"unknown --scanner {args.scanner!r}; known: {', '.join(SCANNERS)}")
    path = write_cohort(
        args.out,
        n_scans=args.n_scans,
        seed=args.seed,
        kernels=kernels,
        observers=args.observers,
        fmt=args.fmt,
        size=args.size,
        scanner=args.scanner,
        progress=not args.no_progress,
        anatomy=args.anatomy,
    )
    print(f"wrote {args.n_scans} scans and {path}")
    return 0
