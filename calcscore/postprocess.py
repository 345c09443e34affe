"""The steps of :func:`calcscore.inference.segment` after the networks that the options or the
model switch on and off: the rim fill's threshold (step 7), the safety net (step 8), the
lesion fill after it (step 9, :func:`fill_within_net`) and the artery vote (step 10,
:func:`finish_labels`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from calcscore.lesion_fill import fill_lesions
from calcscore.lesions import vote_arteries
from calcscore.regions import ChestRegions, apply_safety_net, find_chest_regions
from calcscore.rim import rim_thresholds_hu
from calcscore.volume import CTVolume, LabelVolume

if TYPE_CHECKING:
    from calcscore.inference import InferenceOptions, Model

#: :attr:`calcscore.inference.Model.rim_sigmas` of a model whose model.json does not choose one
DEFAULT_RIM_SIGMAS = 3.0


def _rim_threshold(
    volume: CTVolume, model: Model, opts: InferenceOptions, hu: torch.Tensor
) -> float | None:
    """Step 7's noise-adapted HU threshold of the rim fill, or None where it is off."""
    if not (model.rim_fill if opts.rim_fill is None else opts.rim_fill):
        return None
    sigmas = next(
        v for v in (opts.rim_sigmas, model.rim_sigmas, DEFAULT_RIM_SIGMAS) if v is not None
    )
    return rim_thresholds_hu(volume, [sigmas], hu)[0]


def _safety_net(
    volume: CTVolume,
    labels: LabelVolume,
    model: Model,
    opts: InferenceOptions,
    seconds: dict[str, float],
) -> tuple[LabelVolume, ChestRegions | None, dict[str, int]]:
    """Step 8 where the options (or the model) ask for it: (labels, regions, removed voxels)."""
    if not (model.safety_net if opts.safety_net is None else opts.safety_net):
        return labels, None, {}
    t = time.perf_counter()
    regions = find_chest_regions(volume)
    kept, removed = apply_safety_net(labels.labels, regions)
    seconds["safety_net"] = time.perf_counter() - t
    return LabelVolume.like(volume, kept), regions, removed


def _lesion_fill(model: Model, opts: InferenceOptions) -> float | None:
    """Step 9's share of a lesion that must be labelled, or None where the fill is off."""
    share = model.lesion_fill if opts.lesion_fill is None else opts.lesion_fill
    return float(share) if share else None


def fill_within_net(
    labels: np.ndarray,
    hu: np.ndarray,
    share: float | None,
    threshold_hu: float,
    regions: ChestRegions | None,
) -> np.ndarray:
    """Step 9 on the labels the safety net kept: the lesion fill (:func:`fill_lesions`) grows
    only labels the net trusts, and the net then removes what the fill added outside its
    regions. (Filled before the net, a coronary label on a lead or a node above the heart grew
    down into the heart region, where the net kept it.)

    Args:
        labels: the labels after the safety net, or without it (``regions`` None).
        hu: the scan's HU, the same shape.
        share: the share of a lesion that must be labelled; None or 0: no fill.
        threshold_hu: the lesions' HU threshold.
        regions: the safety net's regions, or None where it is off.

    Returns:
        the filled labels.
    """
    if not share:
        return labels
    filled = fill_lesions(labels, hu, share, threshold_hu=threshold_hu)
    return filled if regions is None else apply_safety_net(filled, regions)[0]


def finish_labels(
    labels: np.ndarray,
    hu: np.ndarray,
    share: float | None,
    threshold_hu: float,
    regions: ChestRegions | None,
    artery_vote: bool,
) -> np.ndarray:
    """Steps 9 and 10 on the labels the safety net kept: :func:`fill_within_net`, then, where
    ``artery_vote``, one artery per coronary lesion where two thirds of it agree
    (:func:`calcscore.lesions.vote_arteries`: the vote comes last, so that it sees each lesion
    whole).

    Args:
        labels: the labels after the safety net, or without it (``regions`` None).
        hu: the scan's HU, the same shape.
        share: the lesion fill's share; None or 0: no fill.
        threshold_hu: the lesion fill's HU threshold.
        regions: the safety net's regions, or None where it is off.
        artery_vote: vote the arteries.

    Returns:
        the finished labels.
    """
    filled = fill_within_net(labels, hu, share, threshold_hu, regions)
    return vote_arteries(filled) if artery_vote else filled
