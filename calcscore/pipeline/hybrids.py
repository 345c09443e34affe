"""Hybrid scans of a build: copies of the recipe's real negatives with synthetic coronary lesions
in the epicardial fat of their hearts (:mod:`calcscore.realism.hybrid`). The training copies are
cached for the networks (``[real_negatives] hybrid``); the validation copies, drawn after them
from the same settings, help choose the lesion fill (``[rim] hybrids``)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calcscore.labels import CORONARY, Label
from calcscore.pipeline.recipe import Recipe, real_negative_files
from calcscore.pipeline.recipe_hybrid import HYBRID_ARTERY, hearts_file
from calcscore.sampling import cache_scan
from calcscore.volume import CTVolume


def _copy(volume: CTVolume, heart: dict, hybrid: dict[str, Any], k: int, c: int):
    """Copy ``c`` of real negative ``k``: (volume, lesion of every voxel, sites, lesions)."""
    from calcscore.realism.hybrid import hybrid_scan

    rng = np.random.default_rng([hybrid["seed"], k, c])
    return hybrid_scan(
        volume, heart, hybrid["lesions"], rng, elongated=hybrid.get("elongated", 0.0)
    )


def cache_hybrids(
    volume, label_map, heart: dict, hybrid: dict[str, Any], k: int, folder: Path, name: str
) -> list[tuple[str, int]]:
    """Cache ``hybrid["copies"]`` copies of a real negative, each with ``hybrid["lesions"]``
    synthetic coronary lesions in the epicardial fat of ``heart`` (calcscore.realism.hybrid),
    labelled with the artery of their groove (``artery = "groove"``, the default) or as coronary
    calcium of no given artery (``artery = "any"``: :data:`calcscore.labels.CORONARY`), the rest
    of the label map as it was; a share ``elongated`` of them capsules along the heart's surface.

    Args:
        volume, label_map: the real negative and its label map.
        heart: {"z": [first, last], "y": [y0, y1], "x": [x0, x1]} in voxels.
        hybrid: the recipe's ``[real_negatives] hybrid`` settings.
        k: the scan's number in the recipe (for the random draws).
        folder: where the cached scans go.
        name: the scan's name.

    Returns:
        (scan id, lesions) of every copy.
    """
    out = []
    for c in range(hybrid["copies"]):
        hybrid_volume, ref, sites, lesions = _copy(volume, heart, hybrid, k, c)
        named = hybrid.get("artery", HYBRID_ARTERY[0]) == "groove"
        arteries = np.array([0] + [s.artery if named else CORONARY for s in sites], np.uint8)
        labels = np.where(ref > 0, arteries[ref], np.asarray(label_map.labels)).astype(np.uint8)
        scan_id = f"real-{name}-hybrid{c}"
        cache_scan(
            hybrid_volume,
            dataclasses.replace(label_map, array=labels),
            folder / scan_id,
            scan_id=scan_id,
            participant_id=f"real-{name}",
            weight=hybrid["weight"],
        )
        out.append((scan_id, len(lesions)))
    return out


def validation_hybrids(
    recipe: Recipe, copies: int, heart_only: Sequence[str] = ()
) -> list[tuple[str, CTVolume, np.ndarray]]:
    """``copies`` validation copies of every real negative of a recipe with hybrid positives: the
    copies after the training ones (numbers ``hybrid["copies"]`` on, so their lesions differ),
    with the training copies' settings; the copies of the scans named in ``heart_only`` also
    cut to a heart-only field of view (:func:`calcscore.realism.hybrid.heart_only_cut`, named
    ``...-heart-only``).

    Args:
        recipe: the recipe (``[real_negatives]`` with ``hybrid`` settings).
        copies: how many copies of each real negative.
        heart_only: real negatives whose copies are cut heart-only too (``[rim] heart_only``).

    Returns:
        (name, the copy, its reference labels) of every copy: the inserted lesions' voxels of
        130 HU or more are LAD (:class:`calcscore.labels.Label`; the label groups of
        :mod:`calcscore.calibration` pool the arteries), every other voxel 0: the real scan's
        own calcium, if any, counts against a fill that grows it.
    """
    from calcscore.io import read_volume
    from calcscore.realism.hybrid import heart_only_cut

    rn = recipe.real_negatives
    if rn is None or not rn.hybrid or not copies:
        return []
    hearts = json.loads(hearts_file(recipe).read_text())
    out = []
    for k, name in enumerate(rn.scans):
        volume = read_volume(real_negative_files(recipe, name)[0])
        first = int(rn.hybrid["copies"])
        for c in range(first, first + copies):
            copy, ref, _, lesions = _copy(volume, hearts[name], rn.hybrid, k, c)
            out.append((f"real-{name}-validation{c}", copy, _reference(ref)))
            if name in heart_only:
                cut, ref_cut = heart_only_cut(copy, ref, lesions, hearts[name])
                out.append((f"real-{name}-validation{c}-heart-only", cut, _reference(ref_cut)))
    return out


def _reference(ref: np.ndarray) -> np.ndarray:
    """The inserted lesions' voxels as LAD, every other voxel 0."""
    return np.where(ref > 0, int(Label.LAD), 0).astype(np.uint8)


__all__ = ["cache_hybrids", "validation_hybrids"]
