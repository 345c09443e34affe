"""Calcified lymph nodes above the heart: does a model call them coronary calcium?

    .venv/bin/python benchmarks/mediastinal_nodes.py [--model DIR] [--data ../shared/data]
        [--scans lungdx-a0001-b,lungdx-a0001-l] [--seeds 0,1,2] [--nodes 8] [--out F.json]

Calcified mediastinal and hilar lymph nodes (old granulomatous disease) are common in screening
populations. They lie above the heart and beside it (subcarinal, in the aortopulmonary window,
paratracheal, at the hila), in the mediastinal fat, where the left main and the proximal LAD and
LCX are close. No real scan of this project holds one, so this benchmark puts ``--nodes`` spheres
of calcium (4-10 mm, 300-900 HU; :func:`calcscore.realism.hybrid.insert_lesions`, as the slice
thickness and a soft kernel's blur see them) into the fat (-150..-40 HU over 3 x 3 voxels in
plane) of each non-contrast real scan's mediastinum (the safety net's aortic zone), at least
15 mm apart, from the slice above the last heart slice that ``data/real_negatives/hearts.json``
outlines up to ``ABOVE_HEART_MM`` above it. None of them is calcium that calcscore scores. The
model runs once per scan, with its safety net; the table counts the nodes labelled coronary,
labelled aortic or valve, and the CAC Agatston the labels on them add, with and without the net.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from calcscore.inference import InferenceOptions, Model, resolve_precision, segment
from calcscore.io import read_volume, write_text_atomic
from calcscore.labels import Label
from calcscore.realism.hybrid import Lesion, insert_lesions
from calcscore.regions import find_chest_regions
from calcscore.risk import risk_category
from calcscore.scoring import agatston
from calcscore.volume import CTVolume, LabelVolume

HERE = Path(__file__).resolve().parent
HEARTS = HERE.parent / "data" / "real_negatives" / "hearts.json"
CORONARY = (int(Label.LAD), int(Label.LCX), int(Label.RCA))
ABOVE_HEART_MM = 50.0
MIN_APART_MM = 15.0
FAT_HU = (-150.0, -40.0)


def nodes(volume: CTVolume, heart_z1: int, n: int, rng: np.random.Generator) -> list[Lesion]:
    """``n`` calcified nodes in the mediastinal fat above the heart's last slice ``heart_z1``
    (z runs to the head: the standard layout of every shared scan)."""
    zone = find_chest_regions(volume).aorta
    fat = ndimage.uniform_filter(volume.hu.astype(np.float32), size=(1, 3, 3))
    ok = zone & (fat > FAT_HU[0]) & (fat < FAT_HU[1])
    top = heart_z1 + int(np.ceil(ABOVE_HEART_MM / volume.spacing_mm[0]))
    ok[: heart_z1 + 1] = False
    ok[top + 1 :] = False
    pos = np.argwhere(ok) * np.asarray(volume.spacing_mm)
    out: list[Lesion] = []
    for i in rng.permutation(len(pos)):
        if all(np.linalg.norm(pos[i] - np.asarray(le.centre_mm)) >= MIN_APART_MM for le in out):
            out.append(Lesion(tuple(pos[i]), rng.uniform(4.0, 10.0), rng.uniform(300.0, 900.0)))
            if len(out) == n:
                break
    return out


def score(volume: CTVolume, ref: np.ndarray, model: Model) -> dict:
    """With and without the safety net: nodes labelled coronary, labelled aortic or valve, the
    CAC their labels add, and the scan's CAC and category."""
    opts = InferenceOptions(
        device="cpu", bf16=resolve_precision("auto", "cpu"), channels_last=True, safety_net=True
    )
    seg = segment(volume, model, opts)
    off = seg.labels_at(volume, model.cnn2_thresholds, rim_fill=model.rim_fill, safety_net=False)
    out: dict = {"nodes": int(ref.max())}
    for name, lab in (("net", seg.labels.labels), ("without net", off.labels)):
        hit = [lab[ref == k] for k in range(1, int(ref.max()) + 1)]
        on_nodes = np.where(np.isin(lab, CORONARY) & (ref > 0), int(Label.LAD), 0)
        cac = float(agatston(volume, LabelVolume.like(volume, lab.astype(np.uint8))).cac_agatston)
        out[name] = {
            "coronary": sum(bool(np.isin(h, CORONARY).any()) for h in hit),
            "aortic or valve": sum(
                bool((h > 0).any() and not np.isin(h, CORONARY).any()) for h in hit
            ),
            "cac_added": round(
                float(
                    agatston(
                        volume, LabelVolume.like(volume, on_nodes.astype(np.uint8))
                    ).cac_agatston
                ),
                1,
            ),
            "cac": round(cac, 1),
            "category": risk_category(cac),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--scans", default="lungdx-a0001-b,lungdx-a0001-l")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--out", default=None, help="write the figures to this JSON file")
    a = ap.parse_args(argv)
    hearts = json.loads(HEARTS.read_text())
    model = Model.load(a.model)
    rows: dict = {}
    totals: dict = {}
    print(
        f"{'scan':<16}{'seed':>5}  {'variant':<12}{'coronary':>9}{'aortic/valve':>13}"
        f"{'CAC added':>10}{'CAC (cat)':>14}"
    )
    for name in a.scans.split(","):
        scan = read_volume(Path(a.data) / "open-chest-ct" / f"{name}.nii.gz")
        for seed in (int(s) for s in a.seeds.split(",")):
            lesions = nodes(scan, hearts[name]["z"][1], a.nodes, np.random.default_rng(seed))
            volume, ref = insert_lesions(scan, lesions)
            r = rows[f"{name} seed {seed}"] = score(volume, ref, model)
            r["lesions"] = [vars(le) for le in lesions]
            for v in ("net", "without net"):
                t = totals.setdefault(
                    v,
                    {
                        "coronary": 0,
                        "aortic or valve": 0,
                        "cac_added": 0.0,
                        "n": 0,
                        "category_changed": 0,
                        "scans": 0,
                    },
                )
                t["n"] += r["nodes"]
                t["scans"] += 1
                for k in ("coronary", "aortic or valve", "cac_added"):
                    t[k] += r[v][k]
                print(
                    f"{name:<16}{seed:>5}  {v:<12}{r[v]['coronary']:>9}{r[v]['aortic or valve']:>13}"
                    f"{r[v]['cac_added']:>10.0f}{r[v]['cac']:>9.0f} ({r[v]['category']})",
                    flush=True,
                )
    print()
    for v, t in totals.items():
        print(
            f"{v:<12} nodes called coronary {t['coronary']}/{t['n']}, aortic or valve "
            f"{t['aortic or valve']}/{t['n']}, CAC Agatston added {t['cac_added']:.0f} "
            f"over {t['scans']} scans"
        )
    if a.out:
        write_text_atomic(Path(a.out), json.dumps({"cases": rows, "totals": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
