"""`calcscore score INPUT... --out DIR`: label and score scans with the CNNs."""

from __future__ import annotations

import argparse

from calcscore.constants import FRESH_EVERY


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="label and score scans (image files, DICOM folders or a manifest)",
        description=__doc__ + " Writes <scan>_labels.nii.gz, <scan>_scores.json, "
        "<scan>_lesions.csv, <scan>_overlay.png, <scan>_report.html, cohort_summary.csv and "
        "cohort_report.html. "
        "Run under torchrun to share a cohort across GPUs and nodes. "
        "A scan already scored by the same model and settings (its <scan>_provenance.json, "
        "written last) is skipped, so a cohort that stopped resumes where it stopped.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image file (.nii.gz, .mha, .nrrd), DICOM series folder or manifest .csv",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", help="folder with cnn1.pt (and cnn2.pt); default: the shipped model")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="bfloat16 autocast or float32; auto: bf16 where the device has native bf16 "
        "(recent GPUs, CPUs with AVX-512 BF16 or AMX), else fp32",
    )
    p.add_argument(
        "--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS
    )
    p.add_argument(
        "--cnn2-threshold",
        type=_probability,
        default=None,
        metavar="P",
        help="keep a voxel CNN1 calls calcium when CNN2's calcium probability is at least P "
        "(0..1; lower finds more calcium and more false positives); default: the "
        "model's thresholds per label group (see its model card), else the paper's 0.5",
    )
    _add_step_switches(p)
    p.add_argument(
        "--convention", default="lessmann2018", help="Agatston convention (see calcscore agatston)"
    )
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    _add_dicom_and_resume_flags(p)
    p.add_argument(
        "--no-report",
        action="store_true",
        help="skip the HTML reports (<scan>_report.html, cohort_report.html)",
    )
    p.add_argument(
        "--pdf",
        action="store_true",
        help="also print each scan's report to <scan>_report.pdf (needs Chromium)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="score scans that the checks refuse (contrast-enhanced, no heart, NaN or infinite "
        "voxels, not in HU, slices over 5 mm); their risk category is 'not assessable'",
    )
    p.set_defaults(func=run)


def _add_step_switches(p: argparse.ArgumentParser) -> None:
    """The switches that turn off a step of inference that is not in the paper."""
    p.add_argument(
        "--no-rim-fill",
        dest="rim_fill",
        action="store_const",
        const=False,
        default=None,
        help="map the labels back to the scan's grid by nearest neighbour only (the paper's "
        "mapping), without giving the rim lost to the 3 mm slabs its label (see the model card)",
    )
    p.add_argument(
        "--no-safety-net",
        dest="safety_net",
        action="store_const",
        const=False,
        default=None,
        help="keep labels outside their anatomical regions (coronary and valve labels outside "
        "the heart, aortic ones outside the mediastinum, any on bone); see the model card",
    )
    p.add_argument(
        "--no-lesion-fill",
        dest="lesion_fill",
        action="store_const",
        const=False,
        default=None,
        help="leave a coronary lesion (a connected bright region, at the model's threshold) that "
        "the networks labelled in large part as they labelled it, instead of labelling it "
        "whole (see the model card)",
    )
    p.add_argument(
        "--no-artery-vote",
        dest="artery_vote",
        action="store_false",
        help="leave a coronary lesion whose voxels the networks gave different arteries as they "
        "labelled it, instead of giving it the artery of at least two thirds of its voxels (see "
        "the model card)",
    )


def _add_dicom_and_resume_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dicom",
        action="store_true",
        help="for DICOM inputs also write <scan>_seg.dcm (DICOM SEG, one segment per label "
        "found) and <scan>_sr.dcm (Comprehensive 3D SR, TID 1500, with the scores and the "
        "model's name and version), both referencing the source series",
    )
    p.add_argument(
        "--fresh-process-every",
        type=_non_negative,
        default=None,
        metavar="N",
        help="score in a worker process that is replaced by a fresh one every N scans, which "
        "keeps memory flat over a long cohort; 0: score in this process (default: every "
        f"{FRESH_EVERY} scans when there are more, per process under torchrun)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="score every scan again, also those already scored by the same model and settings",
    )


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability between 0 and 1")
    return value


def run(args: argparse.Namespace) -> int:
    from calcscore.batch import SUMMARY, score_cohort

    summary = score_cohort(
        args.inputs,
        args.out,
        model_path=args.model,
        device=args.device,
        precision=args.precision,
        convention=args.convention,
        overlay=not args.no_overlay,
        force=args.force,
        cnn2_threshold=args.cnn2_threshold,
        rim_fill=args.rim_fill,
        safety_net=args.safety_net,
        lesion_fill=args.lesion_fill,
        artery_vote=args.artery_vote,
        report=not args.no_report,
        pdf=args.pdf,
        dicom=args.dicom,
        overwrite=args.overwrite,
        fresh_every=args.fresh_process_every,
    )
    cols = ["scan_id", "status", "CAC_agatston", "TAC_agatston", "risk_category", "seconds"]
    print(summary[cols].to_string(index=False))
    unfit = summary[summary["assessable"].astype(str) == "False"]
    for row in unfit.itertuples(index=False):
        print(f"{row.scan_id}: not assessable: {row.not_assessable_reason}")
    failed = int((summary["status"] != "ok").sum())
    print(_tally(summary, failed, len(unfit)) + f"; summary in {args.out}/{SUMMARY}")
    return 1 if failed else 0


def _tally(summary, failed: int, unfit: int = 0) -> str:
    """'3 scans scored, 0 failed', with the scans skipped as already scored and those not
    assessable when there are."""
    skipped = int(summary["resumed"].fillna(False).astype(bool).sum())
    text = f"{len(summary) - failed - skipped} scans scored, {failed} failed"
    if skipped:
        text += f", {skipped} skipped (already scored by this model and settings; --overwrite)"
    if unfit:
        text += f"; {unfit} not assessable"
    return text
