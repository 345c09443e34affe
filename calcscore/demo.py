"""The demo: one synthetic phantom scored by the shipped model, beside its ground truth."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from calcscore.labels import CALCIUM_LABELS

if TYPE_CHECKING:
    from calcscore.check_report import CheckReport
    from calcscore.inference import Model, Segmentation
    from calcscore.volume import CTVolume

log = logging.getLogger(__name__)


#: the phantom anatomy of the demo: the one the shipped model was trained on
DEMO_ANATOMY = "v1"


def comparison_table(reference: dict, predicted: dict) -> pd.DataFrame:
    """Per label: Agatston and volume of the ground truth and of calcscore."""
    rows = []
    for name in [lab.name for lab in CALCIUM_LABELS] + ["CAC"]:
        r, p = reference["labels"][name], predicted["labels"][name]
        rows.append(
            {
                "label": name,
                "truth_agatston": r["agatston"],
                "calcscore_agatston": p["agatston"],
                "truth_volume_mm3": r["volume_mm3"],
                "calcscore_volume_mm3": p["volume_mm3"],
                "truth_lesions": r["n_lesions"],
                "calcscore_lesions": p["n_lesions"],
            }
        )
    return pd.DataFrame(rows).set_index("label")


def run_demo(
    *,
    out_dir: str | Path = "calcscore-demo",
    seed: int = 7,
    kernel: str = "soft",
    size: str = "medium",
    model_path: str | Path | None = None,
    device: str = "auto",
) -> str:
    """Make a phantom, score it, write the outputs of ``calcscore score`` and the ground truth.

    Args:
        out_dir: the output folder (created): the scan's labels, scores, lesions and overlay,
            ``cohort_summary.csv``, the phantom and its ground truth as NIfTI.
        seed: the phantom's seed (the scan id is ``phantom{seed:03d}_{kernel}``).
        kernel: "soft" or "sharp" reconstruction kernel of the phantom.
        size: "medium" (256 x 256 x 100 around the heart), "full" (a 512 x 512 whole chest) or
            "small" (128 x 128 x 60); see :func:`calcscore.phantom.make_scan`.
        model_path: a model folder; None: the shipped model.
        device: "auto", "cpu", "cuda" or "cuda:N".

    Returns:
        the report ``calcscore demo`` prints: scores of truth and calcscore per label, risk
        categories, voxel F1 per label group, timings and where the outputs are.
    """
    from calcscore.inference import Model
    from calcscore.io import write_labels, write_volume
    from calcscore.metrics import detection_agreement
    from calcscore.phantom import make_scan
    from calcscore.report_html import write_scan_page
    from calcscore.runtime import resolve_device
    from calcscore.scoring import score_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scan_id = f"phantom{seed:03d}_{kernel}"
    t0 = time.perf_counter()
    # the shipped networks first learned from the first generator's anatomy ("v1"), then v2: the
    # demo keeps v1, on which it was measured first (the realistic "v2" is the default elsewhere)
    volume, truth, info = make_scan(rng=seed, kernel=kernel, size=size, anatomy=DEMO_ANATOMY)
    t_make = time.perf_counter() - t0
    write_volume(volume, out / f"{scan_id}.nii.gz")
    write_labels(truth, out / f"{scan_id}_truth.nii.gz")
    checks = _checks(volume, out / f"{scan_id}.nii.gz")
    dev = str(resolve_device(device))
    model = Model.load(model_path, device=dev)
    seg, predicted, t_seg = _score(volume, model, dev, checks, out, scan_id)
    reference = score_report(volume, truth, scan=scan_id)
    predicted["reference"] = {  # the page shows the ground truth's categories beside
        "CAC_agatston": reference["labels"]["CAC"]["agatston"],
        "risk_category": reference["risk_category"],
        "cac_drs": reference["cac_drs"]["label"],
    }
    write_scan_page(predicted, volume, seg.labels, out, checks=checks, model=model)
    table = comparison_table(reference, predicted)
    agree = detection_agreement(truth, seg.labels).set_index("label")
    nz, ny, nx = volume.shape
    lines = [
        f"calcscore demo: synthetic phantom (seed {seed}, {kernel} kernel {volume.meta.kernel}, "
        f"{nx} x {ny} x {nz} voxels, {volume.meta.manufacturer} {volume.meta.model})",
        f"model: {model.source}"
        + (f" - learned from {model.info['trained_on']}" if model.info.get("trained_on") else ""),
        f"phantom made in {t_make:.1f} s, scored in {t_seg:.1f} s on {dev}",
        "checks: "
        + ("; ".join(f.message for f in checks.refusals + checks.warnings) or "no warning")
        + (f" (heart {checks.coverage.status})" if checks.coverage is not None else ""),
        "",
        table.round(1).to_string(),
        "",
        f"risk category: truth {reference['risk_category']}, calcscore {predicted['risk_category']}",
        f"CAC-DRS: truth {reference['cac_drs']['label']}, calcscore {predicted['cac_drs']['label']}",
        "voxel agreement with the truth (F1): "
        + ", ".join(
            f"{g} {agree.loc[g, 'f1']:.2f}"
            if g in agree.index and agree.loc[g, "f1"] == agree.loc[g, "f1"]
            else f"{g} n/a"
            for g in ("CAC", "TAC", "AV", "MV")
        ),
        f"outputs in {out}/: {scan_id}_labels.nii.gz, _scores.json, _lesions.csv, _overlay.png, "
        "_report.html, "
        f"the phantom ({scan_id}.nii.gz) and its ground truth ({scan_id}_truth.nii.gz)",
    ]
    return "\n".join(lines)


def _checks(volume: CTVolume, source: Path) -> CheckReport:
    """The checks of `calcscore score`: a phantom they would refuse is scored as `--force` does
    (not assessable), and the report says why."""
    from calcscore.checks import check_scan

    checks = check_scan(volume, force=True, source=source)
    for finding in checks.refusals + checks.warnings:
        log.warning("%s: %s", source.name, finding.message)
    return checks


def _score(
    volume: CTVolume, model: Model, dev: str, checks: CheckReport, out: Path, scan_id: str
) -> tuple[Segmentation, dict, float]:
    """Segment and write the outputs of `calcscore score`: (segmentation, scores, seconds)."""
    from calcscore.batch import safety_net_summary, summary_row, write_csv, write_scan_outputs
    from calcscore.inference import InferenceOptions, segment
    from calcscore.runtime import resolve_precision

    t1 = time.perf_counter()
    seg = segment(
        volume,
        model,
        InferenceOptions(device=dev, channels_last=True, bf16=resolve_precision("auto", dev)),
    )
    t_seg = time.perf_counter() - t1
    predicted = write_scan_outputs(
        volume,
        seg.labels,
        out,
        scan_id,
        extra={
            "safety_net": safety_net_summary(seg),
            "heart_coverage": checks.coverage.to_dict() if checks.coverage else None,
        },
        not_assessable=checks.not_assessable_reason,
    )
    row = summary_row(scan_id, predicted, seconds=t_seg, checks=checks)
    write_csv(pd.DataFrame([row]), out / "cohort_summary.csv")
    return seg, predicted, t_seg
