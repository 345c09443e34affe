"""A build recipe: a TOML file that names every stage of a model build and its settings.

:func:`load_recipe` reads it with :mod:`tomllib` into the dataclasses below and checks every key:
a missing key, an unknown one or a value of the wrong type is a :class:`RecipeError`, one line
that names the file, the section and key, the problem and the fix. The shipped model's recipe,
``calcscore/models/default/recipe.toml``, is the documented example of every section.

Paths in a recipe (``init``, ``real_scan_figures``) are relative to the recipe's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from calcscore.phantom import ANATOMIES, GENERATOR_VERSION, SIZES
from calcscore.pipeline.recipe_hybrid import check_hybrid, check_validation_hybrids, hearts_file
from calcscore.pipeline.recipe_schema import (  # participants: re-exported
    RecipeError,
    check_range,
    participants,
    read_section,
)

PRESETS = ("workshop", "paper")
SELECT_BY = ("val_loss", "val_balanced_accuracy")
LABEL_GROUPS = ("CAC", "TAC", "AV", "MV", "LAD", "LCX", "RCA")
#: Keys that change how fast a stage runs, not what it makes: left out of the stages' hashes.
UNHASHED = frozenset({"workers"})
#: Keys left out of the hashes while at their empty defaults (added after recipes were built).
DEFAULTS_UNHASHED = {
    "phantoms": ("insert_fraction", "gated", "gated_test", "thick"),
    "thresholds": ("values",),
    "real_negatives": ("hybrid",),
    "cnn1": ("z_crop", "z_crop_mm"),
    "cnn2": ("z_crop", "z_crop_mm", "phantoms_only"),
    "rim": ("lesion_fill", "hybrids", "heart_only"),
}


@dataclass(frozen=True)
class Phantoms:
    """The synthetic cohort. Ranges are ``[first, last]`` participant numbers, both included;
    the first ``whole_chest`` training participants are whole-chest scans, the next ``gated``
    ECG-gated heart-only scans (size "gated": 3 mm slices, 0.4 mm pixels, the body cut by the
    field of view), the others of ``train_size``; every participant has a soft and a sharp
    reconstruction. ``whole_chest_test`` and ``gated_test`` are held-out participants scanned
    whole-chest and gated."""

    generator: str
    seed: int
    train: list[int]
    whole_chest: int
    train_size: str
    validation_fraction: float
    test: list[int]
    test_size: str
    whole_chest_test: list[int] = field(default_factory=list)
    workers: int = 1
    #: "v2" the realistic anatomy, "v1" the first generator's (calcscore.phantom.ANATOMIES)
    anatomy: str = "v2"
    #: the share of training participants whose heart is a calcium-insert test object ("v2")
    insert_fraction: float = 0.0
    #: gated heart-only training scans after the whole-chest ones
    gated: int = 0
    gated_test: list[int] = field(default_factory=list)
    #: of the whole-chest training participants, the first ``thick`` with contiguous 5 mm slices
    thick: int = 0


@dataclass(frozen=True)
class RealNegatives:
    """Real scans without calcium annotations as training negatives (issue 26): for every name
    of ``scans``, the image ``images/NAME.nii.gz`` (or ``labels/NAME.nii.gz``: a heart crop) and
    the label map ``labels/NAME_labels.nii.gz`` (:func:`calcscore.negatives.real_negative_labels`:
    background far from the heart and the great vessels, :data:`calcscore.labels.IGNORE` near
    them; ``data/real_negatives`` holds them for the open real chest CTs). Folders are relative
    to the recipe. They join CNN1's and CNN2's training scans, never the validation. Leave the
    section out or ``scans = []`` and the stage is skipped."""

    scans: list[str] = field(default_factory=list)
    images: str = ""
    labels: str = ""
    note: str = ""
    #: hybrid positives (calcscore.realism.hybrid): ``copies`` copies of every scan, each with
    #: ``lesions`` synthetic coronary calcifications in the epicardial fat of the heart that
    #: ``labels/hearts.json`` outlines, drawn ``weight`` times as often as a phantom's calcium,
    #: from ``seed``, labelled with the artery of their groove (``artery = "groove"``) or as
    #: coronary of no given artery (``artery = "any"``), a share ``elongated`` of them capsules
    #: 5-20 mm long (heavy calcification; default 0); {} for none
    hybrid: dict[str, int | float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class CNN1:
    """CNN1's training: a preset (``workshop`` or ``paper``) changed by the keys here and by
    ``architecture`` (TrainConfig fields: width, head_width, max_dilation, patch_size, ...);
    ``init``: a saved cnn1.pt to start from (its architecture wins), or "none"."""

    preset: str
    iterations: int
    batch_size: int
    learning_rate: float
    init: str = "none"
    select_by: str = "val_balanced_accuracy"
    eval_every: int = 0
    architecture: dict[str, Any] = field(default_factory=dict)
    #: the share of training patches cut as from a heart-only scan (TrainConfig.z_crop)
    z_crop: float = 0.0
    #: [lo, hi] mm that each end of such a cut is drawn from ([]: TrainConfig's, 10-150)
    z_crop_mm: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class CNN2(CNN1):
    """CNN2's training, as CNN1's; ``scans``: train on the first N training scans only (0: all);
    ``full_scans``: of those at most N whole-chest ones (-1: no limit); ``phantoms_only``: leave
    out the real scans of ``[real_negatives]`` (CNN1 still learns from them)."""

    scans: int = 0
    full_scans: int = -1
    phantoms_only: bool = False


@dataclass(frozen=True)
class Thresholds:
    """CNN2's threshold per label group chosen on validation scans (calcscore.calibration), or
    with ``calibrate = false`` the recipe's ``values`` (e.g. a kept CNN2's thresholds), else the
    paper's 0.5; ``scans``: the first N validation scans (0: all)."""

    calibrate: bool
    scans: int = 0
    #: given thresholds per label group (CAC, TAC, AV, MV); {} is not hashed
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Rim:
    """The rim fill's noise margin chosen on ``participants`` validation participants (0: all),
    or the fill left at its default (``choose = false``); with ``lesion_fill = true`` the lesion
    fill's share (:mod:`calcscore.lesion_fill`) is chosen on them too, after the margin, and on
    ``hybrids`` validation copies of every real negative with synthetic lesions (the copies
    after the training ones of ``[real_negatives] hybrid``: real anatomy and noise around heavy
    calcification, which the phantoms lack); the copies of the real negatives named in
    ``heart_only`` are also cut to a heart-only field of view, as an ECG-gated scan sees them
    (:func:`calcscore.realism.hybrid.heart_only_cut`)."""

    choose: bool
    participants: int = 6
    lesion_fill: bool = False
    hybrids: int = 0
    heart_only: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    """The held-out evaluation on the test participants (``[phantoms] test``)."""

    enabled: bool = True
    groups: list[str] = field(default_factory=lambda: ["CAC", "TAC", "AV", "MV"])


