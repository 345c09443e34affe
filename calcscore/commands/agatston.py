"""`calcscore agatston IMAGE LABELS`: Agatston, volume and mass scores per label, and the risk category."""

from __future__ import annotations

import argparse
import json
import math

from calcscore.scoring import CONVENTIONS, DEFAULT_CONVENTION


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "agatston",
        help="score a label map: Agatston, volume, mass per label and the risk category",
        description=__doc__,
    )
    p.add_argument("image", help="the CT scan (DICOM folder or .nii.gz/.mha/.nrrd) in HU")
    p.add_argument("labels", help="the label map on the same grid (0 background, 1 LAD ... 6 MV)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default=DEFAULT_CONVENTION,
        help=f"how lesions and Agatston scores are defined (default {DEFAULT_CONVENTION})",
    )
    p.add_argument(
        "--calibration-factor",
        type=float,
        metavar="MG_PER_CM3_PER_HU",
        help="mass calibration factor in mgHA/cm3 per HU (without it mass_mg is null)",
    )
    p.add_argument("--scan-id", help="the scan id to report (default: the image file name)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.errors import InputError
    from calcscore.io import read_labels, read_volume, strip_suffix
    from calcscore.orientation import onto_layout
    from calcscore.scoring import agatston
    from calcscore.volume import check_same_geometry

    volume = read_volume(args.image)
    labels = onto_layout(read_labels(args.labels), volume)  # the same voxels in another layout
    try:
        check_same_geometry(volume, labels)
    except ValueError as exc:
        raise InputError(args.labels, str(exc)) from None
    if args.calibration_factor is not None and not args.calibration_factor > 0:
        raise InputError(None, f"--calibration-factor must be > 0, got {args.calibration_factor}")
    try:
        scores = agatston(
            volume, labels, convention=args.convention, calibration=args.calibration_factor
        )
    except InputError:
        raise
    except ValueError as exc:  # e.g. label values outside 0-6
        raise InputError(args.labels, str(exc)) from None
    scan = args.scan_id or strip_suffix(args.image.rstrip("/"))
    if args.json:
        print(json.dumps(scores.to_dict(scan), indent=2))
        return 0
    print(f"scan {scan}  (convention {scores.convention.name})")
    print(f"{'label':<6} {'Agatston':>10} {'volume_mm3':>11} {'mass_mg':>9} {'n_lesions':>9}")
    for name, s in scores.labels.items():
        mass = "-" if math.isnan(s.mass_mg) else f"{s.mass_mg:.1f}"
        print(f"{name:<6} {s.agatston:10.1f} {s.volume_mm3:11.1f} {mass:>9} {s.n_lesions:9d}")
    print(f"risk category (CAC Agatston {scores.cac_agatston:.1f}): {scores.risk_category}")
    return 0
