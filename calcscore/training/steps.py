"""One training step and the validation of a network (docs/method.md §5).

L2 regularisation follows Lasagne, which the authors used: ``l2 * sum(w ** 2)`` over convolution
and dense weights (not biases or batch-norm parameters), i.e. Adam's ``weight_decay = 2 * l2``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from calcscore.labels import CAC_LABELS, CORONARY, IGNORE
from calcscore.networks import CNN1, regularised_parameters
from calcscore.runtime import autocast, unwrap_ddp
from calcscore.sampling import PatchSampler
from calcscore.training.config import TrainConfig


def label_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of class logits (N, C, ...) against targets (N, ...), averaged over the
    labelled targets: :data:`~calcscore.labels.IGNORE` (not annotated) counts for nothing (0 when
    all are), and :data:`~calcscore.labels.CORONARY` (coronary, artery not given) costs
    ``-log(p_LAD + p_LCX + p_RCA)``, so it teaches "coronary" without naming an artery."""
    ignored = target == IGNORE
    coronary = target == CORONARY
    if not bool(coronary.any()):
        if not bool(ignored.any()):
            return F.cross_entropy(logits, target)
        total = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        return total / (~ignored).sum().clamp(min=1)
    logp = F.log_softmax(logits, dim=1)
    plain = torch.where(ignored | coronary, torch.zeros_like(target), target)
    nll = -logp.gather(1, plain.unsqueeze(1)).squeeze(1)
    cac = -torch.logsumexp(logp[:, list(CAC_LABELS)], dim=1)
    nll = torch.where(coronary, cac, nll).masked_fill(ignored, 0.0)
    return nll.sum() / (~ignored).sum().clamp(min=1)


def _forward(config: TrainConfig, model: nn.Module, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, class probabilities used for the decision) of one batch.

    CNN1: L = L_N + gamma (L_A + L_S + L_C), the head loss on the centre voxel and the auxiliary
    losses on every labelled output pixel; its decision averages the four outputs at the centre
    (1/2 head, 1/6 each auxiliary). CNN2: binary cross-entropy, calcium = any calcium label.
    """
    if config.network == "cnn1":
        out = model(batch.x)
        loss = label_loss(out.head.float(), batch.target)
        aux_centre = None
        if out.aux is not None:
            if config.gamma > 0:
                for i, aux in enumerate(out.aux):
                    loss = loss + config.gamma * label_loss(aux.float(), batch.aux_target[:, i])
            c = out.aux[0].shape[-1] // 2
            aux_centre = tuple(a[:, :, c, c] for a in out.aux)
        return loss, CNN1.combine(out.head.detach(), aux_centre)
    logits = model(batch.x)
    loss = F.cross_entropy(logits.float(), (batch.target > 0).long())
    return loss, F.softmax(logits.detach().float(), dim=1)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the paper's learning rate; L2 on convolution and dense weights only."""
    decay, other = regularised_parameters(model)
    return torch.optim.Adam(
        [
            {"params": decay, "weight_decay": 2.0 * config.l2},
            {"params": other, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
    )


def train_step(
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch,
    *,
    device: torch.device,
) -> torch.Tensor:
    """One optimisation step on one minibatch (in ``config.precision``).

    Args:
        config: the run's settings (network, precision, channels-last, auxiliary losses).
        model: the network in training mode (DDP-wrapped or not).
        optimizer: its optimizer.
        batch: a minibatch of patches and targets (:class:`calcscore.sampling.PatchSampler`).
        device: the device the batch is on.

    Returns:
        the detached loss as a tensor on the device (reading it waits for the GPU: do that only
        when needed).
    """
    if config.channels_last:
        batch = batch._replace(x=batch.x.contiguous(memory_format=torch.channels_last))
    with autocast(device, config.precision == "bf16"):
        loss, _ = _forward(config, model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(
    config: TrainConfig,
    model: nn.Module,
    sampler: PatchSampler,
    voxels: tuple[np.ndarray, np.ndarray],
    *,
    device: torch.device,
    batch_size: int = 128,
) -> dict[str, float]:
    """Loss, accuracy and balanced accuracy (mean recall over the classes present) of fixed
    validation voxels. CNN1's decision uses the paper's weighted average of its four outputs.

    Args:
        config: the run's settings.
        model: the network (put in eval mode for the call, then back).
        sampler: the validation sampler that cuts the patches.
        voxels: (scan indices, flat indices) of the validation voxels.
        device: the device the sampler's store is on.
        batch_size: patches per forward pass.

    Returns:
        ``{"val_loss", "val_accuracy", "val_balanced_accuracy"}``.
    """
    net = unwrap_ddp(model)
    was_training = net.training
    net.eval()
    scan, flat = voxels
    total_loss, n = 0.0, 0
    preds, targets = [], []
    try:
        for i in range(0, len(flat), batch_size):
            b = sampler.batch_at(scan[i : i + batch_size], flat[i : i + batch_size])
            if config.channels_last:
                b = b._replace(x=b.x.contiguous(memory_format=torch.channels_last))
            with autocast(device, config.precision == "bf16"):
                loss, proba = _forward(config, net, b)
            total_loss += float(loss) * len(b.target)
            n += len(b.target)
            preds.append(proba.argmax(dim=1).cpu())
            t = b.target if config.network == "cnn1" else (b.target > 0).long()
            targets.append(t.cpu())
    finally:
        net.train(was_training)
    pred = torch.cat(preds).numpy()
    target = torch.cat(targets).numpy()
    # coronary calcium of no given artery is right when called any coronary artery
    pred = np.where((target == CORONARY) & np.isin(pred, CAC_LABELS), CORONARY, pred)
    recalls = [float(np.mean(pred[target == c] == c)) for c in np.unique(target)]
    return {
        "val_loss": total_loss / max(n, 1),
        "val_accuracy": float(np.mean(pred == target)),
        "val_balanced_accuracy": float(np.mean(recalls)) if recalls else math.nan,
    }
