"""Models on real chest CT with synthetic coronary calcifications inserted (hybrid images).

    .venv/bin/python benchmarks/hybrid_lesions.py --out results.json \
        --model shipped=calcscore/models/default [--model candidate=DIR] \
        [--data ../shared/data] [--scans a,b] [--seeds 0] [--lesions 12] [--elongated 0.5] \
        [--figures DIR]

No real scan of this project has calcium annotations. Here real chest CTs of
``DATA/open-chest-ct`` get ``--lesions`` spheres of calcium each (2.5-5 mm, 400-1000 HU, as the
scan's slice thickness and a soft kernel's blur see them; :mod:`calcscore.realism.hybrid`) in
the epicardial fat on the surface of the heart, where coronary arteries run, at least 20 mm
apart, inside the heart that ``data/real_negatives/hearts.json`` outlines. Every scan is scored
whole and cut to a heart-only field of view (200 mm, as an ECG-gated calcium scan), with and
without the safety net, by every model in the same run. Per inserted lesion: labelled coronary
(found), labelled aortic or valve calcium (wrong label), or not labelled (missed); per scan the
CAC Agatston of the model against that of the inserted lesions alone, the risk categories and
the pooled CAC voxel F1 against the inserted lesions (any real calcium labelled counts against);
and the heart-only cuts' lesions found by their distance from the cut's nearest slice.

The scans: the two non-contrast reconstructions of lungdx-a0001 (5 mm; -b is a real negative of
the shipped recipe, whose copies carry hybrid positives, at other sites), and two
contrast-enhanced scans of patients that no recipe trains on (lidc-idri-0001, 2.5 mm;
qin-lsc-0028, 3 mm), whose epicardial fat is as real: there only the per-lesion figures mean
anything (their blood is above 130 HU and gets labelled too). The sites are drawn automatically;
the figures show every one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from calcscore.inference import InferenceOptions, Model, resolve_precision, segment
from calcscore.io import read_volume, write_text_atomic
from calcscore.labels import Label
from calcscore.realism.hybrid import Lesion, heart_only_cut, hybrid_scan
from calcscore.risk import risk_category
from calcscore.scoring import agatston
from calcscore.volume import CTVolume, LabelVolume

HERE = Path(__file__).resolve().parent
HEARTS = HERE.parent / "data" / "real_negatives" / "hearts.json"
SCANS = ("lungdx-a0001-b", "lungdx-a0001-l", "lidc-idri-0001", "qin-lsc-0028")
CONTRAST = ("lidc-idri-0001", "qin-lsc-0028")
CORONARY = (int(Label.LAD), int(Label.LCX), int(Label.RCA))


def per_lesion(ref: np.ndarray, labels: np.ndarray, n: int) -> list[str]:
    out = []
    for k in range(1, n + 1):
        mine = labels[ref == k]
        if mine.size == 0:
            out.append("invisible")  # below 130 HU everywhere on this grid
            continue
        cor, other = np.isin(mine, CORONARY).sum(), ((mine > 0) & ~np.isin(mine, CORONARY)).sum()
        out.append("found" if cor and cor >= other else "wrong label" if other else "missed")
    return out


def edge_mm(ref: np.ndarray, n: int, slice_mm: float) -> list[float | None]:
    """Per lesion, how far (mm) its nearest slice lies from the scan's first or last slice."""
    boxes = ndimage.find_objects(ref, max_label=n)  # one pass over the scan, not one per lesion
    return [
        None if b is None else float(min(b[0].start, len(ref) - b[0].stop) * slice_mm)
        for b in boxes
    ]


def cac_of(volume: CTVolume, labels: np.ndarray) -> float:
    lv = LabelVolume.like(volume, labels.astype(np.uint8))
    return float(agatston(volume, lv).cac_agatston)


def score_case(volume: CTVolume, ref: np.ndarray, n: int, models: dict[str, Model]) -> dict:
    truth = np.where(ref > 0, int(Label.LAD), 0)
    cac_ref = cac_of(volume, truth)
    out: dict = {"reference_cac": round(cac_ref, 1), "reference_category": risk_category(cac_ref)}
    out["edge_mm"] = edge_mm(ref, n, volume.spacing_mm[0])
    opts = InferenceOptions(
        device="cpu", bf16=resolve_precision("auto", "cpu"), channels_last=True, safety_net=True
    )
    for tag, model in models.items():
        seg = segment(volume, model, opts)
        off = seg.labels_at(
            volume, model.cnn2_thresholds, rim_fill=model.rim_fill, safety_net=False
        )
        for net, lab in (("with_net", seg.labels.labels), ("without_net", off.labels)):
            cac = cac_of(volume, lab)
            pred, true = np.isin(lab, CORONARY), ref > 0
            out.setdefault(tag, {})[net] = {
                "lesions": per_lesion(ref, lab, n),
                # CAC voxels against the inserted lesions' (the pooled voxel F1's counts)
                "voxels": {
                    "tp": int((pred & true).sum()),
                    "fp": int((pred & ~true).sum()),
                    "fn": int((~pred & true).sum()),
                },
                "cac": round(cac, 1),
                "category": risk_category(cac),
            }
    return out


