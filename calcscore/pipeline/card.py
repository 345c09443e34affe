"""model.json and MODEL_CARD.md of a built model, written from the stages' results only.

:func:`model_info` gathers what the stages recorded (no key is written by hand); :func:`card`
renders the card from model.json alone, in the sections of a model-zoo card, short enough for
two screens: description; intended use and misuse; training data; training procedure; inputs
and outputs; figures on phantoms and on real scans; limitations; how to rebuild it.
"""

from __future__ import annotations

import json
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from calcscore import __version__
from calcscore.lesions import VOTE_MAJORITY
from calcscore.phantom import GENERATOR_VERSION
from calcscore.phantom.cohort import participant_id
from calcscore.pipeline.recipe import participants
from calcscore.regions import (
    FAINT_PEAK_HU,
    FAINT_WALL_MM,
    HEART_BOTTOM_MARGIN_MM,
    HEART_TOP_MARGIN_MM,
)

CARD = "MODEL_CARD.md"
#: The pooled F1 this project aims at (CAC, TAC and each coronary artery).
TARGET_F1 = 0.85
TARGET_GROUPS = ("CAC", "TAC", "LAD", "LCX", "RCA")
#: Mean false coronary calcium per whole-chest scan (mm^3) above which the risk category of a
#: whole-chest scan is called unreliable (about 1 mm^3 moves the Agatston score by 1-4).
WHOLE_CHEST_FP_MM3 = 25.0


def _ids(r: list[int], size: str) -> str:
    ids = [participant_id(i) for i in participants(r)]
    if not ids:
        return ""
    return (ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}") + f" ({size})"


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, int | float | str | bool) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def real_scan_figures(path: Path, columns: list[str]) -> dict[str, Any]:
    """A small table from a JSON file of figures per real scan (``{scan: {...}}``, e.g.
    benchmarks/real_ct_audit.py's audit.json): ``columns`` (dotted keys; empty: the first four
    scalar ones of the first scan)."""
    data = json.loads(Path(path).read_text())
    rows = {name: _flatten(r) for name, r in data.items() if isinstance(r, dict)}
    if not columns and rows:
        columns = list(next(iter(rows.values())))[:4]
    return {
        "source": Path(path).name,
        "columns": list(columns),
        "scans": {name: {c: r.get(c) for c in columns} for name, r in rows.items()},
    }


def _training(ctx) -> dict[str, Any]:
    ph, res = ctx.recipe.phantoms, ctx.results
    c1, c2 = res["cnn1"], res["cnn2"]
    return {
        "training_participants": {
            "ids": res["phantoms"]["ids"],
            "whole_chest": res["phantoms"]["whole_chest"],
            "gated": res["phantoms"].get("gated", 0),
            "whole_chest_5mm": res["phantoms"].get("whole_chest_5mm", 0),
            "heart_region": res["phantoms"]["heart_region"],
            "heart_region_size": ph.train_size,
            "validation": res["phantoms"]["validation"],
        },
        "test_participants": _ids(ph.test, ph.test_size),
        "cnn1_config": c1["config"],
        "cnn2_config": c2["config"],
        "kept_iterations": {"cnn1": c1["kept_iteration"], "cnn2": c2["kept_iteration"]},
        "trained_iterations": {"cnn1": c1["trained_iterations"], "cnn2": c2["trained_iterations"]},
        "initialised_from": {"cnn1": c1["initialised_from"], "cnn2": c2["initialised_from"]},
        "cnn2_training_scans": c2.get("training_scans", []),  # none where it was reused
        "cnn2_validation_scans": c2.get("validation_scans", []),
        "hardware": {"cnn1": c1["hardware"], "cnn2": c2["hardware"]},
    }


def trained_on(ctx) -> str:
    """What the networks learned from, in words: phantoms, and the real negatives (and their
    synthetic lesions) where the recipe has them."""
    rn = ctx.recipe.real_negatives
    if rn is None or not rn.scans:
        return "synthetic phantoms only (calcscore.phantom)"
    text = (
        f"synthetic phantoms (calcscore.phantom) and {len(rn.scans)} real chest CT"
        f"{'s' if len(rn.scans) > 1 else ''} without calcium annotations ({', '.join(rn.scans)}) "
        "as negatives outside the heart and great vessels"
    )
    if rn.hybrid:
        n = (ctx.results.get("real_negatives") or {}).get("hybrid_lesions", 0)
        text += (
            f", and {rn.hybrid['copies']} copies of each with {n} synthetic coronary lesions in all"
        )
        share = float(rn.hybrid.get("elongated", 0))
        if share:
            text += f", {share:.0%} of them capsules 5-20 mm long as heavy calcification"
        if rn.hybrid.get("artery") == "any":
            text += " (taught as coronary calcium without naming the artery)"
    return text


