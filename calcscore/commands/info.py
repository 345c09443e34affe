"""`calcscore info PATH`: geometry and acquisition metadata of any supported input."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="print size, spacing, HU range and acquisition metadata of a scan",
        description=__doc__,
    )
    p.add_argument("path", help="a DICOM series folder, or a .nii/.nii.gz/.mha/.mhd/.nrrd file")
    p.add_argument("--series-uid", help="pick one series from a DICOM folder that holds several")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.io import describe, read_volume

    volume = read_volume(args.path, series_uid=args.series_uid)
    print(describe(volume, source=args.path))
    return 0
