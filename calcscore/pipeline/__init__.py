"""One command builds a model: a recipe (TOML) names every stage and its settings, and
:func:`build` runs the stages in order, each cached by the hash of its inputs.

- :mod:`~calcscore.pipeline.recipe`: :func:`load_recipe`, the recipe's dataclasses and checks;
- :mod:`~calcscore.pipeline.recipe_schema`: a TOML table read into a section, every key checked;
- :mod:`~calcscore.pipeline.cache`: the stage folders and their ``done.json``;
- :mod:`~calcscore.pipeline.cohort`: phantom cohorts (generated in parallel, cached);
- :mod:`~calcscore.pipeline.stages`: the stages (phantoms, real_negatives, cnn1, cnn2,
  thresholds, rim, evaluation, card);
- :mod:`~calcscore.pipeline.evaluation`: thresholds, rim margin and held-out figures;
- :mod:`~calcscore.pipeline.card`: model.json and MODEL_CARD.md;
- :mod:`~calcscore.pipeline.build`: :func:`build`, the runner.

``calcscore build-model RECIPE --out DIR`` is the command line (:mod:`calcscore.commands.build_model`).
"""

from calcscore.pipeline.build import STAGES_JSON, BuildResult, build, stage_hashes, stage_results
from calcscore.pipeline.recipe import Recipe, RecipeError, load_recipe
from calcscore.pipeline.stages import STAGES

__all__ = [
    "STAGES",
    "STAGES_JSON",
    "BuildResult",
    "Recipe",
    "RecipeError",
    "build",
    "load_recipe",
    "stage_hashes",
    "stage_results",
]
