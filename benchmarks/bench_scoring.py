"""Time calcium scoring on a 512 x 512 x 200 scan with realistic calcium.

    .venv/bin/python benchmarks/bench_scoring.py [--repeats 5] [--seed 0]

The scan is synthetic: soft tissue at 40 +- 20 HU with noise, a spine and ribs at 700 HU (not
labelled), and labelled calcifications: 12 coronary lesions (LAD, LCX, RCA), 30 aortic plaques
along a 24 cm aorta (TAC), and aortic and mitral valve calcium. Prints one row per function and
convention: the median and best wall time over the repeats. Target: scoring under 1 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calcscore.labels import Label
from calcscore.lesions import grow_to_lesions
from calcscore.metrics import detection_agreement
from calcscore.scoring import CONVENTIONS, agatston
from calcscore.volume import CTMeta, CTVolume, LabelVolume

SHAPE = (200, 512, 512)
SPACING_MM = (1.5, 0.66, 0.66)


def _blob(hu: np.ndarray, lab: np.ndarray, centre, radii_mm, peak_hu: float, label: int) -> None:
    """Add a Gaussian-profiled ellipsoid of calcium and label the voxels inside its 2-sigma shell."""
    r_vox = np.asarray(radii_mm) / np.asarray(SPACING_MM)
    lo = np.maximum(np.floor(np.asarray(centre) - 2 * r_vox).astype(int), 0)
    hi = np.minimum(np.ceil(np.asarray(centre) + 2 * r_vox).astype(int) + 1, SHAPE)
    zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    d2 = (
        ((zz - centre[0]) / r_vox[0]) ** 2
        + ((yy - centre[1]) / r_vox[1]) ** 2
        + ((xx - centre[2]) / r_vox[2]) ** 2
    )
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    hu[box] += (peak_hu * np.exp(-d2)).astype(np.float32)
    lab[box][d2 <= 2.0] = label


def make_scan(seed: int = 0) -> tuple[CTVolume, LabelVolume]:
    rng = np.random.default_rng(seed)
    hu = rng.normal(40.0, 20.0, SHAPE).astype(np.float32)
    hu[:, :40] = -1000.0  # air in front of the chest
    lab = np.zeros(SHAPE, np.uint8)
    hu[:, 380:440, 226:286] = 700.0  # spine (not labelled)
    for k in range(10, 200, 16):  # ribs (not labelled)
        hu[k : k + 6, 100:420, 60:75] = 600.0
        hu[k : k + 6, 100:420, 437:452] = 600.0
    coronary = [Label.LAD, Label.LCX, Label.RCA]
    for i in range(12):
        centre = (rng.uniform(80, 140), rng.uniform(180, 300), rng.uniform(180, 330))
        _blob(hu, lab, centre, rng.uniform(0.8, 2.5, 3), rng.uniform(200, 900), coronary[i % 3])
    for i in range(30):  # aorta: from slice 30 to 190 along a curve
        t = i / 29
        centre = (30 + 160 * t, 200 + 60 * np.sin(np.pi * t), 260 + 40 * np.cos(np.pi * t))
        _blob(hu, lab, centre, rng.uniform(1.0, 3.0, 3), rng.uniform(250, 1200), Label.TAC)
    for i in range(4):
        _blob(hu, lab, (100 + 3 * i, 240, 250 + 4 * i), (2.0, 2.0, 2.0), 600.0, Label.AV)
        _blob(hu, lab, (90 + 3 * i, 270, 300 + 4 * i), (1.5, 2.5, 2.5), 400.0, Label.MV)
    volume = CTVolume(hu, SPACING_MM, meta=CTMeta(slice_thickness_mm=3.0))
    return volume, LabelVolume.like(volume, lab)


def _time(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    volume, labels = make_scan(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    # A prediction that misses a tenth of the calcium voxels and adds a few false ones.
    pred = labels.array.copy()
    pred[(pred > 0) & (rng.random(SHAPE) < 0.1)] = 0
    prediction = LabelVolume.like(volume, pred)
    scores = agatston(volume, labels)
    print(
        f"scan {' x '.join(map(str, SHAPE))} (z, y, x), spacing {SPACING_MM} mm; "
        f"{int((labels.array > 0).sum())} labelled voxels, {scores['CAC'].n_lesions} CAC and "
        f"{len(scores.lesions)} lesions in all; CAC Agatston {scores['CAC'].agatston:.1f}"
    )
    rows = []
    for name in CONVENTIONS:
        rows.append(
            (
                f"agatston(convention={name!r})",
                *_time(lambda n=name: agatston(volume, labels, convention=n), args.repeats),
            )
        )
    rows.append(
        (
            "detection_agreement(reference, prediction)",
            *_time(lambda: detection_agreement(labels, prediction), args.repeats),
        )
    )
    rows.append(
        (
            "grow_to_lesions(volume, labels)",
            *_time(lambda: grow_to_lesions(volume, labels), max(1, args.repeats // 2)),
        )
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'function':<{width}}  {'median s':>9}  {'best s':>7}")
    for name, med, best in rows:
        print(f"{name:<{width}}  {med:9.3f}  {best:7.3f}")


if __name__ == "__main__":
    main()
