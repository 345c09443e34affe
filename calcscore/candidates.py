"""The geometry of candidates: the body mask that bounds them, the normalised block the networks
read, and the way labels on the network grid go back to the scan's grid (where voxels the network
grid never saw are filled by the rim rule of :mod:`calcscore.rim`). Used by
:func:`calcscore.inference.segment` and by calibration.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from calcscore.constants import BODY_THRESHOLD_HU, CALCIUM_THRESHOLD_HU, HU_CLIP, PAD_HU, scale_hu
from calcscore.preprocess import as_tensor, grid_to_grid_tensor
from calcscore.rim import fill_rim_tensor
from calcscore.volume import CTVolume, LabelVolume


def _to_original_grid(
    labels_net: LabelVolume,
    volume: CTVolume,
    keep_below_threshold: bool,
    candidates_net: np.ndarray | None = None,
    rim_min_hu: float | None = None,
) -> LabelVolume:
    cand = None if candidates_net is None else as_tensor(candidates_net)
    out = _to_original_grid_tensor(
        as_tensor(labels_net.labels),
        labels_net,
        volume,
        as_tensor(volume.hu),
        keep_below_threshold,
        cand,
        rim_min_hu,
    )
    return LabelVolume.like(volume, out.numpy().astype(np.uint8, copy=False))


def _to_original_grid_tensor(
    labels_net: torch.Tensor,
    net_grid,
    volume: CTVolume,
    hu: torch.Tensor,
    keep_below_threshold: bool,
    candidates_net: torch.Tensor | None = None,
    rim_min_hu: float | None = None,
) -> torch.Tensor:
    """Steps 6 and 7 on tensors (on the device of ``labels_net``; ``hu``: the scan's HU there)."""
    out = grid_to_grid_tensor(labels_net, net_grid, volume)
    if not keep_below_threshold:
        out = out * (hu >= CALCIUM_THRESHOLD_HU)
    if rim_min_hu is not None and candidates_net is not None and bool(out.any()):
        out = fill_rim_tensor(
            out, _unseen_tensor(candidates_net, net_grid, volume) & (hu >= rim_min_hu)
        )
    return out


def _unseen_tensor(candidates_net: torch.Tensor, net_grid, volume: CTVolume) -> torch.Tensor:
    return grid_to_grid_tensor(candidates_net.to(torch.uint8), net_grid, volume) == 0


def unseen_mask(candidates_net: np.ndarray, net_grid: LabelVolume, volume: CTVolume) -> np.ndarray:
    """Voxels of ``volume`` whose nearest network-grid voxel was not a candidate: what the
    networks never saw.

    Args:
        candidates_net: boolean candidate mask on the network grid
            (:attr:`Segmentation.candidates_network`).
        net_grid: a label volume on the network grid (its geometry is used).
        volume: the scan, whose grid the mask is on.

    Returns:
        a boolean array of ``volume``'s shape.
    """
    return _unseen_tensor(as_tensor(candidates_net), net_grid, volume).numpy()


def _body_coarse(above: np.ndarray) -> np.ndarray:
    """The body on a coarse grid: the largest connected region of ``above``, holes (the lungs)
    filled slice by slice, grown by one voxel in-plane."""
    if not above.any():
        return above
    lab, n = ndimage.label(above)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        above = lab == int(np.argmax(sizes))
    for z in range(above.shape[0]):
        above[z] = ndimage.binary_fill_holes(above[z])
    # grow by one coarse voxel so that the skin stays inside after scaling up
    return ndimage.binary_dilation(above, structure=np.ones((1, 3, 3), bool))


def body_mask(
    volume: CTVolume, *, threshold_hu: float = BODY_THRESHOLD_HU, step: int = 4
) -> np.ndarray:
    """The patient's body: the largest connected region above ``threshold_hu``, with holes (the
    lungs) filled slice by slice. Found on an in-plane grid ``step`` times coarser (the body is
    large; this keeps whole-scan inference fast), then scaled back up.

    Args:
        volume: a CT in HU.
        threshold_hu: voxels above this are tissue (-400 HU: the lungs and the air are not).
        step: in-plane subsampling of the coarse grid, in voxels.

    Returns:
        a boolean array of the volume's (z, y, x) shape.
    """
    return body_mask_tensor(as_tensor(volume.hu), threshold_hu=threshold_hu, step=step).numpy()


def body_mask_tensor(
    hu: torch.Tensor, *, threshold_hu: float = BODY_THRESHOLD_HU, step: int = 4
) -> torch.Tensor:
    """:func:`body_mask` of HU on some device (the coarse grid is labelled on the CPU).

    Args:
        hu: (Z, Y, X) HU on any device.
        threshold_hu, step: as for :func:`body_mask`.

    Returns:
        a boolean (Z, Y, X) tensor on the device of ``hu``.
    """
    coarse = _body_coarse((hu[:, ::step, ::step] > threshold_hu).cpu().numpy())
    full = (
        torch.from_numpy(coarse).to(hu.device).repeat_interleave(step, 1).repeat_interleave(step, 2)
    )
    return full[:, : hu.shape[1], : hu.shape[2]]


def _normalised_block(hu: torch.Tensor, lo: np.ndarray, hi: np.ndarray, r: int) -> torch.Tensor:
    """Normalised intensities of [lo - r, hi + r) (z, y, x), -1000 HU outside the scan, on the
    device of ``hu``."""
    shape = np.asarray(hu.shape)
    a, b = lo - r, hi + r
    out = torch.full(tuple(int(v) for v in b - a), PAD_HU, dtype=torch.float32, device=hu.device)
    sa, sb = np.maximum(a, 0), np.minimum(b, shape)
    out[tuple(slice(int(s - o), int(e - o)) for s, e, o in zip(sa, sb, a))] = hu[
        tuple(slice(int(s), int(e)) for s, e in zip(sa, sb))
    ]
    out.clamp_(*HU_CLIP)
    return scale_hu(out)
