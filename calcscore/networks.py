"""The two networks of Lessmann et al. 2018 (docs/method.md §3-§4), in PyTorch.

Inputs are 2.5D: a tensor ``(N, 3, P, P)`` whose channels are the axial, sagittal and coronal
patches through one voxel (:mod:`calcscore.sampling` cuts them), with intensities normalised by
:func:`calcscore.preprocess.normalise_hu`.

**CNN1** labels candidate voxels with one of the 7 classes of :class:`calcscore.labels.Label`.
Each orientation has its own :class:`Subnet` (conv 3x3 x2, dilated conv 3x3 with dilations
2, 4, ..., ``max_dilation``, conv 3x3, conv 1x1; ELU, no padding, no pooling). Its receptive field
is ``4 * max_dilation + 3`` pixels: 35 / 67 / 131 / 259 for a largest dilation of 8 / 16 / 32 / 64.
A patch larger than the receptive field gives a ``(P - RF + 1)``-sized output map; the auxiliary
classifier (a 1x1 convolution to 7 classes) labels every pixel of that map, and the head (1x1
layer of 128 filters on the three concatenated centre feature vectors, then 7 classes) labels the
centre voxel. The modules are split so that whole-scan inference can run each subnetwork's
:meth:`Subnet.features` over full slices once and apply :meth:`CNN1.head` to the features of the
candidate voxels only.

**CNN2** separates true calcium from CNN1's false positives on 65 x 65 patches: one subnetwork
with weights shared across the three orientations, batch normalisation, ELU, max-pooling, then
dense 256 and a binary output.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from calcscore.labels import N_CLASSES

_M = TypeVar("_M", bound=nn.Module)


def to_channels_last(module: _M) -> _M:
    """``module`` with its weights in channels-last (NHWC) memory layout, in place."""
    return cast(_M, module.to(memory_format=torch.channels_last))  # type: ignore[call-overload]


log = logging.getLogger(__name__)

#: Largest dilations the paper compares, and the receptive fields they give.
RECEPTIVE_FIELDS: dict[int, int] = {8: 35, 16: 67, 32: 131, 64: 259}
#: Prediction weights of the paper: p = 1/2 p_N + 1/6 (p_A + p_S + p_C).
WEIGHT_HEAD = 0.5
WEIGHT_AUX = 1.0 / 6.0
ORIENTATIONS: tuple[str, ...] = ("axial", "sagittal", "coronal")


def receptive_field(max_dilation: int) -> int:
    """Receptive field (pixels) of a CNN1 subnetwork whose largest dilation is ``max_dilation``."""
    return 4 * _check_dilation(max_dilation) + 3


def max_dilation_for(receptive_field_px: int) -> int:
    """The largest dilation that gives ``receptive_field_px`` (35, 67, 131, 259, ...)."""
    d = (receptive_field_px - 3) // 4
    if d < 2 or d & (d - 1) or 4 * d + 3 != receptive_field_px:
        raise ValueError(
            f"`receptive_field_px` must be 4 * 2**k + 3 (35, 67, 131, 259), got {receptive_field_px=}"
        )
    return d


def _check_dilation(max_dilation: int) -> int:
    d = int(max_dilation)
    if d < 2 or d & (d - 1):
        raise ValueError(
            f"`max_dilation` must be a power of two >= 2 (8, 16, 32, 64), got {max_dilation=}"
        )
    return d


# ----------------------------------------------------------------------------------------- CNN1
def from_known_fields(cls, d: dict[str, Any]):
    """``cls(**d)`` with only the keys that are fields of the dataclass ``cls`` (a saved config may
    carry settings of another network or of training)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class CNN1Config:
    """Hyperparameters of CNN1 (paper: 32 filters, largest dilation 32 -> 131 px, aux on)."""

    width: int = 32
    max_dilation: int = 32
    head_width: int = 128
    aux: bool = True
    dropout: float = 0.35
    n_classes: int = N_CLASSES

    def __post_init__(self) -> None:
        _check_dilation(self.max_dilation)
        if self.width < 1 or self.head_width < 1:
            raise ValueError(
                f"`width` and `head_width` must be >= 1, got {self.width=}, {self.head_width=}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must lie in [0, 1), got {self.dropout=}")

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.max_dilation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNN1Config:
        return from_known_fields(cls, d)


