"""Choosing CNN2's decision threshold per label group on validation scans.

CNN2 (the paper's false-positive reducer) outputs the probability that a voxel CNN1 called
calcium really is calcium; the paper keeps voxels with p >= 0.5. A threshold of 0.5 is only
right when CNN2's training balance matches the cost of its two errors (the shipped model's CNN2
drops 10-16 % of the true aortic calcium at 0.5). Here the threshold of each label group (CAC,
TAC, AV, MV: the paper's table columns) is chosen to maximise that group's voxel F1 on
*validation* scans (participants that neither CNN1 nor CNN2 trained on, never the test set).
Whether that helps is measured, not assumed: on the 2026-11-27 whole-chest candidate (README)
the chosen thresholds gained at most 0.06 F1 on validation and lost up to 0.08 on the test
scans, so a build recipe (``calcscore build-model``) calibrates only with
``[thresholds] calibrate = true``.

Given CNN1's labels, a group's F1 depends only on the threshold of that group (a voxel CNN1
gave a label of group G is kept or dropped by G's threshold alone), so each group is chosen on
its own.

    >>> data = collect_cnn2_scores(model, val_scans)          # doctest: +SKIP
    >>> thresholds, table = choose_thresholds(data)            # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from calcscore.bundle import threshold_table
from calcscore.inference import _to_original_grid, fill_rim, rim_thresholds_hu, unseen_mask
from calcscore.labels import GROUPS, N_CLASSES
from calcscore.lesion_fill import LESION_FILL_GRID, LESION_FILL_HU_GRID
from calcscore.postprocess import fill_within_net
from calcscore.regions import ChestRegions
from calcscore.runtime import autocast
from calcscore.sampling import VolumeStore
from calcscore.training import cnn1_candidate_labels

log = logging.getLogger(__name__)

#: Thresholds tried, 0.05 .. 0.95.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass
class CNN2Scores:
    """CNN2's calcium probability at every voxel CNN1 called calcium, pooled over scans.

    ``cnn1_label``, ``ref_label``, ``proba``: one entry per such voxel; ``ref_counts``: the
    number of reference voxels of each label (0..6) in the scans, found by CNN1 or not.
    """

    cnn1_label: np.ndarray
    ref_label: np.ndarray
    proba: np.ndarray
    ref_counts: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[CNN2Scores]) -> CNN2Scores:
        if not parts:
            raise ValueError("no scans to calibrate on")
        return cls(
            np.concatenate([p.cnn1_label for p in parts]),
            np.concatenate([p.ref_label for p in parts]),
            np.concatenate([p.proba for p in parts]),
            np.sum([p.ref_counts for p in parts], axis=0),
        )


def group_counts(
    scores: CNN2Scores, group: Sequence[int], threshold: float
) -> tuple[int, int, int]:
    """(TP, FP, FN) voxels of a label group when CNN2 keeps p >= ``threshold``.

    Args:
        scores: the pooled CNN2 probabilities (:func:`collect_cnn2_scores`).
        group: the label values (0..6) of the group, e.g. those of ``GROUPS["CAC"]``.
        threshold: CNN2's calcium probability a voxel needs to be kept, in [0, 1].

    Returns:
        (TP, FP, FN) voxel counts; FN counts the reference voxels CNN1 missed too.
    """
    g = np.asarray(group)
    called = np.isin(scores.cnn1_label, g) & (scores.proba >= threshold)
    in_ref = np.isin(scores.ref_label, g)
    tp = int(np.count_nonzero(called & in_ref))
    fp = int(np.count_nonzero(called & ~in_ref))
    fn = int(scores.ref_counts[g].sum()) - tp
    return tp, fp, fn


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def choose_thresholds(
    scores: CNN2Scores, *, grid: Sequence[float] = THRESHOLD_GRID, default: float = 0.5
) -> tuple[dict[str, float], pd.DataFrame]:
    """The F1-maximising threshold of every group in :data:`calcscore.labels.GROUPS`.

    Ties go to the threshold nearest ``default``; a group without reference voxels keeps
    ``default``.

    Args:
        scores: the pooled CNN2 probabilities of validation scans (:func:`collect_cnn2_scores`).
        grid: the thresholds tried.
        default: the threshold compared against (the paper's 0.5), and the tie-breaker.

    Returns:
        ({group: threshold}, a table indexed by group of F1 / sensitivity / FP voxels at the
        default and at the chosen threshold).
    """
    chosen: dict[str, float] = {}
    rows = []
    for name, labels in GROUPS.items():
        group = [int(lab) for lab in labels]
        n_ref = int(scores.ref_counts[group].sum())
        best = default
        if n_ref:
            f1s = {t: _f1(*group_counts(scores, group, t)) for t in grid}
            top = max(f1s.values())
            best = min((t for t, f in f1s.items() if f == top), key=lambda t: (abs(t - default), t))
        chosen[name] = float(best)
        row: dict[str, float | int | str] = {
            "group": name,
            "reference_voxels": n_ref,
            "threshold": best,
        }
        for tag, t in (("default", default), ("chosen", best)):
            tp, fp, fn = group_counts(scores, group, t)
            row[f"f1_{tag}"] = _f1(tp, fp, fn)
            row[f"sensitivity_{tag}"] = tp / n_ref if n_ref else float("nan")
            row[f"fp_voxels_{tag}"] = fp
        rows.append(row)
    table = pd.DataFrame(rows).set_index("group")
    log.info("CNN2 thresholds chosen on validation scans:\n%s", table.round(3).to_string())
    return chosen, table


@torch.no_grad()
def collect_cnn2_scores(
    cnn1,
    cnn2,
    scans,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    batch: int = 512,
    progress: bool = True,
) -> CNN2Scores:
    """Run CNN1 over every candidate of each cached scan (``calcscore.sampling.CachedScan``,
    one at a time to bound memory) and CNN2 over the voxels it calls calcium.

    Args:
        cnn1: a trained :class:`~calcscore.networks.CNN1` (moved to ``device``).
        cnn2: a trained :class:`~calcscore.networks.CNN2`; an eval-mode copy is run, the
            caller's is left as it is.
        scans: cached scans with reference labels (validation participants).
        device: where both networks run.
        precision: "fp32" or "bf16" (autocast).
        batch: CNN2 patches per forward pass.
        progress: a progress bar over the scans.

    Returns:
        the :class:`CNN2Scores` of all scans pooled.
    """
    from tqdm.auto import tqdm

    dev = torch.device(device)
    net2 = cnn2.folded().to(dev)  # an eval-mode copy: the caller's CNN2 is left as it is
    parts = []
    for scan in tqdm(
        list(scans), desc="CNN1 + CNN2 on validation scans", unit="scan", disable=not progress
    ):
        store = VolumeStore([scan], device=dev)
        flat, lab = cnn1_candidate_labels(cnn1.to(dev), store, 0, precision=precision)
        hits = flat[lab > 0]
        proba = np.zeros(len(hits), np.float32)
        for s in range(0, len(hits), batch):
            f = hits[s : s + batch]
            zero = np.zeros(len(f), np.int64)
            zyx = torch.from_numpy(store.unravel(zero, f)).to(dev)
            x = store.patches(torch.from_numpy(zero).to(dev), zyx, net2.config.patch_size)
            with autocast(dev, precision == "bf16"):
                proba[s : s + len(f)] = net2.predict_proba(x).float().cpu().numpy()
        ref = np.asarray(scan.labels).reshape(-1)
        parts.append(
            CNN2Scores(
                lab[lab > 0], ref[hits], proba, np.bincount(ref, minlength=N_CLASSES)[:N_CLASSES]
            )
        )
    return CNN2Scores.concat(parts)


#: Noise margins tried for the rim fill (:func:`calcscore.inference.rim_threshold_hu`), in noise
#: SDs above the soft tissue.
RIM_SIGMA_GRID: tuple[float, ...] = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0)


def label_group_counts(reference: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(groups, 3) voxel TP, FP, FN of each group of :data:`GROUPS` (a voxel counts as a TP of a
    group when both label maps give it a label of that group, as :mod:`calcscore.metrics` does)."""
    out = np.zeros((len(GROUPS), 3), np.int64)
    for i, labels_ in enumerate(GROUPS.values()):
        g = [int(lab) for lab in labels_]
        r, p = np.isin(reference, g), np.isin(labels, g)
        tp = int(np.count_nonzero(r & p))
        out[i] = tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(r)) - tp
    return out


