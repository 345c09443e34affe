"""Training CNN1 and CNN2 (docs/method.md §5).

:class:`TrainConfig` holds every setting; :func:`paper_config` gives the paper's and
:func:`workshop_config` a ~50x cheaper one for teaching on a 2-core CPU. :func:`train` trains
one network on cached scans (:mod:`calcscore.sampling`); :func:`train_from_manifest` reads and
caches a manifest, splits it by participant and calls :func:`train`.

An output folder holds ``cnn1.pt`` or ``cnn2.pt`` (``{"config": dict, "state_dict": ...}``, the
weights with the best validation score so far: the lowest loss, or the highest balanced accuracy
with ``select_by="val_balanced_accuracy"``), ``metrics.csv`` (one row per evaluation) and
``checkpoint.pt`` (model, optimizer, :class:`TrainState` and the random states of the torch
generators and of every process's patch sampler, written atomically every ``checkpoint_every``
iterations). Running :func:`train` again on the same folder resumes from the checkpoint and ends
with the same weights as an uninterrupted run (bit for bit on a CPU; on CUDA as far as cuDNN's
kernels are deterministic, i.e. with ``torch.use_deterministic_algorithms(True)``).

The package, from the bottom up: :mod:`~calcscore.training.config` (the settings),
:mod:`~calcscore.training.checkpoint` (saved networks, metrics.csv, checkpoint.pt),
:mod:`~calcscore.training.data` (the split by participant and the voxel pools),
:mod:`~calcscore.training.steps` (one optimisation step, the validation) and
:mod:`~calcscore.training.loop` (the run, single-process or under ``torchrun``). Every name
below stays importable from ``calcscore.training``.
"""

from calcscore.bundle import NETWORKS
from calcscore.runtime import resolve_device
from calcscore.training.checkpoint import (
    CANDIDATES,
    CHECKPOINT,
    METRICS,
    TrainState,
    load_model,
    save_model,
    saved_architecture,
)
from calcscore.training.config import (
    PRESETS,
    TrainConfig,
    get_config,
    paper_config,
    workshop_config,
)
from calcscore.training.data import (
    cnn1_candidate_labels,
    cnn1_proba_patchwise,
    cnn1_proba_slicewise,
    cnn2_pools,
    split_by_participant,
    split_manifest,
)
from calcscore.training.loop import TrainResult, train, train_from_manifest
from calcscore.training.steps import evaluate, make_optimizer, train_step

__all__ = [
    "CANDIDATES",
    "CHECKPOINT",
    "METRICS",
    "NETWORKS",
    "PRESETS",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "cnn1_candidate_labels",
    "cnn1_proba_patchwise",
    "cnn1_proba_slicewise",
    "cnn2_pools",
    "evaluate",
    "get_config",
    "load_model",
    "make_optimizer",
    "paper_config",
    "resolve_device",
    "save_model",
    "saved_architecture",
    "split_by_participant",
    "split_manifest",
    "train",
    "train_from_manifest",
    "train_step",
    "workshop_config",
]
