"""`calcscore import coca|orcascore ROOT OUT`: import a public data set as a cohort.

coca       Stanford AIMI "Coronary Calcium and chest CT": the gated DICOM series with their
           OsiriX calcium ROIs become images and label maps (left main counted as LAD, voxels
           >= 130 HU inside each polygon); the non-gated per-vessel scores (scores.xlsx) become
           OUT/reference_scores_nongated.csv.
orcascore  orCaScore-style MHD images with reference label images (1 LAD incl. left main,
           2 LCX, 3 RCA): <id>CTI.mhd with <id>CTR.mhd, or images/<id>.mhd with labels/<id>.mhd.

OUT gets images/, labels/ and manifest.csv with the columns of `calcscore synth` (scan_id,
participant_id, image, labels, kernel, scanner, ...). A scan whose input is malformed is
skipped and listed in OUT/import_errors.csv, and the command exits with status 2 (--strict
stops at the first). The inputs are only read.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import a public data set (COCA, orCaScore) as a cohort",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=("coca", "orcascore"), help="which data set ROOT holds")
    p.add_argument("root", metavar="ROOT", help="folder of the download")
    p.add_argument("out", metavar="OUT", help="output folder (created if needed)")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("nii.gz", "mha"),
        default="nii.gz",
        help="file format of images and label maps (default: nii.gz)",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first malformed scan")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.datasets.coca import import_coca
    from calcscore.datasets.orcascore import import_orcascore
    from calcscore.errors import CalcscoreError

    importer = import_coca if args.dataset == "coca" else import_orcascore
    result = importer(args.root, args.out, fmt=args.fmt, keep_going=not args.strict)
    print(result.summary())
    if result.errors:
        n = len(result.errors)
        total = n + len(result.scan_ids)
        raise CalcscoreError(
            f"{n} of {total} scans could not be imported; they are listed with the "
            f"reason in {result.errors_file}"
        )
    return 0