def _f1_table(keys: list[dict], counts: np.ndarray) -> pd.DataFrame:
    """One row per option: its ``keys``, the voxel F1 of each group of :data:`GROUPS` from its
    (groups, 3) TP, FP, FN ``counts``, and their mean over the groups with reference voxels."""
    rows = []
    for row, c in zip(keys, counts):
        row = dict(row)
        f1s = []
        for name, (tp, fp, fn) in zip(GROUPS, c):
            row[f"f1_{name}"] = _f1(tp, fp, fn)
            if tp + fn:
                f1s.append(row[f"f1_{name}"])
        row["f1_mean"] = float(np.mean(f1s)) if f1s else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _best(options: list, table: pd.DataFrame, *, last: bool):
    """The option of the highest ``f1_mean`` (the last or the first of a tie), or None where no
    mean is finite."""
    means = table["f1_mean"].to_numpy()
    if not np.isfinite(means).any():
        return None
    at = [i for i, m in enumerate(means) if m == np.nanmax(means)]
    return options[at[-1] if last else at[0]]


def choose_rim_sigmas(
    cases, *, grid: Sequence[float] = RIM_SIGMA_GRID
) -> tuple[float | None, pd.DataFrame]:
    """The rim fill's noise margin that maximises the mean voxel F1 of the label groups (pooled
    over scans; groups without reference voxels left out) on validation scans, or None where
    no fill at all scores best.

    ``cases``: (volume, reference LabelVolume, Segmentation) of each scan, segmented once; every
    margin is applied to the same network labels. Ties go to the larger margin (fewer voxels
    added). Returns (margin, a table of F1 per group and the mean for no fill and each margin).
    """
    options: list[float | None] = [None, *grid]
    counts = np.zeros((len(options), len(GROUPS), 3), np.int64)
    for volume, reference, seg in cases:
        # the nearest-neighbour labels, what the networks never saw and the noise: once per scan
        plain = _to_original_grid(seg.labels_network, volume, False).labels
        unseen = unseen_mask(seg.candidates_network, seg.labels_network, volume)
        counts[0] += label_group_counts(reference.labels, plain)
        for i, hu in enumerate(rim_thresholds_hu(volume, grid), start=1):
            lab = fill_rim(plain, unseen & (volume.hu >= hu)) if plain.any() else plain
            counts[i] += label_group_counts(reference.labels, lab)
    table = _f1_table([{"rim_sigmas": "no fill" if k is None else k} for k in options], counts)
    # the last option of the best: the largest margin (grid ascending), "no fill" only if alone
    best = _best(options, table, last=True)
    log.info("rim fill margin chosen on validation scans: %s\n%s", best, table.round(3).to_string())
    return best, table


