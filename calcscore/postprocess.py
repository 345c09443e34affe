"""The steps of :func:`calcscore.inference.segment` after the networks that the options or the
model switch on and off: the rim fill's threshold (step 7), the lesion fill's share (step 8) and
the safety net (step 9)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

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
    """Step 9 where the options (or the model) ask for it: (labels, regions, removed voxels)."""
    if not (model.safety_net if opts.safety_net is None else opts.safety_net):
        return labels, None, {}
    t = time.perf_counter()
    regions = find_chest_regions(volume)
    kept, removed = apply_safety_net(labels.labels, regions)
    seconds["safety_net"] = time.perf_counter() - t
    return LabelVolume.like(volume, kept), regions, removed


def _lesion_fill(model: Model, opts: InferenceOptions) -> float | None:
    """Step 8's share of a lesion that must be labelled, or None where the fill is off."""
    share = model.lesion_fill if opts.lesion_fill is None else opts.lesion_fill
    return float(share) if share else None