class Subnet(nn.Module):
    """One orientation's CNN1 subnetwork: unpadded 3x3 convolutions with growing dilation."""

    def __init__(
        self,
        *,
        width: int = 32,
        max_dilation: int = 32,
        aux: bool = True,
        dropout: float = 0.35,
        n_classes: int = N_CLASSES,
    ):
        super().__init__()
        dilations = [1, 1]
        d = 2
        while d <= _check_dilation(max_dilation):
            dilations.append(d)
            d *= 2
        dilations.append(1)
        layers: list[nn.Module] = []
        c_in = 1
        for dil in dilations:
            layers += [nn.Conv2d(c_in, width, 3, dilation=dil), nn.ELU()]
            c_in = width
        layers += [nn.Conv2d(width, width, 1), nn.ELU()]
        self.body = nn.Sequential(*layers)
        self.receptive_field = receptive_field(max_dilation)
        self.aux_classifier = (
            nn.Sequential(nn.Dropout(dropout), nn.Conv2d(width, n_classes, 1)) if aux else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) slices -> (N, width, H - RF + 1, W - RF + 1) feature maps.

        Output pixel (i, j) describes input pixel (i + RF // 2, j + RF // 2).
        """
        return self.body(x)

    def aux(self, features: torch.Tensor) -> torch.Tensor:
        """Auxiliary class logits (N, 7, h, w) of feature maps, or of (N, width) vectors -> (N, 7)."""
        if self.aux_classifier is None:
            raise ValueError("this CNN1 was built with `aux=False`: it has no auxiliary outputs")
        if features.ndim == 2:
            return self.aux_classifier(features[:, :, None, None])[:, :, 0, 0]
        return self.aux_classifier(features)


class CNN1Output(NamedTuple):
    """Logits of one CNN1 forward pass over 2.5D patches.

    ``head``: (N, 7) for the centre voxel; ``aux``: three (N, 7, h, w) maps (axial, sagittal,
    coronal) over the central ``h = P - RF + 1`` pixels, or None when auxiliary outputs are off.
    """

    head: torch.Tensor
    aux: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None


class CNN1(nn.Module):
    """CNN1: three :class:`Subnet` s, auxiliary classifiers and a 128-filter head."""

    def __init__(self, config: CNN1Config | None = None, **kwargs: Any):
        super().__init__()
        config = config or CNN1Config(**kwargs)
        self.config = config
        sub: dict[str, Any] = dict(
            width=config.width,
            max_dilation=config.max_dilation,
            aux=config.aux,
            dropout=config.dropout,
            n_classes=config.n_classes,
        )
        self.axial = Subnet(**sub)
        self.sagittal = Subnet(**sub)
        self.coronal = Subnet(**sub)
        self.head_layers = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(3 * config.width, config.head_width),
            nn.ELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.head_width, config.n_classes),
        )

    @property
    def receptive_field(self) -> int:
        return self.config.receptive_field

    @property
    def subnets(self) -> tuple[Subnet, Subnet, Subnet]:
        return (self.axial, self.sagittal, self.coronal)

    def head(
        self, feats_a: torch.Tensor, feats_s: torch.Tensor, feats_c: torch.Tensor
    ) -> torch.Tensor:
        """Head logits from the three orientations' centre feature vectors.

        Args:
            feats_a, feats_s, feats_c: (N, width) features of the axial, sagittal and coronal
                subnetworks at the same N voxels.

        Returns:
            (N, 7) logits.
        """
        return self.head_layers(torch.cat([feats_a, feats_s, feats_c], dim=1))

    def output_size(self, patch_size: int) -> int:
        """Side of the output map for ``patch_size`` patches (1 when the patch equals the RF)."""
        n = patch_size - self.receptive_field + 1
        if n < 1 or n % 2 == 0:
            raise ValueError(
                f"`patch_size` must be the receptive field ({self.receptive_field}) plus an "
                f"even number of pixels, got {patch_size=}"
            )
        return n

    def forward(self, x: torch.Tensor) -> CNN1Output:
        """x: (N, 3, P, P) axial, sagittal, coronal patches centred on the voxels to label."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"CNN1 expects (N, 3, P, P) patches, got shape {tuple(x.shape)}")
        c = self.output_size(x.shape[-1]) // 2
        feats = [net.features(x[:, i : i + 1]) for i, net in enumerate(self.subnets)]
        head = self.head(*(f[:, :, c, c] for f in feats))
        aux = tuple(net.aux(f) for net, f in zip(self.subnets, feats)) if self.config.aux else None
        return CNN1Output(head, aux)  # type: ignore[arg-type]

    @torch.no_grad()
    def for_inference(self, channels_last: bool = False) -> CNN1:
        """An eval-mode copy for inference (:func:`calcscore.inference.segment`): its ELUs in
        place (:func:`inplace_elus`), its weights channels-last (NHWC) if ``channels_last``; the
        model itself, e.g. one being trained, is left as it is."""
        copied = inplace_elus(copy.deepcopy(self).eval())
        return to_channels_last(copied) if channels_last else copied

    @staticmethod
    def combine(
        head_logits: torch.Tensor,
        aux_logits: tuple[torch.Tensor, ...] | None,
    ) -> torch.Tensor:
        """Class probabilities p = 1/2 p_N + 1/6 (p_A + p_S + p_C) from (N, 7) logits.

        Without auxiliary outputs the head alone decides (p = p_N).
        """
        p = F.softmax(_at_least_fp32(head_logits), dim=1)
        if aux_logits is None:
            return p
        p_aux = sum(F.softmax(_at_least_fp32(a), dim=1) for a in aux_logits)
        return WEIGHT_HEAD * p + WEIGHT_AUX * p_aux

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 7) class probabilities of the centre voxels of (N, 3, P, P) patches."""
        out = self(x)
        aux = None
        if out.aux is not None:
            c = out.aux[0].shape[-1] // 2
            aux = tuple(a[:, :, c, c] for a in out.aux)
        return self.combine(out.head, aux)  # type: ignore[arg-type]


def inplace_elus(module: _M) -> _M:
    """``module`` with every ELU computed in place; for inference copies only.

    Each ELU of CNN1 and CNN2 follows a convolution, a linear layer or (in :meth:`CNN2.folded`) a
    max-pooling, whose fresh output nothing else reads, so the values are the same. On a CPU
    the ELUs of a CNN1 subnetwork cost about as much as its convolutions, and in place they cost
    less (benchmarks/README.md).
    """
    for m in module.modules():
        if isinstance(m, nn.ELU):
            m.inplace = True
    return module


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype == torch.float64 else t.float()


# ----------------------------------------------------------------------------------------- CNN2
@dataclass(frozen=True)
class CNN2Config:
    """Hyperparameters of CNN2 (paper: 65 x 65 patches, dense 256, dropout 50 %)."""

    patch_size: int = 65
    dense_width: int = 256
    dropout: float = 0.5
    width_scale: float = 1.0  # multiplies the filter counts 24, 32, 48, 32

    def __post_init__(self) -> None:
        if self.patch_size < 24:
            raise ValueError(
                f"`patch_size` must be >= 24 (three pooling stages), got {self.patch_size=}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must lie in [0, 1), got {self.dropout=}")
        if self.width_scale <= 0:
            raise ValueError(f"`width_scale` must be > 0, got {self.width_scale=}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNN2Config:
        return from_known_fields(cls, d)


def _conv_bn(c_in: int, c_out: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, bias=False), nn.BatchNorm2d(c_out), nn.ELU()]


class CNN2(nn.Module):
    """CNN2: a shared 2D tower per orientation -> concat -> dense 256 -> 2 classes."""

    def __init__(self, config: CNN2Config | None = None, **kwargs: Any):
        super().__init__()
        config = config or CNN2Config(**kwargs)
        self.config = config
        c1, c2, c3, c4 = (max(1, round(c * config.width_scale)) for c in (24, 32, 48, 32))
        self.tower = nn.Sequential(
            *_conv_bn(1, c1, 5),
            nn.MaxPool2d(2),
            *_conv_bn(c1, c2, 3),
            nn.MaxPool2d(2),
            *_conv_bn(c2, c3, 3),
            nn.MaxPool2d(2),
            *_conv_bn(c3, c4, 1),
        )
        side = config.patch_size
        side = (side - 4) // 2
        side = (side - 2) // 2
        side = (side - 2) // 2
        self.tower_features = c4 * side * side
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(3 * self.tower_features, config.dense_width, bias=False),
            nn.BatchNorm1d(config.dense_width),
            nn.ELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.dense_width, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, P, P) patches -> (N, 2) logits (index 1 = calcium)."""
        n, c, h, w = x.shape
        if c != 3 or h != self.config.patch_size or w != self.config.patch_size:
            raise ValueError(
                f"CNN2 expects (N, 3, {self.config.patch_size}, {self.config.patch_size}) "
                f"patches, got shape {tuple(x.shape)}"
            )
        # the three orientations share the tower's weights: fold them into the batch
        f = self.tower(x.reshape(n * 3, 1, h, w)).reshape(n, 3 * self.tower_features)
        return self.classifier(f)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) probability that the centre voxel is calcium."""
        return F.softmax(self(x).float(), dim=1)[:, 1]

    @torch.no_grad()
    def folded(self, channels_last: bool = False) -> CNN2:
        """An eval-mode copy with every batch norm folded into the convolution or dense layer
        before it (the same function in eval mode, one pass over memory less per layer: with
        channels-last, CNN2 runs faster on a CPU, benchmarks/README.md), and each max-pooling
        moved before the ELU in front of it (the same values, a quarter of the ELU's work), and
        the ELUs in place (:func:`inplace_elus`); its weights channels-last (NHWC) if
        ``channels_last``, as :meth:`CNN1.for_inference`."""
        net = copy.deepcopy(self).eval()

        def fold(seq: nn.Sequential) -> nn.Sequential:
            mods = list(seq)
            out: list[nn.Module] = []
            for i, m in enumerate(mods):
                if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                    continue
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                if isinstance(m, nn.Conv2d | nn.Linear) and isinstance(
                    nxt, nn.BatchNorm1d | nn.BatchNorm2d
                ):
                    assert nxt.running_var is not None and nxt.running_mean is not None
                    mean, var = nxt.running_mean, nxt.running_var
                    scale = nxt.weight / torch.sqrt(var + nxt.eps)
                    bias = m.bias if m.bias is not None else torch.zeros_like(mean)
                    new: nn.Conv2d | nn.Linear
                    if isinstance(m, nn.Conv2d):
                        new = nn.Conv2d(
                            m.in_channels,
                            m.out_channels,
                            cast(tuple[int, int], m.kernel_size),
                            cast(tuple[int, int], m.stride),
                            cast(tuple[int, int], m.padding),
                            cast(tuple[int, int], m.dilation),
                            m.groups,
                            bias=True,
                        )
                        new.weight.copy_(m.weight * scale.view(-1, 1, 1, 1))
                    else:
                        new = nn.Linear(m.in_features, m.out_features, bias=True)
                        new.weight.copy_(m.weight * scale.view(-1, 1))
                    assert new.bias is not None  # made with bias=True
                    new.bias.copy_((bias - mean) * scale + nxt.bias)
                    out.append(new.to(m.weight.device, m.weight.dtype))
                else:
                    out.append(m)
            # ELU is increasing, so max-pooling first gives the same values: the ELU then touches
            # a quarter of the voxels (on a CPU the first ELU costs more than the first convolution)
            for i in range(len(out) - 1):
                if isinstance(out[i], nn.ELU) and isinstance(out[i + 1], nn.MaxPool2d):
                    out[i], out[i + 1] = out[i + 1], out[i]
            return nn.Sequential(*out).eval()

        net.tower = fold(net.tower)
        net.classifier = fold(net.classifier)
        net = inplace_elus(net)
        return to_channels_last(net) if channels_last else net


def build_network(kind: str, params: dict[str, Any]) -> nn.Module:
    """Build ``"cnn1"`` or ``"cnn2"`` from a dict of hyperparameters (unknown keys are ignored)."""
    if kind == "cnn1":
        return CNN1(CNN1Config.from_dict(params))
    if kind == "cnn2":
        return CNN2(CNN2Config.from_dict(params))
    raise ValueError(f"`kind` must be 'cnn1' or 'cnn2', got {kind=}")


def regularised_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, others): convolution and dense weights get L2; biases and BN parameters do not."""
    decay: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, nn.Conv2d | nn.Linear)
            (decay if is_weight else other).append(p)
    return decay, other
