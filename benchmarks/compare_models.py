"""Two or more models side by side in one run: the real-scan audit and held-out phantoms.

    .venv/bin/python benchmarks/compare_models.py --out results.json \
        --model shipped=calcscore/models/default --model candidate=/work/candidate-qrm \
        [--data ../shared/data] [--scans a,b] [--medium 120-125] [--full 146-146]
        [--v1-medium 120-123] [--gated 120-125] [--parts real,phantoms]

Every scan is read (or generated) once and segmented by every model, so the figures compare
like with like:

* on every real scan of ``DATA`` (``benchmarks/real_ct_audit.py``'s scans and boxes): calcium
  voxels outside the box around the heart and the great vessels, with and without the safety
  net, CAC Agatston and category, and on the QRM scan the inserts found and the other lesions;
* on held-out phantoms (``benchmarks/safety_net_phantoms.py``'s participants, seed 2018,
  anatomy v2; ``--v1-medium`` adds anatomy v1 heart-region ones, ``--gated`` v2 ECG-gated
  heart-only ones): pooled voxel F1 per label group, soft and sharp, with the net, and on gated
  scans the risk-category kappa.

Writes ``--out`` (JSON; with ``--parts`` a part at a time, merged into an existing file) and
prints one table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from real_ct_audit import QRM, REFERENCE, figures, qrm_figures, scan_paths  # noqa: E402
from safety_net_phantoms import _range, pooled  # noqa: E402

from calcscore.inference import InferenceOptions, Model, resolve_precision, segment  # noqa: E402
from calcscore.io import read_volume, write_text_atomic  # noqa: E402
from calcscore.metrics import ScanCase  # noqa: E402
from calcscore.pipeline.cohort import cohort_scans  # noqa: E402


def _options() -> InferenceOptions:
    return InferenceOptions(
        device="cpu", bf16=resolve_precision("auto", "cpu"), channels_last=True, safety_net=True
    )


def _both(volume, model: Model):
    seg = segment(volume, model, _options())
    off = seg.labels_at(volume, model.cnn2_thresholds, rim_fill=model.rim_fill, safety_net=False)
    return seg.labels, off


def qrm_figure(volume, labels: dict, inserts: dict, path: Path) -> None:
    """The QRM scan's insert slice, zoomed on the cardiac insert, with each model's labels."""
    from calcscore.viz import _pyplot

    plt = _pyplot()
    z = next(v[0] for k, v in inserts.items() if "-" in k)
    fig, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 5), squeeze=False)
    for ax, (tag, lab) in zip(axes[0], labels.items()):
        ax.imshow(volume.hu[z], cmap="gray", vmin=-200, vmax=400)
        ax.contour(volume.hu[z] >= 130, [0.5], colors="c", linewidths=0.5)
        if (lab.labels[z] > 0).any():
            ax.contour(lab.labels[z] > 0, [0.5], colors="r", linewidths=1.2)
        for k, (_, y, x) in ((k, v) for k, v in inserts.items() if "-" in k):
            ax.text(x + 8, y - 8, k, color="y", fontsize=7)
        ax.set_xlim(140, 340)
        ax.set_ylim(320, 120)
        ax.set_title(f"{tag}: slice {z}, >= 130 HU cyan, labels (net on) red", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def real_scans(
    models: dict[str, Model], data: Path, scans: str | None, figures_dir: Path | None = None
) -> dict:
    ref = json.loads(REFERENCE.read_text())
    paths = scan_paths(data)
    if scans:
        paths = {k: v for k, v in paths.items() if k in scans.split(",")}
    out: dict = {}
    qrm_labels: dict = {}
    for name, path in paths.items():
        volume = read_volume(path)
        box = ref["boxes"].get(name)
        for tag, model in models.items():
            t = time.perf_counter()
            on, off = _both(volume, model)
            r = {"with_net": figures(volume, on, box), "without_net": figures(volume, off, box)}
            if name == QRM:
                mm3 = float(np.prod(volume.spacing_mm))
                r["with_net"]["qrm"] = qrm_figures(on.labels, ref["qrm_inserts"], mm3)
                r["without_net"]["qrm"] = qrm_figures(off.labels, ref["qrm_inserts"], mm3)
            r["seconds"] = round(time.perf_counter() - t, 1)
            out.setdefault(name, {})[tag] = r
            print(f"{name} {tag}: {r['seconds']} s", file=sys.stderr)
            if name == QRM:
                qrm_labels[tag] = on
        if name == QRM and figures_dir is not None:
            figures_dir.mkdir(parents=True, exist_ok=True)
            qrm_figure(volume, qrm_labels, ref["qrm_inserts"], figures_dir / "qrm_models.png")
    return out


def phantoms(models: dict[str, Model], cohorts: list[tuple[str, str, str]]) -> dict:
    """Pooled F1 (net on) per model, cohort and kernel; cohorts are (size, ids, anatomy)."""
    out: dict = {}
    for size, ids, anatomy in cohorts:
        if not ids:
            continue
        cases: dict = {}
        for cs in cohort_scans(_range(ids), seed=2018, size=size, anatomy=anatomy):
            for tag, model in models.items():
                on, _ = _both(cs.volume, model)
                cases.setdefault((tag, cs.kernel), []).append(
                    ScanCase(cs.scan_id, cs.labels, on, cs.volume)
                )
            print(f"{cs.scan_id} ({anatomy} {size}) done", file=sys.stderr)
        for (tag, kernel), lst in sorted(cases.items()):
            out.setdefault(tag, {})[f"{anatomy} {size} P{ids} {kernel}"] = pooled(lst)
    return out


def table(result: dict) -> str:
    lines = []
    for name, per_model in result.get("real", {}).items():
        for tag, r in per_model.items():
            on, off = r["with_net"], r["without_net"]
            q = on.get("qrm")
            lines.append(
                f"{name:<22}{tag:>11} outside {off.get('outside_heart_vessels_voxels', -1):>6} off "
                f"{on.get('outside_heart_vessels_voxels', -1):>6} on  CAC {on['CAC_agatston']:>8.0f} "
                f"cat {on['risk_category']:>3}"
                + (
                    f"  QRM {q['inserts_found']}/9 ({q['large_medium_found']}/6), "
                    f"{q['other_lesions']} other ({q.get('other_lesions_scored', '?')} scored)"
                    if q
                    else ""
                )
            )
    for tag, cohorts in result.get("phantoms", {}).items():
        for cohort, r in cohorts.items():
            f1 = "  ".join(
                f"{g} {r[g]['f1']:.3f}" for g in ("CAC", "LAD", "LCX", "RCA", "TAC") if g in r
            )
            kappa = f"  kappa {r['kappa']:.2f}" if r.get("kappa") is not None else ""
            lines.append(f"{tag:<11}{cohort:<30}{f1}{kappa}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--scans", default=None, help="comma-separated real scans (default: all)")
    ap.add_argument("--medium", default="120-125")
    ap.add_argument("--full", default="146-146")
    ap.add_argument("--v1-medium", default="")
    ap.add_argument("--gated", default="")
    ap.add_argument("--parts", default="real,phantoms")
    ap.add_argument("--figures", default=None, help="a folder for the QRM figure")
    args = ap.parse_args(argv)
    models = {}
    for item in args.model:
        name, _, folder = item.partition("=")
        models[name] = Model.load(folder or None)
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result["models"] = {m.partition("=")[0]: m.partition("=")[2] for m in args.model}
    parts = args.parts.split(",")
    if "real" in parts:
        t = time.perf_counter()
        figs = Path(args.figures) if args.figures else None
        result.setdefault("real", {}).update(real_scans(models, Path(args.data), args.scans, figs))
        result["real_seconds"] = round(time.perf_counter() - t)
    if "phantoms" in parts:
        t = time.perf_counter()
        cohorts = [
            ("medium", args.medium, "v2"),
            ("full", args.full, "v2"),
            ("medium", args.v1_medium, "v1"),
            ("gated", args.gated, "v2"),
        ]
        result["phantoms"] = phantoms(models, cohorts)
        result["phantom_seconds"] = round(time.perf_counter() - t)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
