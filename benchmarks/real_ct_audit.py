"""Audit a model on the real scans that lie beside the project (no annotations needed).

    .venv/bin/python benchmarks/real_ct_audit.py --out /tmp/audit [--data ../shared/data]
        [--model DIR] [--scans lungdx-a0001-b,qrm-canon-large-rep1]

For every real chest CT of ``DATA/open-chest-ct`` and the QRM phantom scan of
``DATA/qrm-canon-large-rep1``, it runs the model once and compares its labels with the anatomical
safety net (:mod:`calcscore.regions`) and without it (the baseline, in the same run):

* calcium voxels outside the scan's box around the heart and the great vessels
  (``benchmarks/real_ct/reference_regions.json``: the project's own boxes, made by eye): labels on
  ribs, cartilage, shoulders, neck, abdomen or metal, which must be 0;
* CAC Agatston and risk category, TAC Agatston, and the voxels per label;
* on the QRM scan, which of its nine calcium inserts carry a calcium label (target: the six large
  and medium ones) and how many other lesions are labelled.

Prints one table, writes ``audit.json`` and, per scan, ``<scan>_gallery.png`` (every lesion the
model keeps, for a reader to judge) and ``<scan>_gallery_off.png`` (without the net). The
contrast-enhanced scans are scored with the checks' refusal overridden, as ``--force`` does: only
their labels outside the heart and the great vessels mean anything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from calcscore.conventions import CONVENTIONS, DEFAULT_CONVENTION
from calcscore.figures import lesion_gallery
from calcscore.inference import InferenceOptions, Model, resolve_precision, segment
from calcscore.io import read_labels, read_volume, write_labels
from calcscore.labels import Label
from calcscore.regions import apply_safety_net, find_chest_regions
from calcscore.scoring import agatston
from calcscore.viz import _pyplot
from calcscore.volume import CTVolume, LabelVolume

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "real_ct" / "reference_regions.json"
QRM = "qrm-canon-large-rep1"


def scan_paths(data: Path) -> dict[str, Path]:
    """The real scans under ``data``: name -> path (DICOM folder or NIfTI file)."""
    out = {}
    if (data / QRM / "dicom").is_dir():
        out[QRM] = data / QRM / "dicom"
    for p in sorted((data / "open-chest-ct").glob("*.nii.gz")):
        out[p.name[: -len(".nii.gz")]] = p
    return out


def box_mask(shape: tuple[int, int, int], box: dict) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[tuple(slice(*box[a]) for a in "zyx")] = True
    return m


#: lesions smaller than this are dropped from every score (the default convention)
MIN_SCORED_MM3 = CONVENTIONS[DEFAULT_CONVENTION].min_volume_mm3


def qrm_figures(labels: np.ndarray, inserts: dict, voxel_mm3: float | None = None) -> dict:
    """Which QRM inserts carry a calcium label (within 3 slices, 6 pixels of the centre), and the
    labelled lesions that touch no insert and lie outside the calibration rod's slices; with
    ``voxel_mm3``, also how many of those the scores count (at least the default convention's
    ``min_volume_mm3``, 1.5 mm³: smaller specks are dropped from every score)."""
    near = np.zeros(labels.shape, bool)
    found = {}
    for name, centre in inserts.items():
        if "-" not in name:  # "about", "calibration_rod_slices"
            continue
        z, y, x = centre
        box = (slice(z - 1, z + 2), slice(y - 6, y + 7), slice(x - 6, x + 7))
        found[name] = bool((labels[box] > 0).any())
        near[box] = True
    rod = slice(*inserts["calibration_rod_slices"])
    comps, n = ndimage.label(labels > 0, structure=np.ones((3, 3, 3), bool))
    other, scored = 0, 0
    for k, box in enumerate(ndimage.find_objects(comps), start=1):
        m = comps[box] == k
        zs = np.arange(box[0].start, box[0].stop)[m.any(axis=(1, 2))]
        if not (near[box] & m).any() and not all(rod.start <= z < rod.stop for z in zs):
            other += 1
            if voxel_mm3 is not None and m.sum() * voxel_mm3 >= MIN_SCORED_MM3:
                scored += 1
    large_medium = [k for k in found if k.endswith(("-L", "-M"))]
    return {
        "inserts_found": sum(found.values()),
        "large_medium_found": sum(found[k] for k in large_medium),
        "found": found,
        "other_lesions": other,
        **({"other_lesions_scored": scored} if voxel_mm3 is not None else {}),
    }


def figures(volume: CTVolume, labels: LabelVolume, box: dict | None) -> dict:
    s = agatston(volume, labels)
    counts = np.bincount(labels.labels.ravel(), minlength=len(Label))
    out = {
        "CAC_agatston": round(s.cac_agatston, 1),
        "risk_category": s.risk_category,
        "TAC_agatston": round(s.labels["TAC"].agatston, 1),
        "voxels": {Label(i).name: int(counts[i]) for i in range(1, len(Label)) if counts[i]},
        "lesions": int(ndimage.label(labels.labels > 0, structure=np.ones((3, 3, 3), bool))[1]),
    }
    if box is not None:
        out["outside_heart_vessels_voxels"] = int(
            ((labels.labels > 0) & ~box_mask(labels.shape, box)).sum()
        )
    return out


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=70)
    _pyplot().close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--scans", default=None, help="comma-separated names (default: all found)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--save-labels",
        action="store_true",
        help="also write <scan>_labels_off.nii.gz (the labels without the net)",
    )
    ap.add_argument(
        "--labels-off",
        default=None,
        metavar="DIR",
        help="read <scan>_labels_off.nii.gz from DIR (written by --save-labels with the same "
        "model) instead of running the model: re-measures the net alone in seconds",
    )
    args = ap.parse_args(argv)
    ref = json.loads(REFERENCE.read_text())
    paths = scan_paths(Path(args.data))
    if args.scans:
        paths = {k: v for k, v in paths.items() if k in args.scans.split(",")}
    if not paths:
        print(f"no real scans under {args.data}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = None if args.labels_off else Model.load(args.model, device=args.device)
    opts = InferenceOptions(
        device=args.device,
        bf16=resolve_precision("auto", args.device),
        channels_last=True,
        safety_net=True,
    )
    results = {}
    for name, path in paths.items():
        t0 = time.perf_counter()
        volume = read_volume(path)
        if args.labels_off:
            off = read_labels(Path(args.labels_off) / f"{name}_labels_off.nii.gz")
            regions = find_chest_regions(volume)
            on = LabelVolume.like(volume, apply_safety_net(off.labels, regions)[0])
        else:
            seg = segment(volume, model, opts)
            off = seg.labels_at(
                volume, model.cnn2_thresholds, rim_fill=model.rim_fill, safety_net=False
            )
            on, regions = seg.labels, seg.regions
        box = ref["boxes"].get(name)
        r = {
            "with_net": figures(volume, on, box),
            "without_net": figures(volume, off, box),
            "net_found_regions": bool(regions is not None and regions.found),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if name == QRM:
            mm3 = float(np.prod(volume.spacing_mm))
            r["with_net"]["qrm"] = qrm_figures(on.labels, ref["qrm_inserts"], mm3)
            r["without_net"]["qrm"] = qrm_figures(off.labels, ref["qrm_inserts"], mm3)
        results[name] = r
        if args.save_labels:
            write_labels(off, out / f"{name}_labels_off.nii.gz")
        save(
            lesion_gallery(volume, on, title=f"{name}: every lesion kept (safety net on)"),
            out / f"{name}_gallery.png",
        )
        save(
            lesion_gallery(volume, off, title=f"{name}: largest lesions without the safety net"),
            out / f"{name}_gallery_off.png",
        )
        print(f"{name}: {r['seconds']} s", file=sys.stderr)
    (out / "audit.json").write_text(json.dumps(results, indent=1))
    head = f"{'scan':<22}{'net':>5}{'outside':>9}{'CAC':>9}{'cat':>5}{'TAC':>9}{'lesions':>9}  QRM inserts (L+M of 6)"
    print(head)
    for name, r in results.items():
        for key, tag in (("without_net", "off"), ("with_net", "on")):
            f = r[key]
            q = f.get("qrm")
            qtxt = (
                f"{q['inserts_found']}/9 ({q['large_medium_found']}/6), {q['other_lesions']} other "
                f"({q.get('other_lesions_scored', '?')} scored)"
                if q
                else ""
            )
            print(
                f"{name:<22}{tag:>5}{f.get('outside_heart_vessels_voxels', -1):>9}{f['CAC_agatston']:>9.0f}"
                f"{f['risk_category']:>5}{f['TAC_agatston']:>9.0f}{f['lesions']:>9}  {qtxt}"
            )
    tot_off = sum(r["without_net"].get("outside_heart_vessels_voxels", 0) for r in results.values())
    tot_on = sum(r["with_net"].get("outside_heart_vessels_voxels", 0) for r in results.values())
    print(
        f"calcium voxels outside the heart and great vessels, all scans: {tot_off} without the net, "
        f"{tot_on} with it (ratio {tot_on / max(tot_off, 1):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
