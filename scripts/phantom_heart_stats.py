"""Measure the realistic ("v2") phantom heart and aorta over many subjects.

Usage: OMP_NUM_THREADS=1 python scripts/phantom_heart_stats.py [--subjects 20] [--aorta 10]
[--fraction] [--offset]

Prints, for subjects ``draw_subject(0..N-1)``: the blood volume of each chamber (ml, its cavity
on a 1.5 mm grid, the RV's outside the LV), how the heart was fitted into the chest (shrunk,
flattened, moved back), and for the first ``--aorta`` subjects the aorta's lumen diameter
measured on the painted, noise-free anatomy at the sinuses and 40 mm below the aortic valve
(the median over 12 chords of the longest run of blood HU) beside the generator's parameter.
With ``--fraction``, the heart's share of the body's cross-section at the mid-heart slice (the
pericardial sac: the chambers' union grown by the epicardial fat and the pericardium, over the
body: HU above -400 on a 1 mm slice, holes filled, the largest piece). With ``--offset``, the
descending aorta's centre right-left and front-back from the vertebral body's centre, and the
fat between its wall and the vertebral body, 40 mm below the aortic valve and 20 mm above it.
"""

from __future__ import annotations

import argparse

import numpy as np

from calcscore.phantom._draw import GridSpec, curve_frames
from calcscore.phantom.anatomy import (
    build_geometry,
    draw_subject,
    heart_section_fraction,
    render_anatomy,
)


def chamber_volumes(geo, step: float = 1.5) -> dict[str, float]:
    h = geo.heart
    c = h.origin + h.u * 20
    ax = np.arange(-95, 95, step)
    z, y, x = np.meshgrid(c[2] + ax, c[1] + ax, c[0] + ax, indexing="ij")
    lv_out = h.chambers["LV"].sd_outer(x, y, z)
    out = {}
    for name, ch in h.chambers.items():
        sd = ch.sd_inner(x, y, z)
        if name == "RV":
            sd = np.maximum(sd, -lv_out)
        out[name] = float((sd < 0).sum()) * step**3 / 1000.0
    return out


def lumen_diameter(geo, i: int) -> float:
    p = geo.aorta[i]
    _, n, b = (f[i] for f in curve_frames(geo.aorta))
    grid = GridSpec((120, 120, 120), (0.5, 0.5, 0.5), tuple(p[::-1] - 30.0))
    hu = render_anatomy(geo, grid)
    chords = []
    for a in np.linspace(0, np.pi, 12, endpoint=False):
        d = n * np.cos(a) + b * np.sin(a)
        q = (p + np.outer(np.arange(-29, 29, 0.25), d))[:, ::-1]
        idx = np.clip(np.round((q - grid.origin_mm) / 0.5).astype(int), 0, 119)
        on = np.abs(hu[idx[:, 0], idx[:, 1], idx[:, 2]] - 38.0) < 2
        edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
        runs = np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0]
        chords.append(runs.max() * 0.25 if len(runs) else 0.0)
    return float(np.median(chords))


