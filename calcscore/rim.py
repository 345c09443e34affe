"""The rim fill (not in the paper; step 7 of :mod:`calcscore.inference`): original voxels >= 130 HU
that the network grid never saw, because their 3 mm slab averaged below 130 HU, and that touch a
labelled voxel take its label when they stand a margin of noise SDs above the soft tissue.

Noise and soft-tissue level are estimated from the scan itself (:func:`estimate_noise_sd`,
:func:`soft_tissue_hu`); :func:`fill_rim` grows the labels by one layer into the fillable voxels.
Works on tensors on any device (the ``*_tensor`` functions) and on numpy arrays.
"""

from __future__ import annotations

import numpy as np
import torch

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.preprocess import as_tensor
from calcscore.volume import CTVolume


def _median(x: torch.Tensor, *, by_sort: bool | None = None) -> float:
    """numpy's median (the mean of the two middle values of an even count), on any device.

    The two middle order statistics come from ``kthvalue`` on the CPU (selection, linear time)
    and from one sort elsewhere (``by_sort``, default: off the CPU): CUDA's ``kthvalue`` of one
    long vector runs in a single thread block, far slower than its radix sort. Both are exact."""
    n = x.numel()
    x = x.reshape(-1)
    if x.device.type != "cpu" if by_sort is None else by_sort:
        s = torch.sort(x).values
        lo, hi = s[(n + 1) // 2 - 1], s[n // 2]
    else:
        lo = x.kthvalue((n + 1) // 2).values
        hi = x.kthvalue(n // 2 + 1).values
    return float((lo.double() + hi.double()) / 2)


def _noise_sd_tensor(hu: torch.Tensor, step: int = 4) -> float:
    hu = hu[::step]
    a, b = hu[:, :, 1:], hu[:, :, :-1]
    m = (a > -150) & (a < 150) & (b > -150) & (b < 150)
    if int(m.sum()) < 100:
        return float("nan")
    d = (a[m] - b[m]).double()
    return float(1.4826 * _median((d - _median(d)).abs()) / np.sqrt(2.0))


def _soft_tissue_tensor(hu: torch.Tensor, step: int = 4) -> float:
    hu = hu[::step]
    sel = hu[(hu > -50) & (hu < 150)]
    return _median(sel) if sel.numel() >= 100 else float("nan")


def estimate_noise_sd(volume: CTVolume, *, step: int = 4) -> float:
    """Image noise of a scan in HU: 1.4826 x the median absolute deviation of the differences of
    neighbouring voxels along x among soft-tissue voxels (-150..150 HU), / sqrt 2, on every
    ``step``-th slice. Robust to edges and calcium; it reads low where the reconstruction
    kernel correlates neighbouring voxels (on this project's phantoms 0.7-0.75 x the true SD),
    which :attr:`Model.rim_sigmas` is chosen with."""
    return _noise_sd_tensor(as_tensor(volume.hu), step)


def soft_tissue_hu(volume: CTVolume, *, step: int = 4) -> float:
    """The median HU of soft tissue and blood (voxels between -50 and 150 HU) on every
    ``step``-th slice: about 40 HU in a non-contrast chest (``nan`` without such voxels)."""
    return _soft_tissue_tensor(as_tensor(volume.hu), step)


def rim_threshold_hu(volume: CTVolume, sigmas: float) -> float:
    """The HU an unseen rim voxel needs for :func:`fill_rim`: ``sigmas`` noise SDs above the soft
    tissue (:func:`soft_tissue_hu`, :func:`estimate_noise_sd`), and at least 130 HU. Noise alone
    rarely lifts soft tissue that far. At the shipped model's 2.5 SDs a soft-kernel phantom's rim
    needs 130 HU, a sharp one's about 190-220 HU (130 HU where the scan gives no estimate)."""
    return rim_thresholds_hu(volume, [sigmas])[0]


def rim_thresholds_hu(volume: CTVolume, sigmas, hu: torch.Tensor | None = None) -> list[float]:
    """:func:`rim_threshold_hu` for several margins, estimating the scan's noise once.

    Args:
        volume: the scan (its HU are read when ``hu`` is None).
        sigmas: the margins, in noise SDs above the soft-tissue level.
        hu: the scan's HU as a tensor on some device, to estimate there (None: ``volume.hu``).

    Returns:
        one threshold in HU per margin, never below 130 HU (130 HU each when the noise or the
        soft-tissue level cannot be estimated).
    """
    hu = as_tensor(volume.hu) if hu is None else hu
    level, sd = _soft_tissue_tensor(hu), _noise_sd_tensor(hu)
    if not (np.isfinite(level) and np.isfinite(sd)):
        return [CALCIUM_THRESHOLD_HU for _ in sigmas]
    return [max(CALCIUM_THRESHOLD_HU, level + k * sd) for k in sigmas]


def fill_rim(labels: np.ndarray, fillable: np.ndarray) -> np.ndarray:
    """One layer of ``fillable`` background voxels that touch (26-neighbourhood) a labelled voxel
    take the label most of their labelled neighbours have (the lower label on a tie); labels are
    0 (background) to 7.

    ``fillable`` marks the voxels that may be filled: in :func:`segment`, original voxels the
    network grid did not see and that reach :func:`rim_threshold_hu`. Works on the labelled
    voxels' neighbours only (fast on whole chests). Returns a new array.
    """
    return fill_rim_tensor(as_tensor(labels), as_tensor(fillable)).numpy()


_OFFSETS = torch.tensor(
    [
        (a, b, c)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
        for c in (-1, 0, 1)
        if (a, b, c) != (0, 0, 0)
    ]
)


def fill_rim_tensor(labels: torch.Tensor, fillable: torch.Tensor) -> torch.Tensor:
    """:func:`fill_rim` on tensors, on their device."""
    out = labels.clone()
    zyx = torch.nonzero(labels)
    if not len(zyx):
        return out
    dev = labels.device
    shape = torch.tensor(labels.shape, device=dev)
    strides = torch.tensor([labels.shape[1] * labels.shape[2], labels.shape[2], 1], device=dev)
    lab = labels[tuple(zyx.T)].long()
    keys = []
    for off in _OFFSETS.to(dev):
        n = zyx + off
        ok = ((n >= 0) & (n < shape)).all(dim=1)
        n, n_lab = n[ok], lab[ok]
        at = tuple(n.T)
        free = fillable[at] & (labels[at] == 0)
        keys.append((n[free] * strides).sum(dim=1) * 8 + n_lab[free])
    key, votes = torch.unique(torch.cat(keys), return_counts=True)
    if not len(key):
        return out
    voxel, label = key // 8, key % 8
    # per voxel: most votes first, then the lower label
    voxels, inverse = torch.unique(voxel, return_inverse=True)
    score = votes * 8 + (7 - label)
    best = torch.zeros(len(voxels), dtype=score.dtype, device=dev).scatter_reduce_(
        0, inverse, score, "amax"
    )
    out.view(-1)[voxels] = (7 - best % 8).to(out.dtype)
    return out