def model_info(ctx) -> dict[str, Any]:
    """model.json of the build in ``ctx`` (a :class:`calcscore.pipeline.stages.Context` whose
    stages up to evaluation are done)."""
    recipe, ph = ctx.recipe, ctx.recipe.phantoms
    info: dict[str, Any] = {
        "title": recipe.card.title,
        "description": recipe.card.description,
        "trained_on": trained_on(ctx),
        "command": f"calcscore build-model recipe.toml --out OUT  # recipe {recipe.name!r}",
        "calcscore": __version__,
        "phantom_generator": GENERATOR_VERSION,
        "seed": ph.seed,
        **_training(ctx),
        "seconds": {s: round(t, 1) for s, t in ctx.seconds.items()},
        "torch": torch.__version__,
        "stages": dict(ctx.hashes),
        "recipe": tomllib.loads(recipe.text),
    }
    # every key the card reads, null where its stage chose nothing (the defaults of inference)
    info.update(
        cnn2_thresholds=None,
        thresholds_given=False,
        rim_fill=True,
        rim_sigmas=None,
        lesion_fill=None,
        lesion_fill_hu=None,
        test_metrics=None,
        test_metrics_whole_chest=None,
        test_metrics_gated=None,
        real_scan_figures=None,
    )
    for stage in ("thresholds", "rim", "evaluation"):
        info.update(ctx.results.get(stage, {}))
    info["test_participants_whole_chest"] = _ids(ph.whole_chest_test, "full")
    info["test_participants_gated"] = _ids(ph.gated_test, "gated")
    figures = recipe.resolve(recipe.card.real_scan_figures)
    if figures is not None:
        info["real_scan_figures"] = real_scan_figures(figures, recipe.card.real_scan_columns)
    return info


def fmt(v: Any, pct: bool = False) -> str:
    """A figure with two decimals (a percentage with one), "n/a" where undefined."""
    if v is None or v != v:
        return "n/a"
    return f"{100 * v:.1f}" if pct else f"{v:.2f}"


def _network(info: dict[str, Any], name: str) -> str:
    c = info[f"{name}_config"]
    shape = (
        f"{c['width']} filters, largest dilation {c['max_dilation']} (receptive field {4 * c['max_dilation'] + 3} px)"
        if name == "cnn1"
        else f"filters x{c['width_scale']}, dense {c['dense_width']}"
    )
    start = info["initialised_from"][name]
    if info["trained_iterations"][name] == 0 and start:
        return (
            f"- {name.upper()}: {c['preset']} preset, {shape}, patches {c['patch_size']} px: kept "
            f"unchanged from {Path(start).name} (not trained in this build)."
        )
    return (
        f"- {name.upper()}: {c['preset']} preset, {shape}, patches {c['patch_size']} px, batch {c['batch_size']}, "
        f"Adam {c['learning_rate']:g}, {info['trained_iterations'][name]:,} iterations (iteration "
        f"{info['kept_iterations'][name]:,} kept, best {c['select_by'].replace('val_', 'validation ')}), "
        f"{c['precision']} on {info['hardware'][name]['gpu'] or info['hardware'][name]['device']}"
        + (f", started from {Path(start).name}" if start else "")
        + "."
    )