def summary(result: dict) -> str:
    lines = [f"{'case':<40}{'model':>11}  net  found wrong missed   CAC (ref)  category (ref)"]
    totals: dict = {}
    for case, r in result["cases"].items():
        group = "contrast" if r.get("contrast") else "non-contrast"
        for tag in result["models"]:
            for net in ("with_net", "without_net"):
                m = r[tag][net]
                c = {k: m["lesions"].count(k) for k in ("found", "wrong label", "missed")}
                t = totals.setdefault(
                    (tag, net, group), dict.fromkeys(c, 0) | {"right": 0, "tp": 0, "fp": 0, "fn": 0}
                )
                t.update({k: t[k] + v for k, v in (c | m.get("voxels", {})).items()})
                t["right"] += m["category"] == r["reference_category"]
                t["cases"] = t.get("cases", 0) + 1
                lines.append(
                    f"{case:<40}{tag:>11}  {'on ' if net == 'with_net' else 'off'}  "
                    f"{c['found']:>5} {c['wrong label']:>5} {c['missed']:>6}  "
                    + (
                        f"{m['cac']:>6.0f} ({r['reference_cac']:.0f})  {m['category']} "
                        f"({r['reference_category']})"
                        if group == "non-contrast"
                        else "(contrast: CAC n/a)"
                    )
                )
    lines.append("")
    lines += by_edge(result)
    for (tag, net, group), t in totals.items():
        n = t["found"] + t["wrong label"] + t["missed"]
        lines.append(
            f"{tag:>11} {net:<12} {group:<13} found {t['found']}/{n} ({t['found'] / max(n, 1):.0%})"
            f", wrong label {t['wrong label']}, missed {t['missed']}"
            + (
                f"; right category {t['right']}/{t['cases']}; pooled CAC voxel F1 "
                f"{2 * t['tp'] / max(2 * t['tp'] + t['fp'] + t['fn'], 1):.2f}"
                if group == "non-contrast"
                else ""
            )
        )
    return "\n".join(lines)


#: bins of a lesion's distance (mm) from the nearest end of a heart-only cut
EDGE_BINS = ((0.0, 25.0), (25.0, 50.0), (50.0, float("inf")))


def by_edge(result: dict) -> list[str]:
    """Lesions found (net on) in the heart-only cuts by their distance from the cut's nearest
    end: the sagittal and coronal views of a lesion near an end see mostly outside."""
    lines = []
    for tag in result["models"]:
        parts = []
        for lo, hi in EDGE_BINS:
            found = n = 0
            for case, r in result["cases"].items():
                if "heart-only" not in case or "edge_mm" not in r:
                    continue
                for d, what in zip(r["edge_mm"], r[tag]["with_net"]["lesions"]):
                    if d is not None and lo <= d < hi:
                        n += 1
                        found += what == "found"
            span = f"{lo:.0f}+" if hi == float("inf") else f"{lo:.0f}-{hi:.0f}"
            parts.append(f"{span} mm {found}/{n}")
        lines.append(
            f"{tag:>11} heart-only, found by distance from the cut's end: " + ", ".join(parts)
        )
    return lines


def sites_figure(volume: CTVolume, lesions: list[Lesion], heart: dict, path: Path) -> None:
    from calcscore.viz import _pyplot

    plt = _pyplot()
    zs = sorted({int(round(le.centre_mm[0] / volume.spacing_mm[0])) for le in lesions})
    cols = 4
    fig, axes = plt.subplots((len(zs) + cols - 1) // cols, cols, figsize=(16, 4 * -(-len(zs) // 4)))
    (y0, y1), (x0, x1) = heart["y"], heart["x"]
    for ax, z in zip(np.ravel(axes), zs):
        ax.imshow(volume.hu[z, y0:y1, x0:x1], cmap="gray", vmin=-200, vmax=400)
        for k, le in enumerate(lesions, 1):
            if int(round(le.centre_mm[0] / volume.spacing_mm[0])) == z:
                y, x = (
                    le.centre_mm[1] / volume.spacing_mm[1],
                    le.centre_mm[2] / volume.spacing_mm[2],
                )
                ax.text(x - x0 + 4, y - y0 - 4, str(k), color="r", fontsize=9)
        ax.set_title(f"slice {z}", fontsize=8)
        ax.axis("off")
    for ax in np.ravel(axes)[len(zs) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--scans", default=",".join(SCANS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--lesions", type=int, default=12)
    ap.add_argument("--elongated", type=float, default=0.0, help="share of capsules (0-1)")
    ap.add_argument("--figures", default=None)
    args = ap.parse_args(argv)
    models = {m.partition("=")[0]: Model.load(m.partition("=")[2] or None) for m in args.model}
    hearts = json.loads(HEARTS.read_text())
    result: dict = {"models": {m.partition("=")[0]: m.partition("=")[2] for m in args.model}}
    result["elongated"] = args.elongated
    result["cases"], result["lesions"] = {}, {}
    t = time.perf_counter()
    for k, name in enumerate(args.scans.split(",")):
        scan = read_volume(Path(args.data) / "open-chest-ct" / f"{name}.nii.gz")
        heart = hearts[name]
        for seed in (int(s) for s in args.seeds.split(",")):
            rng = np.random.default_rng([2026, seed, k])
            hybrid, ref, _, lesions = hybrid_scan(
                scan, heart, args.lesions, rng, elongated=args.elongated
            )
            result["lesions"][f"{name} seed {seed}"] = [vars(le) for le in lesions]
            if args.figures:
                Path(args.figures).mkdir(parents=True, exist_ok=True)
                sites_figure(scan, lesions, heart, Path(args.figures) / f"{name}_seed{seed}.png")
            cut, ref_cut = heart_only_cut(hybrid, ref, lesions, heart)
            for case, vol, r in ((name, hybrid, ref), (f"{name} heart-only", cut, ref_cut)):
                key = f"{case} seed {seed}"
                result["cases"][key] = score_case(vol, r, len(lesions), models)
                result["cases"][key]["contrast"] = name in CONTRAST
                print(f"{key}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    result["seconds"] = round(time.perf_counter() - t)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=1))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
