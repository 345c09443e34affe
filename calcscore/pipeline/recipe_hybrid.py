"""The checks of a recipe's hybrid positives (``[real_negatives] hybrid``): synthetic coronary
lesions inserted into copies of the real negatives (:mod:`calcscore.realism.hybrid`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from calcscore.pipeline.recipe_schema import RecipeError

if TYPE_CHECKING:
    from calcscore.pipeline.recipe import Recipe

HYBRID_KEYS = ("lesions", "copies", "weight", "seed")
HYBRID_ARTERY = ("groove", "any")  # hybrid.artery's values; the first is the default


def hearts_file(recipe: Recipe) -> Path:
    """The real negatives' hearts (slices and an in-plane box per scan, for hybrid positives)."""
    rn = recipe.real_negatives
    return (recipe.resolve(rn.labels) or Path(".")) / "hearts.json" if rn else Path("hearts.json")


def check_hybrid(recipe: Recipe) -> None:
    """Check a recipe's ``[real_negatives] hybrid`` settings (a :class:`RecipeError` if wrong).

    Args:
        recipe: the recipe, with hybrid settings.
    """
    path, hy = recipe.path, recipe.real_negatives.hybrid  # type: ignore[union-attr]
    allowed = (*HYBRID_KEYS, "artery", "elongated")
    elongated = hy.get("elongated", 0.0)
    if type(elongated) not in (int, float) or not 0 <= float(elongated) <= 1:
        raise RecipeError(
            path,
            "[real_negatives] hybrid.elongated",
            f"must be a share between 0 and 1, got {elongated!r}",
            "the share of lesions drawn as capsules along the heart's surface, e.g. 0.5",
        )
    if hy.get("artery", HYBRID_ARTERY[0]) not in HYBRID_ARTERY:
        raise RecipeError(
            path,
            "[real_negatives] hybrid.artery",
            f"must be one of {', '.join(HYBRID_ARTERY)}, got {hy['artery']!r}",
            '"any": the loss asks only for coronary; "groove": the artery of the groove',
        )
    for key in HYBRID_KEYS:
        v = hy.get(key)
        if type(v) is not int or v < (0 if key == "seed" else 1):
            raise RecipeError(
                path,
                f"[real_negatives] hybrid.{key}",
                f"must be a whole number, got {v!r}",
                "e.g. hybrid = { lesions = 14, copies = 6, weight = 20, seed = 1 }",
            )
    if set(hy) - set(allowed):
        raise RecipeError(
            path,
            "[real_negatives] hybrid",
            f"unknown keys {sorted(set(hy) - set(allowed))}",
            ", ".join(allowed),
        )
    hearts = hearts_file(recipe)
    known = json.loads(hearts.read_text()) if hearts.is_file() else {}
    for name in recipe.real_negatives.scans:  # type: ignore[union-attr]
        if name not in known:
            raise RecipeError(
                path,
                "[real_negatives] hybrid",
                f"{hearts} outlines no heart for {name}",
                'add {"z": [first, last], "y": [y0, y1], "x": [x0, x1]} (voxels) for it',
            )


def check_validation_hybrids(recipe: Recipe) -> None:
    """Check a recipe's ``[rim] hybrids`` (a :class:`RecipeError` if wrong): validation copies of
    the real negatives need their hybrid settings and a lesion fill to choose.

    Args:
        recipe: the recipe.
    """
    rim, rn = recipe.rim, recipe.real_negatives
    if rim.heart_only and not rim.hybrids:
        raise RecipeError(
            recipe.path,
            "[rim] heart_only",
            "cuts validation copies, and there are none",
            "set `hybrids = 1` or more, or drop `heart_only`",
        )
    if not rim.hybrids:
        return
    if rim.hybrids < 0:
        raise RecipeError(
            recipe.path, "[rim] hybrids", f"must be 0 or more, got {rim.hybrids}", "e.g. 1"
        )
    if not (rim.choose and rim.lesion_fill):
        raise RecipeError(
            recipe.path,
            "[rim] hybrids",
            "validation copies choose only the lesion fill",
            "set `choose = true` and `lesion_fill = true` too, or drop `hybrids`",
        )
    if rn is None or not rn.scans or not rn.hybrid:
        raise RecipeError(
            recipe.path,
            "[rim] hybrids",
            "needs real negatives with hybrid positives to copy",
            "add [real_negatives] scans and hybrid = { lesions = 14, copies = 4, ... }",
        )
    unknown = [n for n in rim.heart_only if n not in rn.scans]
    if unknown:
        raise RecipeError(
            recipe.path,
            "[rim] heart_only",
            f"names scans that are not real negatives: {', '.join(unknown)}",
            f"name some of {', '.join(rn.scans)}",
        )
