"""Phantoms of both anatomies next to a real non-contrast chest CT, slices matched by anatomy.

Usage: python scripts/figures/phantom_vs_real.py [--out docs/figures] [--seed 6]
       [--real ../shared/data/open-chest-ct/lungdx-a0001-b.nii.gz]

Writes to ``--out``:
- phantom_axial_bone.png, phantom_axial_soft.png: rows real / first generator ("v1") / realistic
  ("v2"), columns the shoulders, the carina, the aortic valve, the lower heart and the liver
  dome; W1500/L300 and W400/L40.
- phantom_coronal_sagittal.png: the same three, coronal through the spine's front and sagittal
  through the spine (W1500/L300).
- phantom_options.png: v2 options: arms down, the shoulders' streaks (W400/L40), a gated
  heart-only scan and 5 mm slices.
- phantom_heart_aorta.png: the heart and aorta (W400/L40): rows a non-contrast and a contrast
  real scan, then both anatomies; columns axial at the aortic arch and at the four chambers,
  coronal through the ascending aorta, sagittal through the arch.
The real scan's levels are its slice numbers (5 mm, counted from the bottom), read off by eye.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared/data/open-chest-ct/lungdx-a0001-b.nii.gz"
#: lungdx-a0001-b slices (from the bottom) at the shoulders, carina, aortic valve, lower heart,
#: liver dome
REAL_SLICES = (56, 42, 31, 22, 14)
LEVELS = ("shoulders", "carina", "aortic valve", "lower heart", "liver dome")


def load_real(path: Path):
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # (z, y, x), z to the head
    return arr, img.GetSpacing()[::-1]


def window(a, w, lvl):
    return np.clip((a - (lvl - w / 2)) / w, 0, 1)


def phantom_levels(info) -> list[float]:
    """z (mm) of the five levels in a phantom, from its geometry."""
    g = info.geometry
    hab = g.habitus
    shoulders = float(np.mean([p[2] for p in hab.humeral_heads])) if hab else g.z_ster_top + 20
    return [shoulders, g.carina[2], g.av_center[2], g.heart_center[2] - 25, g.z_diaphragm - 12]


def body_box(vol, info) -> tuple[slice, slice]:
    """In-plane index ranges of the phantom's body (the real scans are cropped to the body)."""
    g, s = info.geometry, info.subject
    hab = g.habitus
    hw = s.body_half_width_mm
    if hab is not None:
        hw = max(hw, hab.shoulder_half_width_mm)
        if not hab.arms_up:
            hw += 2 * hab.arm_radius_mm
    bx, by = g.body_center
    lo_y, hi_y = (
        by - s.body_half_depth_mm - 15 - (hab.breast_mm if hab else 0),
        by + 1.1 * (s.body_half_depth_mm),
    )
    out = []
    for axis, lo, hi in ((1, lo_y, hi_y), (2, bx - hw - 12, bx + hw + 12)):
        o, sp, n = vol.origin_mm[axis], vol.spacing_mm[axis], vol.shape[axis]
        out.append(slice(max(int((lo - o) / sp), 0), min(int((hi - o) / sp) + 1, n)))
    return out[0], out[1]