@dataclass(frozen=True)
class Card:
    """model.json and MODEL_CARD.md. ``real_scan_figures``: a JSON file of figures on real scans
    (e.g. benchmarks/real_ct_audit.py's audit.json; "" for none), shown as a table of
    ``real_scan_columns`` (dotted keys; empty: the first scalar ones)."""

    title: str
    description: str = ""
    real_scan_figures: str = ""
    real_scan_columns: list[str] = field(default_factory=list)


SECTIONS: dict[str, type] = {
    "phantoms": Phantoms,
    "real_negatives": RealNegatives,
    "cnn1": CNN1,
    "cnn2": CNN2,
    "thresholds": Thresholds,
    "rim": Rim,
    "evaluation": Evaluation,
    "card": Card,
}
OPTIONAL_SECTIONS = frozenset({"real_negatives", "evaluation"})


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe: its file, text, name and one dataclass per section."""

    path: Path
    text: str
    name: str
    phantoms: Phantoms
    real_negatives: RealNegatives | None
    cnn1: CNN1
    cnn2: CNN2
    thresholds: Thresholds
    rim: Rim
    evaluation: Evaluation
    card: Card

    def resolve(self, value: str) -> Path | None:
        """A path of the recipe (relative to its folder), or None for "" / "none"."""
        if value in ("", "none"):
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def section(self, name: str) -> dict[str, Any]:
        """A section's settings as hashed (input files by their contents, not their paths)."""
        sec = getattr(self, name)
        if sec is None:
            return {}
        out = {k: v for k, v in dataclasses.asdict(sec).items() if k not in UNHASHED}
        for key in DEFAULTS_UNHASHED.get(name, ()):  # older recipes keep their stages' hashes
            if not out.get(key):
                out.pop(key, None)
        for key in ("init", "real_scan_figures"):
            path = self.resolve(out.get(key, ""))
            if path is not None:
                out[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        if name == "real_negatives" and sec.scans:  # the label maps by content, the images by size
            out["images"] = {n: real_negative_files(self, n)[0].stat().st_size for n in sec.scans}
            out["labels"] = {
                n: hashlib.sha256(real_negative_files(self, n)[1].read_bytes()).hexdigest()
                for n in sec.scans
            }
            if sec.hybrid:  # the hearts that the lesions are drawn in
                hearts = json.loads(hearts_file(self).read_text())
                out["hearts"] = {n: hearts.get(n) for n in sec.scans}
        return out


def real_negative_files(recipe: Recipe, name: str) -> tuple[Path, Path]:
    """(image, label map) of the real negative ``name`` of a recipe: ``images/NAME.nii.gz``, or
    ``labels/NAME.nii.gz`` where the images folder lacks it (the heart crops that
    ``data/real_negatives`` keeps beside their label maps)."""
    rn = recipe.real_negatives
    images = recipe.resolve(rn.images) if rn is not None else None
    labels = recipe.resolve(rn.labels) if rn is not None else None
    if images is None or labels is None:
        raise RecipeError(
            recipe.path,
            "[real_negatives]",
            "has no `images` or `labels` folder",
            "give both folders, relative to the recipe",
        )
    image = images / f"{name}.nii.gz"
    if not image.is_file() and (labels / f"{name}.nii.gz").is_file():
        image = labels / f"{name}.nii.gz"  # a scan kept beside its label map (a heart crop)
    return image, labels / f"{name}_labels.nii.gz"


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file.

    Args:
        path: the TOML file.

    Returns:
        The :class:`Recipe`; raises :class:`RecipeError` (one line naming the file and the key)
        where it is incomplete or wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(
            path,
            "file",
            "no such recipe",
            "pass a TOML file, e.g. calcscore/models/default/recipe.toml",
        )
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(path, "TOML", str(exc), "fix the syntax") from None
    for key in data:
        if key != "name" and key not in SECTIONS:
            raise RecipeError(path, f"[{key}]", "unknown section", f"valid: {', '.join(SECTIONS)}")
    if not isinstance(data.get("name"), str):
        raise RecipeError(
            path, "name", "missing or not a string", 'add `name = "my-model"` at the top'
        )
    sections: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in data:
            if name not in OPTIONAL_SECTIONS:
                raise RecipeError(path, f"[{name}]", "missing section", f"add a [{name}] section")
            sections[name] = None if name == "real_negatives" else SECTIONS[name]()
            continue
        sections[name] = read_section(path, name, SECTIONS[name], data[name])
    recipe = Recipe(path=path, text=text, name=data["name"], **sections)
    check_recipe(recipe)
    return recipe


def _check_phantoms(path: Path, ph: Phantoms) -> None:
    if ph.generator != GENERATOR_VERSION:
        raise RecipeError(
            path,
            "[phantoms] generator",
            f"{ph.generator!r} is not this calcscore's phantom generator",
            f'set generator = "{GENERATOR_VERSION}" (every stage reruns) or use '
            "the calcscore that made those phantoms",
        )
    check_range(path, "[phantoms] train", ph.train)
    check_range(path, "[phantoms] test", ph.test)
    check_range(path, "[phantoms] whole_chest_test", ph.whole_chest_test, empty_ok=True)
    check_range(path, "[phantoms] gated_test", ph.gated_test, empty_ok=True)
    train = set(participants(ph.train))
    for key in ("test", "whole_chest_test", "gated_test"):
        if train & set(participants(getattr(ph, key))):
            raise RecipeError(
                path,
                f"[phantoms] {key}",
                "overlaps the training participants",
                "choose participants after the training range",
            )
    if not 0 <= ph.whole_chest <= len(train):
        raise RecipeError(
            path, "[phantoms] whole_chest", f"must lie in 0..{len(train)}, got {ph.whole_chest}"
        )
    if not 0 <= ph.thick <= ph.whole_chest:
        raise RecipeError(
            path,
            "[phantoms] thick",
            f"must lie in 0..{ph.whole_chest} (whole_chest), got {ph.thick}",
        )
    if not 0 <= ph.gated <= len(train) - ph.whole_chest:
        raise RecipeError(
            path,
            "[phantoms] gated",
            f"must lie in 0..{len(train) - ph.whole_chest} (the training participants after the "
            f"{ph.whole_chest} whole-chest ones), got {ph.gated}",
        )
    for key in ("train_size", "test_size"):
        if getattr(ph, key) not in SIZES:
            raise RecipeError(
                path,
                f"[phantoms] {key}",
                f"unknown size {getattr(ph, key)!r}",
                f"one of {', '.join(SIZES)}",
            )
    if ph.anatomy not in ANATOMIES:
        raise RecipeError(
            path,
            "[phantoms] anatomy",
            f"unknown anatomy {ph.anatomy!r}",
            f"one of {', '.join(ANATOMIES)} (v2 realistic, v1 the first generator's)",
        )
    if not 0 <= ph.insert_fraction <= 1 or (ph.insert_fraction and ph.anatomy != "v2"):
        raise RecipeError(
            path,
            "[phantoms] insert_fraction",
            f"must lie in [0, 1] with anatomy v2, got {ph.insert_fraction}",
            "e.g. 0.5, or 0 for no calcium-insert test objects",
        )
    if not 0 < ph.validation_fraction < 1:
        raise RecipeError(
            path, "[phantoms] validation_fraction", "must lie in (0, 1)", "e.g. 0.142857 (1/7)"
        )
    if ph.workers < 1:
        raise RecipeError(path, "[phantoms] workers", "must be >= 1")


def _check_network(recipe: Recipe, name: str) -> None:
    from calcscore.training import TrainConfig

    net, path = getattr(recipe, name), recipe.path
    if net.preset not in PRESETS:
        raise RecipeError(
            path, f"[{name}] preset", f"unknown preset {net.preset!r}", "workshop or paper"
        )
    if net.select_by not in SELECT_BY:
        raise RecipeError(
            path, f"[{name}] select_by", f"unknown {net.select_by!r}", " or ".join(SELECT_BY)
        )
    for key in ("iterations", "batch_size"):
        if getattr(net, key) < 1 and not (key == "iterations" and reuses(recipe, name)):
            raise RecipeError(
                path,
                f"[{name}] {key}",
                "must be >= 1",
                "or, for cnn2, 0 with `init` naming a saved cnn2.pt to keep unchanged"
                if key == "iterations" and name == "cnn2"
                else "",
            )
    if not net.learning_rate > 0:
        raise RecipeError(path, f"[{name}] learning_rate", "must be > 0", "e.g. 5e-4")
    if type(net.z_crop) not in (int, float) or not 0 <= net.z_crop <= 1:
        raise RecipeError(path, f"[{name}] z_crop", f"must be in [0, 1], got {net.z_crop!r}", "")
    zmm = net.z_crop_mm
    if zmm and not (
        isinstance(zmm, list)
        and len(zmm) == 2
        and all(type(v) in (int, float) for v in zmm)
        and 0 < zmm[0] <= zmm[1]
    ):
        raise RecipeError(
            path,
            f"[{name}] z_crop_mm",
            f"must be [lo, hi] mm, 0 < lo <= hi, got {zmm!r}",
            "e.g. [5, 60]",
        )
    known = {f.name for f in fields(TrainConfig)}
    for key in net.architecture:
        if key not in known:
            raise RecipeError(
                path,
                f"[{name}.architecture] {key}",
                "not a training setting",
                "e.g. width, head_width, max_dilation, patch_size, width_scale, dense_width",
            )
    init = recipe.resolve(net.init)
    if init is not None and not init.is_file():
        raise RecipeError(
            path, f"[{name}] init", f"no such file {init}", 'name a saved cnn .pt or "none"'
        )


def reuses(recipe: Recipe, name: str) -> bool:
    """Whether the recipe keeps a saved network unchanged: ``[cnn2] iterations = 0`` with an
    ``init`` (the cnn2 stage copies it; CNN1 is always trained)."""
    net = getattr(recipe, name)
    return name == "cnn2" and net.iterations == 0 and recipe.resolve(net.init) is not None


def check_recipe(recipe: Recipe) -> None:
    """The checks across keys: ranges, sizes, presets, files, the phantom generator."""
    path = recipe.path
    _check_phantoms(path, recipe.phantoms)
    for name in ("cnn1", "cnn2"):
        _check_network(recipe, name)
    for g in recipe.evaluation.groups:
        if g not in LABEL_GROUPS:
            raise RecipeError(
                path, "[evaluation] groups", f"unknown label group {g!r}", ", ".join(LABEL_GROUPS)
            )
    if recipe.real_negatives is not None and recipe.real_negatives.scans:
        for key in ("images", "labels"):
            folder = recipe.resolve(getattr(recipe.real_negatives, key))
            if folder is None or not folder.is_dir():
                raise RecipeError(
                    path,
                    f"[real_negatives] {key}",
                    f"no such folder {folder}",
                    "name the folder of the scans' images / label maps, relative to the recipe",
                )
        for name in recipe.real_negatives.scans:
            for p in real_negative_files(recipe, name):
                if not p.is_file():
                    raise RecipeError(
                        path,
                        "[real_negatives] scans",
                        f"{name}: no such file {p}",
                        "make the label maps with data/real_negatives/make_labels.py",
                    )
    _check_thresholds(path, recipe.thresholds)
    if recipe.real_negatives is not None and recipe.real_negatives.hybrid:
        check_hybrid(recipe)
    check_validation_hybrids(recipe)
    figures = recipe.resolve(recipe.card.real_scan_figures)
    if figures is not None and not figures.is_file():
        raise RecipeError(
            path, "[card] real_scan_figures", f"no such file {figures}", 'name a JSON file or ""'
        )


def _check_thresholds(path: Path, th: Thresholds) -> None:
    for g, v in th.values.items():
        ok = g in LABEL_GROUPS[:4] and type(v) in (int, float) and 0 < v < 1
        if th.calibrate or not ok:
            fix = "drop it or `calibrate = true`" if th.calibrate else "CAC, TAC, AV, MV in (0, 1)"
            raise RecipeError(path, "[thresholds] values", f"{g} = {v!r}", fix)