def choose_lesion_fill(
    cases: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, ChestRegions | None]],
    *,
    grid: Sequence[float] = LESION_FILL_GRID,
    hu_grid: Sequence[float] = LESION_FILL_HU_GRID,
) -> tuple[tuple[float, float] | None, pd.DataFrame]:
    """The lesion fill's share and HU threshold that maximise the mean voxel F1 of the label
    groups (pooled over scans; groups without reference voxels left out), or None where no fill
    scores best.

    Args:
        cases: (HU, reference labels, the model's labels, the safety net's regions or None
            where it is off) of each validation scan. Each option fills as inference does
            (:func:`calcscore.postprocess.fill_within_net`: the fill, then the net's trim).
        grid: the shares to try.
        hu_grid: the lesions' HU thresholds to try.

    Returns:
        ((share, HU) or None, a table of F1 per group and their mean for no fill and each
        pair). Ties go to no fill, then to the higher threshold and the larger share (fewer
        voxels added): the fill is chosen only where it helps.
    """
    options: list[tuple[float, float] | None] = [None]
    options += [(f, h) for h in sorted(hu_grid, reverse=True) for f in sorted(grid, reverse=True)]
    counts = np.zeros((len(options), len(GROUPS), 3), np.int64)
    for hu, reference, labels, regions in cases:
        for i, opt in enumerate(options):
            lab = labels if opt is None else fill_within_net(labels, hu, *opt, regions)
            counts[i] += label_group_counts(reference, lab)
    keys = [
        {"lesion_fill": "no fill", "lesion_fill_hu": None}
        if opt is None
        else {"lesion_fill": opt[0], "lesion_fill_hu": opt[1]}
        for opt in options
    ]
    table = _f1_table(keys, counts)
    best = _best(options, table, last=False)
    log.info("lesion fill chosen on validation scans: %s\n%s", best, table.round(3).to_string())
    return best, table


__all__ = [
    "CNN2Scores",
    "RIM_SIGMA_GRID",
    "THRESHOLD_GRID",
    "choose_lesion_fill",
    "choose_rim_sigmas",
    "choose_thresholds",
    "collect_cnn2_scores",
    "group_counts",
    "label_group_counts",
    "threshold_table",
]