def axial_figure(real, phantoms, w, lvl, path, dpi):
    rows = [("real (lungdx-a0001-b)", real, None)] + phantoms
    fig, axes = plt.subplots(len(rows), 5, figsize=(13, 2.7 * len(rows)))
    for r, (name, vol, info) in enumerate(rows):
        if info is None:
            ks = REAL_SLICES
            arr = vol
        else:
            z = vol.origin_mm[0] + np.arange(vol.shape[0]) * vol.spacing_mm[0]
            ks = [int(np.argmin(np.abs(z - lv))) for lv in phantom_levels(info)]
            jy, ix = body_box(vol, info)
            arr = vol.hu[:, jy, ix]
        for c, k in enumerate(ks):
            ax = axes[r, c]
            ax.imshow(window(arr[k], w, lvl), cmap="gray", interpolation="bilinear")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(LEVELS[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(f"axial, W{w}/L{lvl}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def views_figure(real, rsp, phantoms, path, dpi):
    fig, axes = plt.subplots(len(phantoms) + 1, 2, figsize=(9, 3.6 * (len(phantoms) + 1)))
    items = [("real", real, rsp, real.shape[1] // 2 + 25, real.shape[2] // 2)]
    for name, vol, info in phantoms:
        g = info.geometry
        y = vol.origin_mm[1] + np.arange(vol.shape[1]) * vol.spacing_mm[1]
        x = vol.origin_mm[2] + np.arange(vol.shape[2]) * vol.spacing_mm[2]
        zc = g.heart_center[2]
        jy = int(np.argmin(np.abs(y - (g.spine_y(zc) - g.vb_radii[1] - 5))))
        ix = int(np.argmin(np.abs(x - g.spine_x)))
        by, bx = body_box(vol, info)
        items.append((name, vol.hu[:, by, bx], vol.spacing_mm, jy - by.start, ix - bx.start))
    for r, (name, arr, sp, jy, ix) in enumerate(items):
        axes[r, 0].imshow(window(arr[::-1, jy, :], 1500, 300), cmap="gray", aspect=sp[0] / sp[2])
        axes[r, 1].imshow(window(arr[::-1, :, ix], 1500, 300), cmap="gray", aspect=sp[0] / sp[1])
        axes[r, 0].set_ylabel(name, fontsize=9)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
    axes[0, 0].set_title("coronal (W1500/L300)", fontsize=10)
    axes[0, 1].set_title("sagittal (W1500/L300)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def options_figure(seed_down, path, dpi):
    from calcscore.phantom import make_scan

    vol, _, info = make_scan(rng=seed_down, kernel="soft")
    hab = info.geometry.habitus
    z = vol.origin_mm[0] + np.arange(vol.shape[0]) * vol.spacing_mm[0]
    k_sh = int(np.argmin(np.abs(z - np.mean([p[2] for p in hab.humeral_heads]))))
    k_mid = int(np.argmin(np.abs(z - info.geometry.av_center[2])))
    jy, ix = body_box(vol, info)
    gated, _, _ = make_scan(rng=seed_down, kernel="soft", size="gated")
    thick, _, tinfo = make_scan(
        rng=seed_down, kernel="sharp", slice_thickness_mm=5, slice_spacing_mm=5
    )
    ty, tx = body_box(thick, tinfo)
    x_t = thick.origin_mm[2] + np.arange(thick.shape[2]) * thick.spacing_mm[2]
    tx_mid = int(np.argmin(np.abs(x_t - info.geometry.spine_x - 25)))
    panels = [
        ("arms down, aortic valve", vol.hu[k_mid, jy, ix], 1500, 300, 1.0),
        ("shoulder streaks, W400/L40", vol.hu[k_sh, jy, ix], 400, 40, 1.0),
        ("gated heart-only, 3 mm", gated.hu[gated.shape[0] // 2], 400, 40, 1.0),
        (
            "5 mm slices (sharp), sagittal beside the spine",
            thick.hu[::-1, ty, tx_mid],
            1500,
            300,
            thick.spacing_mm[0] / thick.spacing_mm[1],
        ),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9))
    for ax, (title, img, w, lvl, asp) in zip(axes, panels):
        ax.imshow(window(img, w, lvl), cmap="gray", aspect=asp, interpolation="bilinear")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


#: the real scans of the heart figure: name, slices (from the bottom) at the aortic arch and at
#: the four chambers, and the in-plane indices (y for the coronal, x for the sagittal view)
#: through the ascending aorta and through the arch, read off by eye
HEART_REAL = (
    ("lungdx-a0001-b (non-contrast)", "lungdx-a0001-b", 44, 25, 150, 285),
    ("lidc-idri-0001 (contrast)", "lidc-idri-0001", 98, 62, 190, 280),
)


def heart_levels(info) -> tuple[float, float, float, float]:
    """z (mm) of the aortic arch and of the four chambers, y of the ascending aorta and x of
    the upper descending aorta (a sagittal plane through it holds the arch's back half)."""
    g = info.geometry
    arch = g.aorta[g.aorta_segment == 2]
    asc = g.aorta[g.aorta_segment == 1]
    desc = g.aorta[g.aorta_segment == 3][:40]
    z_arch = float(arch[:, 2].max()) - 8.0
    # the four chambers: just below the AV groove (v1: 25 mm below the aortic valve)
    z4 = float(g.mv_center[2]) - 12.0 if g.heart is not None else float(g.av_center[2]) - 25.0
    return z_arch, z4, float(np.median(asc[:, 1])), float(np.median(desc[:, 0])) - 4.0


def heart_figure(real_dir: Path, phantoms, path, dpi) -> None:
    """Rows: two real scans and the phantoms; columns: axial at the arch, axial at the four
    chambers, coronal through the ascending aorta, sagittal through the arch (W400/L40)."""
    rows = []
    for title, name, k_arch, k4, jy, ix in HEART_REAL:
        arr, sp = load_real(real_dir / f"{name}.nii.gz")
        rows.append((title, arr, sp, (k_arch, k4, jy, ix)))
    for name, vol, info in phantoms:
        z_arch, z4, y_asc, x_arch = heart_levels(info)
        ax = [vol.origin_mm[a] + np.arange(vol.shape[a]) * vol.spacing_mm[a] for a in range(3)]
        idx = [int(np.argmin(np.abs(ax[a] - v))) for a, v in ((0, z_arch), (0, z4))]
        idx += [int(np.argmin(np.abs(ax[1] - y_asc))), int(np.argmin(np.abs(ax[2] - x_arch)))]
        jy, ix = body_box(vol, info)
        idx[2] -= jy.start
        idx[3] -= ix.start
        rows.append((name, vol.hu[:, jy, ix], vol.spacing_mm, tuple(idx)))
    fig, axes = plt.subplots(len(rows), 4, figsize=(15, 3.3 * len(rows)))
    titles = (
        "aortic arch",
        "four chambers",
        "coronal: ascending aorta",
        "sagittal: arch, descending",
    )
    for r, (name, arr, sp, (k_arch, k4, jy, ix)) in enumerate(rows):
        views = (
            (arr[k_arch], 1.0),
            (arr[k4], 1.0),
            (arr[::-1, jy, :], sp[0] / sp[2]),
            (arr[::-1, :, ix], sp[0] / sp[1]),
        )
        for c, (img, asp) in enumerate(views):
            a = axes[r, c]
            a.imshow(window(img, 400, 40), cmap="gray", aspect=asp, interpolation="bilinear")
            a.set_xticks([])
            a.set_yticks([])
            if r == 0:
                a.set_title(titles[c], fontsize=10)
            if c == 0:
                a.set_ylabel(name, fontsize=9)
    fig.suptitle("heart and aorta, W400/L40", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs/figures"))
    ap.add_argument("--seed", type=int, default=6, help="the phantom subject (arms up)")
    ap.add_argument("--seed-arms-down", type=int, default=9)
    ap.add_argument("--real", default=str(REAL))
    ap.add_argument("--dpi", type=int, default=46)
    args = ap.parse_args()
    from calcscore.phantom import make_scan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    real, rsp = load_real(Path(args.real))
    phantoms = []
    for anatomy in ("v1", "v2"):
        t0 = time.perf_counter()
        vol, _, info = make_scan(rng=args.seed, kernel="soft", anatomy=anatomy)
        print(f"{anatomy}: {vol.shape} in {time.perf_counter() - t0:.1f} s")
        phantoms.append((f"phantom {anatomy}, seed {args.seed}", vol, info))
    axial_figure(real, phantoms, 1500, 300, out / "phantom_axial_bone.png", args.dpi)
    axial_figure(real, phantoms, 400, 40, out / "phantom_axial_soft.png", args.dpi)
    views_figure(real, rsp, phantoms, out / "phantom_coronal_sagittal.png", args.dpi)
    heart_figure(Path(args.real).parent, phantoms, out / "phantom_heart_aorta.png", args.dpi + 8)
    options_figure(args.seed_arms_down, out / "phantom_options.png", args.dpi)


if __name__ == "__main__":
    main()
