"""The same real scan stored in other layouts: are its labels and scores the same?

    .venv/bin/python benchmarks/orientation.py [--model DIR] [--lesions 12] [--seed 0]
        [--out F.json]

A DICOM series is read with x to the patient's left, y to posterior and z to superior, the
layout the networks learned. The same anatomy often comes stored otherwise: dcm2niix writes an
axial CT's rows bottom up (y to anterior), nibabel's canonical RAS reverses x and y, a series
may run head first, and a coronal stack turns the scan over. This benchmark takes the shipped
chest CT (lungdx-a0001-b) with ``--lesions`` synthetic coronary calcifications in its epicardial
fat (:mod:`calcscore.realism.hybrid`, as benchmarks/hybrid_lesions.py), whole and cut to a
heart-only field of view, stores it in each layout (the same voxels at the same physical
positions) and segments it twice: as calcscore segments it (:func:`calcscore.inference.segment`,
which turns it to the standard layout, :mod:`calcscore.orientation`) and with the array read as
if it were standard (what calcscore did before, ``_segment_standard``). Per case: the pooled
CAC voxel F1 against the inserted lesions, the CAC Agatston (summed over axial slices) and its
risk category, and the voxels whose label differs from the standard layout's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from calcscore.datasets import examples
from calcscore.inference import (
    InferenceOptions,
    Model,
    _segment_standard,
    resolve_precision,
    segment,
)
from calcscore.io import write_text_atomic
from calcscore.labels import Label
from calcscore.orientation import Orientation
from calcscore.realism.hybrid import heart_only_cut, hybrid_scan
from calcscore.risk import risk_category
from calcscore.scoring import agatston
from calcscore.volume import CTVolume, LabelVolume

HERE = Path(__file__).resolve().parent
HEARTS = HERE.parent / "data" / "real_negatives" / "hearts.json"
CORONARY = (int(Label.LAD), int(Label.LCX), int(Label.RCA))
#: name -> the layout the scan is stored in
LAYOUTS = {
    "standard (DICOM)": Orientation(),
    "y to anterior (dcm2niix)": Orientation((0, 1, 2), (False, True, False)),
    "x right, y anterior (nibabel RAS)": Orientation((0, 1, 2), (False, True, True)),
    "head first (z to inferior)": Orientation((0, 1, 2), (True, False, False)),
    "coronal slices": Orientation((1, 0, 2), (True, False, False)),
}


def stored_as(volume: CTVolume, orient: Orientation) -> CTVolume:
    """``volume`` (standard layout) as a scan stored in layout ``orient`` holds it."""
    arr = np.ascontiguousarray(orient.array_to_source(volume.hu))
    spacing, direction = [0.0, 0.0, 0.0], np.zeros((3, 3))
    for i, a in enumerate(orient.axes):
        spacing[a] = volume.spacing_mm[i]
        direction[i, a] = -1.0 if orient.flips[i] else 1.0
    first = [volume.shape[i] - 1 if orient.flips[i] else 0 for i in range(3)]
    origin = volume.index_to_physical([first])[0]
    return CTVolume(arr, tuple(spacing), tuple(origin), direction, meta=volume.meta)


def measure(std: CTVolume, ref: np.ndarray, labels: np.ndarray, want: np.ndarray) -> dict:
    """``labels`` (standard layout) against the inserted lesions and the standard's labels."""
    pred, true = np.isin(labels, CORONARY), ref > 0
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    cac = float(agatston(std, LabelVolume.like(std, labels)).cac_agatston)
    return {
        "cac_f1": round(float(2 * tp / max(2 * tp + fp + fn, 1)), 3),
        "cac": round(cac, 1),
        "category": risk_category(cac),
        "voxels_unlike_standard": int((labels != want).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--lesions", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = ap.parse_args(argv)
    model = Model.load(args.model)
    opts = InferenceOptions(device="cpu", bf16=resolve_precision("auto", "cpu"), channels_last=True)
    heart = json.loads(HEARTS.read_text())["lungdx-a0001-b"]
    rng = np.random.default_rng([2026, args.seed, 0])
    scan, ref, _, lesions = hybrid_scan(examples.chest_ct(), heart, args.lesions, rng)
    cut, ref_cut = heart_only_cut(scan, ref, lesions, heart)
    result: dict = {}
    print(f"{'case':<12} {'stored':<34} {'read as':<10} CAC F1   CAC  cat  labels unlike standard")
    for case, std, r in (("whole", scan, ref), ("heart-only", cut, ref_cut)):
        t = time.perf_counter()
        truth = LabelVolume.like(std, np.where(r > 0, int(Label.LAD), 0).astype(np.uint8))
        cac_ref = float(agatston(std, truth).cac_agatston)
        result.setdefault(case, {})["reference_cac"] = round(cac_ref, 1)
        print(f"{case:<12} the inserted lesions: CAC {cac_ref:.1f} ({risk_category(cac_ref)})")
        want = segment(std, model, opts).labels.labels
        for name, orient in LAYOUTS.items():
            stored = stored_as(std, orient)
            # "before": the array read as if it were standard, as calcscore did
            for how in ("now",) if orient.is_standard else ("now", "before"):
                seg = (segment if how == "now" else _segment_standard)(stored, model, opts)
                labels = orient.apply(LabelVolume.like(stored, seg.labels.labels)).labels
                row = measure(std, r, labels, want)
                result[case].setdefault(name, {})[how] = row
                print(
                    f"{case:<12} {name:<34} {how:<10} {row['cac_f1']:.3f} {row['cac']:7.1f} "
                    f"{row['category']:>3} {row['voxels_unlike_standard']:>6}",
                    flush=True,
                )
        print(f"  ({case}: {time.perf_counter() - t:.0f} s)", file=sys.stderr)
    if args.out:
        write_text_atomic(Path(args.out), json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