def _phantom_rows(metrics: dict[str, Any]) -> list[str]:
    rows = [
        "| reconstruction | scans | CAC F1 | LAD F1 | LCX F1 | RCA F1 | TAC F1 | AV F1 | MV F1 | "
        "CAC sensitivity % | CAC FP mm³/scan | risk kappa |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = ("CAC", "LAD", "LCX", "RCA", "TAC", "AV", "MV")
    for kernel in ("soft", "sharp"):
        r = metrics.get(kernel)
        if r:
            rows.append(
                f"| {kernel} | {r['n_scans']} | "
                + " | ".join(fmt(r.get(g, {}).get("f1_pooled")) for g in groups)
                + f" | {fmt(r['CAC']['sensitivity_pooled'], True)} | {fmt(r['CAC']['fp_volume_mm3_mean'])} | "
                f"{fmt(r.get('kappa'))} |"
            )
    return rows


def _figures(info: dict[str, Any]) -> list[str]:
    lines = [
        "## Figures",
        "",
        f"Held-out phantoms {info['test_participants']} (voxel level, pooled over scans):",
        "",
    ]
    m = info["test_metrics"]
    lines += _phantom_rows(m) if m else ["Not evaluated (the recipe's [evaluation] is off)."]
    for key, name in (("whole_chest", "Whole-chest"), ("gated", "Gated heart-only")):
        if info.get(f"test_metrics_{key}"):
            lines += [
                "",
                f"{name} phantoms {info[f'test_participants_{key}']}:",
                "",
                *_phantom_rows(info[f"test_metrics_{key}"]),
            ]
    th = info["cnn2_thresholds"]
    lines += [
        "",
        "CNN2 thresholds: "
        + thresholds_text(th, info["thresholds_given"])
        + "; rim fill: "
        + (
            f"margin {info['rim_sigmas']:g} noise SDs"
            if info["rim_fill"] and info["rim_sigmas"]
            else "default margin"
            if info["rim_fill"]
            else "off"
        )
        + (
            f"; lesion fill: a coronary lesion (>= {info['lesion_fill_hu']:g} HU) "
            f"{info['lesion_fill']:g} labelled is labelled whole" + fill_chosen_on(info)
            if info.get("lesion_fill")
            else ""
        )
        + "; artery vote: a coronary lesion takes the artery of at least "
        + f"{Fraction(VOTE_MAJORITY).limit_denominator(12)} of its voxels.",
    ]
    real = info["real_scan_figures"]
    lines += [
        "",
        "Real scans"
        + (
            f" ({real['source']}):"
            if real
            else ": none measured for this model "
            "(the recipe's `[card] real_scan_figures` names a JSON file of figures)."
        ),
        "",
    ]
    if real:
        cols = real["columns"]
        lines += ["| scan | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for name, r in real["scans"].items():
            lines.append(
                f"| {name} | "
                + " | ".join(fmt(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols)
                + " |"
            )
    return lines


def fill_chosen_on(info: dict) -> str:
    """Where the lesion fill was chosen: " (chosen on N validation phantoms and M hybrids)"."""
    names = (info.get("lesion_fill_choice") or {}).get("participants") or []
    hybrids = sum(n.startswith("real-") for n in names)
    cuts = sum(n.startswith("real-") and n.endswith("-heart-only") for n in names)
    if not names:
        return ""
    text = f" (chosen on {len(names) - hybrids} validation phantoms"
    if hybrids:
        text += f" and {hybrids - cuts} copies of the real negatives with synthetic lesions"
    if cuts:
        text += f", {cuts} of them also cut heart-only"
    return text + ")"


def thresholds_text(th: dict[str, float] | None, given: bool) -> str:
    """CNN2's thresholds as the card names them, and where they came from."""
    if not th:
        return "the paper's 0.5"
    origin = "given by the recipe" if given else "chosen on validation scans"
    return ", ".join(f"{g} {t:.2f}" for g, t in th.items()) + f" ({origin})"


def _limits(info: dict[str, Any]) -> list[str]:
    out = [
        "- No real scan with calcium annotations trained or tested it: real scans differ (scanner, noise "
        "texture, motion, stents, contrast); expect lower accuracy on them until validated (`calcscore evaluate`).",
        "- The test set is small; AV and MV figures rest on the valve calcium those participants happen to have.",
    ]
    valves = info.get("test_metrics") or {}
    if "soft" in valves:
        f1 = (f"{g} F1 {valves['soft'].get(g, {}).get('f1_pooled') or 0:.2f}" for g in ("AV", "MV"))
        out[-1] += f" Heart region, soft: {', '.join(f1)}."
    out.append(
        "- The safety net (on by default) finds the heart region from the lungs, not from the networks: it ends "
        f"{HEART_BOTTOM_MARGIN_MM:g} mm below where the lungs widen from their bases, 1-3 cm below the heart, and a "
        "calcified granuloma of the liver there, or calcified costal cartilage where it touches the heart's front, "
        "can still be called coronary (`benchmarks/README.md`). Its top lies "
        f"{HEART_TOP_MARGIN_MM:g} mm above the heart's widest rows, where the coronary ostia lie: a calcified "
        "lymph node beside the heart below it can be called coronary, a coronary calcification above it (an "
        "unusually high origin) is removed. It also removes a faint lesion (no voxel of "
        f"{FAINT_PEAK_HU:g} HU or more) mostly within {FAINT_WALL_MM:g} mm of air in the mediastinum, as a sharp "
        "kernel's edge: a small, faint true calcification against the lung goes with it."
    )
    for key, name in (
        ("test_metrics", "heart-region"),
        ("test_metrics_whole_chest", "whole-chest"),
        ("test_metrics_gated", "gated heart-only"),
    ):
        m = info.get(key) or {}
        low = [
            f"{g} {k} {m[k][g]['f1_pooled'] or 0:.3f}"
            for k in ("soft", "sharp")
            if k in m
            for g in TARGET_GROUPS
            if g in m[k] and (m[k][g].get("f1_pooled") or 0) < TARGET_F1
        ]
        if low:
            out.append(
                f"- Below the target pooled F1 of {TARGET_F1} on the {name} test scans: "
                + ", ".join(low)
                + "."
            )
        if key.endswith("whole_chest") and any(
            m[k]["CAC"]["fp_volume_mm3_mean"] > WHOLE_CHEST_FP_MM3
            for k in ("soft", "sharp")
            if k in m
        ):
            out.append(
                "- Whole-chest scans: over 25 mm³ of false coronary calcium per scan; their risk "
                "category is not reliable with this model."
            )
    return out


def card(info: dict[str, Any]) -> str:
    """MODEL_CARD.md from model.json ``info`` alone."""
    tp = info["training_participants"]
    lines = [
        f"# {info['title']}",
        "",
        info["description"] or "A calcscore model (Lessmann et al., IEEE TMI 2018).",
        "",
        "## Description",
        "CNN1 (three dilated 2D subnetworks, axial/sagittal/coronal) labels every voxel >= 130 HU as background, "
        "LAD, LCX, RCA, TAC, AV or MV; CNN2 (65 x 65 px, 2.5D) removes CNN1's false positives. "
        f"**Learned from {info['trained_on']}**: no real scan with calcium annotations was used to "
        "train or test it.",
        "",
        "## Intended use and misuse",
        "- For: research, teaching and trying the method on non-contrast low-dose chest CT"
        + (
            " and ECG-gated heart-only calcium-scoring CT."
            if tp.get("gated")
            else ", not ECG-gated."
        ),
        "- Not for: clinical decisions, or any real-scan use before validation on annotated scans of that "
        "scanner and protocol; not for contrast-enhanced CT"
        + ("." if tp.get("gated") else " or ECG-gated cardiac CT."),
        "",
        "## Training data",
        f"- Phantoms of generator {info['phantom_generator']} (calcscore {info['calcscore']}), seed {info['seed']}: "
        f"participants {tp['ids']}, {tp['whole_chest']} whole-chest"
        + (f" ({tp['whole_chest_5mm']} with 5 mm slices)" if tp.get("whole_chest_5mm") else "")
        + (f", {tp['gated']} gated heart-only" if tp.get("gated") else "")
        + f" and {tp['heart_region']} heart-region "
        f"({tp['heart_region_size']}) scans, soft and sharp each; validation participants: {', '.join(tp['validation'])}.",
        f"- Test (never trained on): {info['test_participants']}.",
        "",
        "## Training procedure",
        "Built by `calcscore build-model` from `recipe.toml` (beside this card); stage seconds: "
        + ", ".join(f"{s} {t:.0f}" for s, t in info["seconds"].items())
        + f"; torch {info['torch']}.",
        _network(info, "cnn1"),
        _network(info, "cnn2"),
        "",
        "## Inputs and outputs",
        "- In: a chest CT in HU (NIfTI, MHA or DICOM), any spacing; resampled to 3 mm slabs every "
        "1.5 mm, except slices thicker than 3 mm, which stay on their own grid.",
        "- Out: a label per voxel on the scan's grid (background, LAD, LCX, RCA, TAC, AV, MV); "
        "`calcscore score` adds Agatston scores, volumes and the risk category.",
        "",
        *_figures(info),
        "",
        "## Limitations",
        *_limits(info),
        "",
        "## How to rebuild it",
        "```",
        "calcscore build-model recipe.toml --out DIR [--cache DIR] [--device cuda]",
        "```",
        "Stages are cached in `DIR/.cache` by the hash of their inputs; a stopped build goes on where it stopped.",
    ]
    return "\n".join(lines) + "\n"


def write_card(folder: str | Path, info: dict[str, Any]) -> Path:
    """MODEL_CARD.md in ``folder`` from ``info`` (model.json)."""
    path = Path(folder) / CARD
    path.write_text(card(info))
    return path
