"""Calcified granulomas below the heart: does a model call them coronary or aortic calcium?

    .venv/bin/python benchmarks/abdomen_granulomas.py [--model DIR] [--data ../shared/data]
        [--scans lungdx-a0001-b,lungdx-a0001-l] [--seeds 0,1,2] [--granulomas 12] [--out F.json]

Calcified granulomas of the liver and spleen (old histoplasmosis, tuberculosis) are common in
screening populations and lie in the upper abdomen, which a chest CT shows below the heart. No
real scan of this project holds one, so this benchmark puts ``--granulomas`` spheres of calcium
(4-8 mm, 350-700 HU; :func:`calcscore.realism.hybrid.insert_lesions`, as the slice thickness and
a soft kernel's blur see them) into the soft tissue (20-90 HU) of each non-contrast real scan,
at least 15 mm apart, below the first slice of the heart that ``data/real_negatives/hearts.json``
outlines less 10 mm, inside the lungs' convex hull (where the upper abdomen lies between the
lung bases; the safety net's first heart region: no heart bottom, 20 mm in front of the hull).
None of them is calcium of any label that calcscore scores. The model runs once per scan; the
table counts the granulomas given any label, and the CAC Agatston those labels add, without the
safety net, with the net's first heart region (``heart_bottom_margin_mm=None``,
``anterior_mm=20``), with its heart bottom but 20 mm in front, and with the net as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from calcscore.inference import InferenceOptions, Model, resolve_precision, segment
from calcscore.io import read_volume, write_text_atomic
from calcscore.labels import Label
from calcscore.realism.hybrid import Lesion, insert_lesions
from calcscore.regions import apply_safety_net, find_chest_regions
from calcscore.scoring import agatston
from calcscore.volume import CTVolume, LabelVolume

HERE = Path(__file__).resolve().parent
HEARTS = HERE.parent / "data" / "real_negatives" / "hearts.json"
CORONARY = (int(Label.LAD), int(Label.LCX), int(Label.RCA))
BELOW_HEART_MM = 10.0
MIN_APART_MM = 15.0


def granulomas(volume: CTVolume, heart_z0: int, n: int, rng: np.random.Generator) -> list[Lesion]:
    """``n`` spheres of calcium in the soft tissue below the heart, inside the lungs' hull (the
    safety net's first heart region: no heart bottom, 20 mm in front of the hull)."""
    hull = find_chest_regions(volume, heart_bottom_margin_mm=None, anterior_mm=20.0).heart
    z_max = heart_z0 - int(np.ceil(BELOW_HEART_MM / volume.spacing_mm[0]))
    ok = hull & (volume.hu > 20) & (volume.hu < 90)
    ok[max(0, z_max) :] = False
    ok[:1] = False
    pos = np.argwhere(ok) * np.asarray(volume.spacing_mm)
    out: list[Lesion] = []
    for i in rng.permutation(len(pos)):
        if all(np.linalg.norm(pos[i] - np.asarray(le.centre_mm)) >= MIN_APART_MM for le in out):
            out.append(Lesion(tuple(pos[i]), rng.uniform(4.0, 8.0), rng.uniform(350.0, 700.0)))
            if len(out) == n:
                break
    return out


def score(volume: CTVolume, ref: np.ndarray, model: Model) -> dict:
    """Per safety-net variant: granulomas labelled (coronary, aortic or valve) and CAC added."""
    opts = InferenceOptions(
        device="cpu", bf16=resolve_precision("auto", "cpu"), channels_last=True, safety_net=False
    )
    off = segment(volume, model, opts).labels.labels
    variants = {"without net": off}
    first = find_chest_regions(volume, heart_bottom_margin_mm=None, anterior_mm=20.0)
    variants["net, no heart bottom"] = apply_safety_net(off, first)[0]
    wide = find_chest_regions(volume, anterior_mm=20.0)
    variants["net, 20 mm in front"] = apply_safety_net(off, wide)[0]
    variants["net"] = apply_safety_net(off, find_chest_regions(volume))[0]
    n = int(ref.max())
    out = {}
    for name, lab in variants.items():
        hit = [lab[ref == k] for k in range(1, n + 1)]
        cac = np.where(np.isin(lab, CORONARY) & (ref > 0), int(Label.LAD), 0).astype(np.uint8)
        lv = LabelVolume.like(volume, cac)
        out[name] = {
            "coronary": sum(bool(np.isin(h, CORONARY).any()) for h in hit),
            "any label": sum(bool((h > 0).any()) for h in hit),
            "cac_added": round(float(agatston(volume, lv).cac_agatston), 1),
        }
    return out | {"granulomas": n}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--scans", default="lungdx-a0001-b,lungdx-a0001-l")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--granulomas", type=int, default=12)
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    a = ap.parse_args(argv)
    hearts = json.loads(HEARTS.read_text())
    model = Model.load(a.model)
    rows, totals = {}, {}
    print(
        f"{'scan':<16}{'seed':>5}  {'variant':<22}{'coronary':>9}{'any label':>10}{'CAC added':>10}"
    )
    for name in a.scans.split(","):
        scan = read_volume(Path(a.data) / "open-chest-ct" / f"{name}.nii.gz")
        for seed in (int(s) for s in a.seeds.split(",")):
            rng = np.random.default_rng(seed)
            lesions = granulomas(scan, hearts[name]["z"][0], a.granulomas, rng)
            volume, ref = insert_lesions(scan, lesions)
            r = rows[f"{name} seed {seed}"] = score(volume, ref, model)
            for v in (k for k in r if k != "granulomas"):
                t = totals.setdefault(v, {"coronary": 0, "any label": 0, "cac_added": 0.0, "n": 0})
                t["n"] += r["granulomas"]
                for k in ("coronary", "any label", "cac_added"):
                    t[k] += r[v][k]
                print(
                    f"{name:<16}{seed:>5}  {v:<22}{r[v]['coronary']:>9}{r[v]['any label']:>10}"
                    f"{r[v]['cac_added']:>10.0f}",
                    flush=True,
                )
    print()
    for v, t in totals.items():
        print(
            f"{v:<22} granulomas called coronary {t['coronary']}/{t['n']}, given any label "
            f"{t['any label']}/{t['n']}, CAC Agatston added {t['cac_added']:.0f}"
        )
    if a.out:
        write_text_atomic(Path(a.out), json.dumps({"cases": rows, "totals": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
