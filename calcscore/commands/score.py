"""`calcscore score INPUT... --out DIR`: label and score scans with the CNNs."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="label and score scans (image files, DICOM folders or a manifest)",
                       description=__doc__ + " Writes <scan>_labels.nii.gz, <scan>_scores.json, "
                       "<scan>_lesions.csv, <scan>_overlay.png and cohort_summary.csv. "
                       "Run under torchrun to share a cohort across GPUs and nodes.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file (.nii.gz, .mha, .nrrd), DICOM series folder or manifest .csv")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", help="folder with cnn1.pt (and cnn2.pt); default: the shipped model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="bfloat16 autocast or float32; auto: bf16 where the device has native bf16 "
                        "(recent GPUs, CPUs with AVX-512 BF16 or AMX), else fp32")
    p.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS)
    p.add_argument("--convention", default="lessmann2018", help="Agatston convention (see calcscore agatston)")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--force", action="store_true",
                   help="score scans that the checks refuse (e.g. contrast-enhanced), with a warning")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.batch import SUMMARY, score_cohort

    summary = score_cohort(args.inputs, args.out, model_path=args.model, device=args.device, precision=args.precision,
                           convention=args.convention, overlay=not args.no_overlay, force=args.force)
    cols = ["scan_id", "status", "CAC_agatston", "TAC_agatston", "risk_category", "seconds"]
    print(summary[cols].to_string(index=False))
    failed = int((summary["status"] != "ok").sum())
    print(f"{len(summary) - failed} scans scored, {failed} failed; summary in {args.out}/{SUMMARY}")
    return 1 if failed else 0
