"""`calcscore evaluate REFERENCE PREDICTION --out DIR`: detection agreement and risk categories.

REFERENCE and PREDICTION are two manifest CSVs (columns scan_id, image, labels, ...; paths
relative to the manifest's folder), or two folders of label maps named by scan id
(``<scan_id>.nii.gz`` ...). Scans are matched by scan id. Agatston scores and risk categories need
the CT: they come from the reference manifest's ``image`` column, or from ``--images`` (a
manifest, or a folder holding ``<scan_id>.nii.gz`` files or ``<scan_id>/`` DICOM folders).

Writes, atomically, to DIR: ``per_scan.csv`` (one row per scan and label), ``summary.csv`` (one
row per label), ``risk_categories.csv`` and ``risk_confusion.csv`` (when there are images),
``label_confusion.csv`` (calcium volume in mm^3, reference rows) and ``kappa.json``; prints a
summary laid out like the paper's Tables II-V and III.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path

from calcscore.scoring import CONVENTIONS, DEFAULT_CONVENTION

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="agreement of predicted with reference label maps (Tables II-V)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reference", help="reference manifest CSV or folder of label maps")
    p.add_argument("prediction", help="predicted manifest CSV or folder of label maps")
    p.add_argument("--out", required=True, help="output folder for the CSV files")
    p.add_argument(
        "--images",
        help="manifest or folder of the CT images (default: the reference manifest's images)",
    )
    p.add_argument(
        "--ref-column",
        default="labels",
        help="label column of the reference manifest (default labels)",
    )
    p.add_argument(
        "--pred-column",
        default="labels",
        help="label column of the prediction manifest (default labels; e.g. labels_observer2)",
    )
    p.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default=DEFAULT_CONVENTION,
        help=f"Agatston convention for the risk categories (default {DEFAULT_CONVENTION})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from calcscore.metrics import evaluate

    cases = iter_cases(
        args.reference,
        args.prediction,
        images=args.images,
        ref_column=args.ref_column,
        pred_column=args.pred_column,
    )
    evaluation = evaluate(cases, convention=args.convention)
    written = write_evaluation(evaluation, args.out)
    print(evaluation.report())
    print(f"\nwrote {', '.join(p.name for p in written)} to {args.out}")
    return 0


def _table(path: str, column: str) -> dict[str, dict[str, str | None]]:
    """scan_id -> {"labels": path, "image": path or None} from a manifest or a folder."""
    from calcscore.errors import InputError
    from calcscore.io import ITK_SUFFIXES, strip_suffix, suffix_of

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and suffix_of(f) in ITK_SUFFIXES)
        if not files:
            raise InputError(
                p,
                "holds no label maps (.nii.gz, .nii, .mha, .mhd, .nrrd)",
                "pass a folder of <scan_id>.nii.gz label maps or a manifest CSV",
            )
        return {strip_suffix(f): {"labels": str(f), "image": None} for f in files}
    from calcscore.manifest import read_manifest

    df = read_manifest(p)
    if column not in df.columns:
        raise InputError(
            p,
            f"has no column {column!r} (columns: {', '.join(map(str, df.columns))})",
            "choose the label column with --ref-column / --pred-column",
        )
    out = {}
    for _, row in df.iterrows():
        if not _present(row[column]):
            log.warning("%s: scan %s has no %s; skipped", p, row["scan_id"], column)
            continue
        image = row.get("image")
        out[str(row["scan_id"])] = {
            "labels": row[column],
            "image": image if _present(image) else None,
        }
    return out


def _images(path: str) -> dict[str, str]:
    from calcscore.io import ITK_SUFFIXES, strip_suffix, suffix_of

    p = Path(path)
    if p.is_dir():
        return {
            (strip_suffix(f) if f.is_file() else f.name): str(f)
            for f in sorted(p.iterdir())
            if f.is_dir() or suffix_of(f) in ITK_SUFFIXES
        }
    from calcscore.manifest import read_manifest

    return {
        str(r["scan_id"]): r["image"]
        for _, r in read_manifest(p).iterrows()
        if _present(r["image"])
    }


def iter_cases(
    reference: str,
    prediction: str,
    *,
    images: str | None = None,
    ref_column: str = "labels",
    pred_column: str = "labels",
) -> Iterator:
    """Yield :class:`calcscore.metrics.ScanCase` for every reference scan, reading one scan at a time.

    Every reference scan must have a prediction; predictions without a reference are ignored
    (with a warning).

    Args:
        reference: the reference label maps: a manifest CSV, or a folder of
            ``<scan_id>.nii.gz`` (.mha, ...) label maps.
        prediction: the predicted label maps, the same way.
        images: the CT images (for Agatston scores): a manifest or a folder of images or DICOM
            series folders named by scan id; default the reference manifest's ``image`` column.
        ref_column: the manifest column of ``reference`` that holds the label map paths.
        pred_column: the manifest column of ``prediction`` that holds the label map paths.

    Yields:
        One :class:`calcscore.metrics.ScanCase` per reference scan, sorted by scan id.
    """
    from calcscore.errors import InputError
    from calcscore.io import read_labels, read_volume
    from calcscore.metrics import ScanCase
    from calcscore.orientation import onto_layout
    from calcscore.volume import check_same_geometry

    ref = _table(reference, ref_column)
    pred = _table(prediction, pred_column)
    missing = sorted(set(ref) - set(pred))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(
            prediction,
            f"has no prediction for scan(s) {', '.join(missing[:5])}{more}",
            "predict every reference scan, or evaluate a manifest of the scans you have",
        )
    extra = sorted(set(pred) - set(ref))
    if extra:
        log.warning(
            "%d predicted scans have no reference and are ignored: %s",
            len(extra),
            ", ".join(extra[:5]),
        )
    image_paths = (
        _images(images) if images else {k: v["image"] for k, v in ref.items() if v["image"]}
    )
    for scan_id in sorted(ref):
        ref_lv = read_labels(str(ref[scan_id]["labels"]))
        pred_lv = onto_layout(read_labels(str(pred[scan_id]["labels"])), ref_lv)
        try:
            check_same_geometry(ref_lv, pred_lv, names=("reference", "prediction"))
        except ValueError as exc:
            raise InputError(pred[scan_id]["labels"], f"scan {scan_id}: {exc}") from None
        image = None
        if scan_id in image_paths:
            image = read_volume(image_paths[scan_id])
            ref_lv = onto_layout(ref_lv, image)  # the same voxels in another layout: turned
            pred_lv = onto_layout(pred_lv, image)
            try:
                check_same_geometry(image, ref_lv, names=("image", "reference labels"))
            except ValueError as exc:
                raise InputError(ref[scan_id]["labels"], f"scan {scan_id}: {exc}") from None
        elif image_paths:
            log.warning("scan %s has no image: no Agatston score", scan_id)
        yield ScanCase(scan_id, ref_lv, pred_lv, image)


def write_evaluation(evaluation, out: str | Path) -> list[Path]:
    """Write the evaluation's CSV files and kappa.json into ``out`` atomically; return their paths."""
    from calcscore.io import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    with atomic_path(out / "per_scan.csv") as tmp:
        evaluation.per_scan.to_csv(tmp / "per_scan.csv", index=False)
        evaluation.summary.to_csv(tmp / "summary.csv")
        evaluation.label_confusion.to_csv(tmp / "label_confusion.csv")
        names += ["per_scan.csv", "summary.csv", "label_confusion.csv"]
        agreement = evaluation.risk_agreement()
        if agreement is not None:
            table, kappa = agreement
            evaluation.risk.to_csv(tmp / "risk_categories.csv", index=False)
            table.to_csv(tmp / "risk_confusion.csv")
            (tmp / "kappa.json").write_text(
                json.dumps(
                    {
                        "weights": "linear",
                        "kappa": _finite(kappa.kappa),
                        "ci_low": _finite(kappa.ci_low),
                        "ci_high": _finite(kappa.ci_high),
                        "confidence": kappa.confidence,
                        "agreement": _finite(kappa.agreement),
                        "n_scans": kappa.n,
                    },
                    indent=2,
                )
            )
            names += ["risk_categories.csv", "risk_confusion.csv", "kappa.json"]
    return [out / n for n in names]


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _present(v) -> bool:
    """A manifest cell that holds a path (not None, NaN or empty)."""
    return isinstance(v, str) and v != ""
