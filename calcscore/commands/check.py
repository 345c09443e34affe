"""`calcscore check PATH [PATH ...]`: check scans before scoring.

Reports, per scan, what is refused (exit status 2 unless --force): a contrast-enhanced blood
pool, NaN or infinite voxels, values that do not look like Hounsfield units, a scan that does
not cover the heart, slices thicker than 5 mm; and what is warned of: a heart only partly
covered (scored, but not assessable), slices thicker than 3 mm, metal; and the reconstruction
kernel classed soft or sharp. PATH is a DICOM series
folder or an image file (.nii.gz, .mha, .mhd, .nrrd).
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="check scans before scoring (contrast, HU, heart coverage, slices, kernel)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM series folder or image file")
    p.add_argument(
        "--force",
        action="store_true",
        help="do not fail on refusals (they would be scored as not assessable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per scan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from calcscore.checks import check_scan
    from calcscore.errors import CalcscoreError
    from calcscore.io import read_volume

    refused = []
    for path in args.paths:
        report = check_scan(read_volume(path), force=args.force, source=path)
        if args.json:
            print(json.dumps(report.to_dict()))
        else:
            print(f"{path}:")
            print("\n".join(f"  {line}" for line in report.summary().splitlines()))
        if report.refused:
            refused.append(path)
    if refused:
        raise CalcscoreError(
            f"{len(refused)} of {len(args.paths)} scans refused ({', '.join(refused)}); "
            "pass --force to accept them"
        )
    return 0