def aorta_offset(geo, dz: float) -> tuple[float, float, float]:
    """Where the descending aorta's centre lies ``dz`` mm from the aortic valve's level: mm left
    of the vertebral body's centre, mm in front of it, and the least distance (mm) from its outer
    wall (lumen + 2 mm) to the vertebral body's ellipse."""
    seg, a = geo.aorta_segment, geo.aorta
    i = int(np.argmin(np.abs(a[:, 2] - (geo.av_center[2] + dz)) + 1e3 * (seg != 3)))
    c = a[i]
    sy = float(geo.spine_y(c[2]))
    rx, ry = geo.vb_radii
    ang = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    ell = np.stack([geo.spine_x + rx * np.cos(ang), sy + ry * np.sin(ang)], axis=1)
    gap = float(np.linalg.norm(ell - c[:2], axis=1).min()) - geo.aorta_radius[i] - 2.0
    return float(c[0] - geo.spine_x), float(sy - c[1]), gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--aorta", type=int, default=10)
    ap.add_argument("--fraction", action="store_true")
    ap.add_argument("--offset", action="store_true")
    args = ap.parse_args()
    vols, fits, diam, fracs, offs = [], [], [], [], []
    for seed in range(args.subjects):
        geo = build_geometry(draw_subject(np.random.default_rng(seed)), "v2")
        v = chamber_volumes(geo)
        vols.append([v[k] for k in ("LV", "RV", "LA", "RA")])
        h = geo.heart
        fits.append((h.fit_scale, h.fit_squash, h.fit_shift_mm))
        line = f"subject {seed:2d}: " + " ".join(f"{k} {x:5.1f}" for k, x in v.items())
        line += f"  fit: scale {h.fit_scale:.2f} squash {h.fit_squash:.2f} "
        line += f"back {h.fit_shift_mm:5.1f} mm"
        if args.fraction:
            fracs.append(heart_section_fraction(geo))
            line += f"  heart {100 * fracs[-1]:.1f} % of the body"
        if args.offset:
            offs.append([aorta_offset(geo, dz) for dz in (-40.0, 20.0)])
            line += "  desc aorta (left, front, gap) " + " ".join(
                f"{o[0]:.0f}/{o[1]:.0f}/{o[2]:.1f}" for o in offs[-1]
            )
        if seed < args.aorta:
            seg, z = geo.aorta_segment, geo.aorta[:, 2]
            root = int(np.nonzero(seg == 0)[0][-1] * 0.7)
            desc = int(np.argmin(np.abs(z - (geo.av_center[2] - 40)) + 1e3 * (seg != 3)))
            d = [lumen_diameter(geo, root), lumen_diameter(geo, desc)]
            p = [2 * geo.aorta_radius[root], 2 * geo.aorta_radius[desc]]
            diam.append(d + p)
            line += f"  aorta root {d[0]:.1f} ({p[0]:.1f}) desc {d[1]:.1f} ({p[1]:.1f}) mm"
        print(line, flush=True)
    v = np.array(vols)
    for k, name in enumerate(("LV", "RV", "LA", "RA")):
        print(
            f"{name}: median {np.median(v[:, k]):.0f} ml, "
            f"range {v[:, k].min():.0f}-{v[:, k].max():.0f}"
        )
    f = np.array(fits)
    print(
        f"fit: {np.mean(f[:, 0] < 1):.0%} shrunk (min {f[:, 0].min():.2f}), "
        f"{np.mean(f[:, 1] < 1):.0%} flattened (min {f[:, 1].min():.2f}), "
        f"moved back up to {max(f[:, 2].max(), 0):.1f} mm, forwards up to {max(-f[:, 2].min(), 0):.1f} mm"
    )
    if fracs:
        f = 100 * np.array(fracs)
        print(f"heart fraction: median {np.median(f):.1f} %, range {f.min():.1f}-{f.max():.1f} %")
    if offs:
        o = np.array(offs)
        for k, dz in enumerate((-40, 20)):
            print(
                f"descending aorta {dz:+d} mm from the valve: left of the spine's centre "
                f"median {np.median(o[:, k, 0]):.0f} ({o[:, k, 0].min():.0f}-{o[:, k, 0].max():.0f}) mm, "
                f"in front {np.median(o[:, k, 1]):.0f} ({o[:, k, 1].min():.0f}-{o[:, k, 1].max():.0f}) mm, "
                f"wall to bone {o[:, k, 2].min():.1f}-{o[:, k, 2].max():.1f} mm"
            )
    if diam:
        d = np.array(diam)
        err = np.abs(d[:, :2] - d[:, 2:])
        print(
            f"aorta root {np.median(d[:, 0]):.1f} mm ({d[:, 0].min():.1f}-{d[:, 0].max():.1f}), "
            f"descending {np.median(d[:, 1]):.1f} mm ({d[:, 1].min():.1f}-{d[:, 1].max():.1f}); "
            f"measured - parameter at most {err[:, 0].max():.1f} / {err[:, 1].max():.1f} mm"
        )


if __name__ == "__main__":
    main()
