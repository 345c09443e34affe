"""Training settings: :class:`TrainConfig` and its presets (the paper's and a ~50x cheaper
workshop one), chosen by name with :func:`get_config`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from calcscore.bundle import NETWORKS
from calcscore.constants import Z_CROP_MM
from calcscore.networks import from_known_fields


@dataclass
class TrainConfig:
    """Every training setting. The defaults are the paper's CNN1 (see :func:`paper_config`).

    ``batch_size`` is per process; ``max_dilation`` sets CNN1's receptive field (4 d + 3);
    ``patch_size`` must be the receptive field plus an even number for CNN1 (155 = 131 + 24, so
    the auxiliary outputs see 25 x 25 labelled pixels) and is CNN2's input size (65).
    """

    network: str = "cnn1"
    # CNN1
    width: int = 32
    max_dilation: int = 32
    head_width: int = 128
    aux: bool = True
    gamma: float = 0.05
    # CNN2
    width_scale: float = 1.0
    dense_width: int = 256
    # both
    patch_size: int = 155
    dropout: float = 0.35
    l2: float = 5e-5
    batch_size: int = 64
    learning_rate: float = 5e-4
    max_iterations: int = 100_000
    eval_every: int = 1000
    checkpoint_every: int = 1000
    val_samples: int = 2048
    val_fraction: float = 1.0 / 7.0  # of the participants that are not test (paper: 10 of 70 %)
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast)
    channels_last: bool = False
    #: which validation figure picks the saved weights: "val_loss" (lowest) or
    #: "val_balanced_accuracy" (highest; robust when the loss rises from over-confidence while
    #: the classification still improves)
    select_by: str = "val_loss"
    preset: str = "paper"
    #: the share of training patches cut as from a heart-only scan that ends above and below
    #: them (:class:`calcscore.sampling.PatchSampler`); 0: none (the paper's)
    z_crop: float = 0.0
    #: the range (mm) each end of such a cut is drawn from, uniformly
    z_crop_mm: tuple[float, float] = Z_CROP_MM

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"`network` must be one of {NETWORKS}, got {self.network=}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"`precision` must be 'fp32' or 'bf16', got {self.precision=}")
        if self.select_by not in ("val_loss", "val_balanced_accuracy"):
            raise ValueError(
                f"`select_by` must be 'val_loss' or 'val_balanced_accuracy', got {self.select_by=}"
            )
        for name in (
            "batch_size",
            "max_iterations",
            "eval_every",
            "checkpoint_every",
            "patch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(
                f"`batch_size` must be >= 2 (half calcium, half background), got {self.batch_size=}"
            )
        lo, hi = self.z_crop_mm
        # a tuple of floats however it came (a JSON list from a checkpoint or a saved network)
        object.__setattr__(self, "z_crop_mm", (float(lo), float(hi)))
        if not 0 < lo <= hi:
            raise ValueError(
                f"`z_crop_mm` must be (lo, hi) with 0 < lo <= hi, got {self.z_crop_mm}"
            )
        if self.network == "cnn1":
            rf = 4 * self.max_dilation + 3
            if self.patch_size < rf or (self.patch_size - rf) % 2:
                raise ValueError(
                    f"CNN1's `patch_size` must be its receptive field ({rf}) plus an even "
                    f"number, got {self.patch_size=}"
                )

    @property
    def receptive_field(self) -> int:
        return 4 * self.max_dilation + 3 if self.network == "cnn1" else self.patch_size

    @property
    def label_size(self) -> int | None:
        """Side of the auxiliary label patches (CNN1 with aux outputs), else None."""
        if self.network == "cnn1" and self.aux:
            return self.patch_size - self.receptive_field + 1
        return None

    def network_params(self) -> dict[str, Any]:
        return asdict(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return from_known_fields(cls, d)


def paper_config(network: str = "cnn1", **changes: Any) -> TrainConfig:
    """The paper's settings: Adam 5e-4, batch 64, 131 px receptive field and 155 px patches,
    dropout 35 % and L2 5e-5 for CNN1; 65 px patches, dropout 50 % and L2 1e-5 for CNN2."""
    if network == "cnn2":
        base = TrainConfig(network="cnn2", patch_size=65, dropout=0.5, l2=1e-5, preset="paper")
    else:
        base = TrainConfig(network="cnn1", preset="paper")
    return replace(base, **changes)


def workshop_config(network: str = "cnn1", **changes: Any) -> TrainConfig:
    """A teaching configuration, ~50x cheaper per patch than the paper's, that trains a useful
    model on a CPU in minutes (the times are in benchmarks/README.md).

    CNN1: 16 filters (head 64), largest dilation 8 (receptive field 35 px, 23 mm in-plane),
    45 px patches (11 x 11 auxiliary labels), batch 32, 3,000 iterations: 0.18 GFLOP per
    training patch against the paper's 14.8 (1/84; patches per second:
    ``benchmarks/bench_training.py``). CNN2: half the
    filters, dense 64, the paper's 65 px patches, batch 32, 1,000 iterations. Adam 5e-4, dropout
    and L2 as in the paper. On 14 small phantom scans (``size="small"``) CNN1 reached a balanced
    validation accuracy of 0.94 (7 classes, balanced calcium/background voxels) after 1,250
    iterations.
    """
    if network == "cnn2":
        base = TrainConfig(
            network="cnn2",
            patch_size=65,
            dropout=0.5,
            l2=1e-5,
            width_scale=0.5,
            dense_width=64,
            batch_size=32,
            max_iterations=1000,
            eval_every=200,
            checkpoint_every=200,
            val_samples=512,
            preset="workshop",
        )
    else:
        base = TrainConfig(
            network="cnn1",
            width=16,
            head_width=64,
            max_dilation=8,
            patch_size=45,
            batch_size=32,
            max_iterations=3000,
            eval_every=250,
            checkpoint_every=250,
            val_samples=512,
            preset="workshop",
        )
    return replace(base, **changes)


PRESETS: dict[str, Callable[..., TrainConfig]] = {
    "paper": paper_config,
    "workshop": workshop_config,
}


def get_config(preset: str, network: str, **changes: Any) -> TrainConfig:
    """``get_config("workshop", "cnn1", max_iterations=100)``.

    Args:
        preset: "paper" or "workshop" (:data:`PRESETS`).
        network: "cnn1" or "cnn2".
        changes: settings of :class:`TrainConfig` that replace the preset's.

    Returns:
        the :class:`TrainConfig`.
    """
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset=}")
    return PRESETS[preset](network, **changes)
