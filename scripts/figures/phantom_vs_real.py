"""Phantom next to real non-contrast chest CT: axial slices matched by anatomy, two windows.

Usage: python scripts/figures/phantom_vs_real.py OUT.png [--anatomy v1|v2] [--seed N]
       [--coronal] [--real ../shared/data/open-chest-ct/lungdx-a0001-b.nii.gz]

Rows: real scan, phantom. Columns: levels matched by anatomy (upper chest at the shoulders,
carina, aortic valve / mid-heart, heart apex, diaphragm / liver dome), bone window W1500/L300
on top, soft-tissue window W400/L40 below.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REAL = (
    Path(__file__).resolve().parents[2] / ".." / "shared/data/open-chest-ct/lungdx-a0001-b.nii.gz"
)
# z (mm, LPS, from the scan's top) of the anatomical levels in lungdx-a0001 (read off its slices)
REAL_LEVELS = {}


def load_real(path: Path):
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # (z, y, x)
    sp = img.GetSpacing()[::-1]
    d = np.array(img.GetDirection()).reshape(3, 3)
    if d[2, 2] < 0:
        arr = arr[::-1]
    return arr, sp


def window(a, w, lvl):
    return np.clip((a - (lvl - w / 2)) / w, 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--anatomy", default=None)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--real-z", default="58,44,36,27,20", help="real slice indices, top->bottom")
    ap.add_argument("--levels", default="125,50,0,-60,-100", help="phantom z - z_av (mm)")
    ap.add_argument("--dpi", type=int, default=60)
    ap.add_argument("--views", action="store_true", help="coronal + sagittal instead")
    args = ap.parse_args()
    from calcscore.phantom import make_scan

    kw = {} if args.anatomy is None else {"anatomy": args.anatomy}
    t0 = time.perf_counter()
    vol, _lab, info = make_scan(rng=args.seed, kernel="soft", **kw)
    print(f"phantom {vol.shape} in {time.perf_counter() - t0:.1f} s")
    real, rsp = load_real(Path(args.real))
    zax = vol.origin_mm[0] + np.arange(vol.shape[0]) * vol.spacing_mm[0]
    zav = info.subject.z_av_mm
    if args.views:
        fig, axes = plt.subplots(2, 2, figsize=(12, 10))
        ph = vol.hu
        cy = ph.shape[1] // 2
        cx = int(
            np.argmin(
                np.abs(
                    vol.origin_mm[2]
                    + np.arange(ph.shape[2]) * vol.spacing_mm[2]
                    - info.geometry.spine_x
                )
            )
        )
        ry, rx = real.shape[1] // 2 + 20, real.shape[2] // 2
        for r, (img, asp) in enumerate(((real, rsp), (ph, vol.spacing_mm))):
            cor = img[::-1, (ry if r == 0 else cy), :]
            sag = img[::-1, :, (rx if r == 0 else cx)]
            axes[r, 0].imshow(window(cor, 1500, 300), cmap="gray", aspect=asp[0] / asp[2])
            axes[r, 1].imshow(window(sag, 1500, 300), cmap="gray", aspect=asp[0] / asp[1])
            for a in axes[r]:
                a.axis("off")
        axes[0, 0].set_title("real coronal")
        axes[0, 1].set_title("real sagittal")
        axes[1, 0].set_title("phantom coronal")
        axes[1, 1].set_title("phantom sagittal")
    else:
        rz = [int(v) for v in args.real_z.split(",")]
        lv = [float(v) for v in args.levels.split(",")]
        fig, axes = plt.subplots(4, len(rz), figsize=(3.2 * len(rz), 13))
        for c, (k, dz) in enumerate(zip(rz, lv)):
            kp = int(np.argmin(np.abs(zax - (zav + dz))))
            for r, (w, lvl) in enumerate(((1500, 300), (400, 40))):
                axes[2 * r, c].imshow(window(real[k], w, lvl), cmap="gray")
                axes[2 * r + 1, c].imshow(window(vol.hu[kp], w, lvl), cmap="gray")
                axes[2 * r, c].set_title(f"real k={k} W{w}/L{lvl}", fontsize=8)
                axes[2 * r + 1, c].set_title(f"phantom z_av{dz:+.0f} W{w}/L{lvl}", fontsize=8)
        for a in axes.ravel():
            a.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=args.dpi)


if __name__ == "__main__":
    main()
