"""Whole-scan inference with CNN1 + CNN2 (docs/method.md §3, last point).

A scan stored in another layout than DICOM's usual one is turned into it first (no resampling,
:mod:`calcscore.orientation`) and its labels are turned back after the last step.

1. Preprocess to the network grid (3 mm slabs every 1.5 mm, 0.66 mm in-plane).
2. Candidates: voxels >= 130 HU inside the body (the largest connected region above -400 HU, holes
   filled slice by slice), so the table, the air and noise outside the patient are skipped.
3. CNN1, fully convolutionally: each orientation's subnetwork runs once over every slice of that
   orientation that holds a candidate (never one patch per voxel); its 32 features are kept at the
   candidate voxels only, so memory grows with the number of candidates, not with the scan. The
   slices are cut from the candidates' box (widened to few shapes) grown by half the receptive
   field, everything outside the scan reading -1000 HU as in the training patches
   (:mod:`calcscore.sampling`): the output equals patch-by-patch classification.
4. The head (and the auxiliary classifiers) on the candidates' feature vectors; p = 1/2 p_N + 1/6
   (p_A + p_S + p_C); the most probable class wins.
5. CNN2 on the voxels CNN1 calls calcium (65 x 65 2.5D patches); a voxel survives when CNN2's
   calcium probability reaches the threshold of its label group (the paper's 0.5, or the thresholds
   the model chose on validation scans, :mod:`calcscore.calibration`) and keeps CNN1's label.
6. Back to the original grid by nearest neighbour; a label is kept only on original voxels >= 130 HU
   (the calcium threshold the reference annotations use).
7. The rim (not in the paper): original voxels >= 130 HU that the network never saw (their 3 mm slab
   averaged below 130 HU: 8-17 % of the reference calcium of the heart-region test phantoms) and
   that touch a labelled voxel take its label when they stand ``rim_sigmas`` noise SDs above the
   soft tissue (:func:`fill_rim`, :func:`rim_threshold_hu`). ``InferenceOptions(rim_fill=False)``
   gives the paper's nearest-neighbour mapping.
8. The safety net (not in the paper): labels outside their anatomical region, found from the scan
   (:mod:`calcscore.regions`: coronary and valve labels in the heart, aortic labels in the
   mediastinum, none on bone), are removed. ``InferenceOptions(safety_net=False)`` turns it off.
9. The lesion fill (not in the paper): a coronary lesion (26-connected voxels >= the model's
   ``lesion_fill_hu``) labelled in large part (its ``lesion_fill`` share) is labelled whole, within
   the net (:func:`calcscore.postprocess.fill_within_net`; ``lesion_fill=0``: off).
10. The artery vote (not in the paper): a coronary lesion takes the artery of two thirds of its
   voxels (:func:`calcscore.lesions.vote_arteries`; ``artery_vote=False``: off).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

# re-exported as before: DEFAULT_MODEL_DIR, threshold_table, bf16_supported, resolve_precision
from calcscore.bundle import DEFAULT_MODEL_DIR, load_bundle, threshold_table  # noqa: F401
from calcscore.candidates import (  # noqa: F401  (re-exported: calcscore.inference.body_mask etc.)
    _normalised_block,
    _to_original_grid,
    _to_original_grid_tensor,
    body_mask,
    body_mask_tensor,
    unseen_mask,
)
from calcscore.constants import BODY_THRESHOLD_HU, CALCIUM_THRESHOLD_HU  # noqa: F401 (re-export)
from calcscore.networks import CNN1, CNN2
from calcscore.orientation import to_standard
from calcscore.postprocess import (  # noqa: F401  (DEFAULT_RIM_SIGMAS: re-exported as before)
    DEFAULT_RIM_SIGMAS,
    _lesion_fill,
    _rim_threshold,
    _safety_net,
    finish_labels,
)
from calcscore.preprocess import as_tensor, network_grid_tensor
from calcscore.rim import (  # noqa: F401  (re-exported: calcscore.inference.fill_rim etc. as before)
    _median,
    estimate_noise_sd,
    fill_rim,
    fill_rim_tensor,
    rim_threshold_hu,
    rim_thresholds_hu,
    soft_tissue_hu,
)
from calcscore.runtime import (  # noqa: F401
    autocast,
    bf16_supported,
    bucket_count,
    bucket_span,
    pad_index,
    resolve_precision,
)
from calcscore.segmentation import Segmentation  # noqa: F401  (re-exported as before)
from calcscore.volume import CTVolume, LabelVolume

log = logging.getLogger(__name__)


@dataclass
class Model:
    """A loaded CNN1 (+ optional CNN2) and what is known about how it was trained."""

    cnn1: CNN1
    cnn2: CNN2 | None = None
    info: dict[str, Any] = field(default_factory=dict)
    source: str = "in memory"
    #: CNN2's decision threshold per label group ({"CAC": 0.3, "TAC": 0.2, ...}), chosen on
    #: validation scans (calcscore.calibration); groups not named use the paper's 0.5.
    cnn2_thresholds: dict[str, float] | None = None
    #: noise SDs above the soft tissue that an unseen rim voxel needs to take its neighbour's
    #: label (:func:`rim_threshold_hu`); chosen on validation scans, model.json "rim_sigmas"
    rim_sigmas: float | None = None
    #: whether the rim fill helped on validation scans (model.json "rim_fill"; default on)
    rim_fill: bool = True
    #: remove labels outside their regions (:mod:`calcscore.regions`; model.json "safety_net")
    safety_net: bool = True
    #: the lesion fill's labelled share (:mod:`calcscore.lesion_fill`; "lesion_fill"; None: off)
    lesion_fill: float | None = None
    #: the HU of a lesion's voxels in the lesion fill (model.json "lesion_fill_hu")
    lesion_fill_hu: float = CALCIUM_THRESHOLD_HU

    @classmethod
    def load(cls, path: str | Path | None = None, *, device: str | torch.device = "cpu") -> Model:
        """Load ``cnn1.pt`` (and ``cnn2.pt`` when present) from a folder; the shipped model
        (no real annotated scan trained it, see its model card) when ``path`` is None."""
        cnn1, cnn2, info, folder = load_bundle(path, device=device)
        return cls(
            cnn1,
            cnn2,
            info,
            str(folder),
            info.get("cnn2_thresholds"),
            info.get("rim_sigmas"),
            bool(info.get("rim_fill", True)),
            bool(info.get("safety_net", True)),
            info.get("lesion_fill"),
            float(info.get("lesion_fill_hu") or CALCIUM_THRESHOLD_HU),
        )


@dataclass(frozen=True)
class InferenceOptions:
    """Knobs of :func:`segment`. ``batch_slices``: slices per subnetwork pass; ``batch_voxels``:
    candidate voxels per head batch; ``batch_cnn2``: voxels per CNN2 batch (the paper's CNN2
    holds 3 x 24 x 61 x 61 first-layer values per voxel, 1.1 MB in fp32: 4,096 voxels would need
    4.4 GB; None: :data:`CNN2_BATCH_CPU` on a CPU, :data:`CNN2_BATCH_GPU` elsewhere, see
    :func:`cnn2_batch`); ``bf16``: bfloat16 autocast; ``channels_last``: NHWC memory layout
    (faster convolutions on recent CPUs and GPUs); ``use_cnn2``: run the false-positive reduction
    when the model has a CNN2; ``restrict_to_body``: skip candidates
    outside the body; ``keep_below_threshold``: keep labels on original voxels < 130 HU;
    ``cnn2_threshold``: keep a voxel when CNN2's calcium probability reaches this (None: the
    model's thresholds per label group, see :attr:`Model.cnn2_thresholds`); ``rim_fill``: give
    the unseen rim of labelled lesions their label (step 7 above, :func:`fill_rim`);
    ``rim_sigmas``: its noise margin (None for both: the model's, :attr:`Model.rim_fill` and
    :attr:`Model.rim_sigmas`); ``safety_net``: remove labels outside their anatomical region
    (step 8 above, :mod:`calcscore.regions`; None: the model's, :attr:`Model.safety_net`);
    ``lesion_fill``: the share of a lesion that must be labelled for the rest to be (step 9,
    :mod:`calcscore.lesion_fill`; None: the model's, :attr:`Model.lesion_fill`; 0: off);
    ``artery_vote``: one artery per coronary lesion (step 10)."""

    device: str = "cpu"
    batch_slices: int = 8
    batch_voxels: int = 4096
    batch_cnn2: int | None = None
    bf16: bool = False
    channels_last: bool = False
    use_cnn2: bool = True
    restrict_to_body: bool = True
    keep_below_threshold: bool = False
    cnn2_threshold: float | None = None
    rim_fill: bool | None = None
    rim_sigmas: float | None = None
    safety_net: bool | None = None
    lesion_fill: float | None = None
    artery_vote: bool = True

    def __post_init__(self) -> None:
        if self.batch_cnn2 is not None and self.batch_cnn2 < 1:
            raise ValueError(
                f"`batch_cnn2` must be >= 1 (or None: the device's default), got {self.batch_cnn2=}"
            )


#: CNN2's voxels per batch on a CPU: its layers are memory-bound there, and 32 voxels' activations
#: (17 MB in bf16 after the first convolution) stay in the caches where 512 voxels' (274 MB) do
#: not, so small batches are faster there with identical labels (benchmarks/README.md).
CNN2_BATCH_CPU = 32
#: CNN2's voxels per batch on a GPU, where large batches fill the device.
CNN2_BATCH_GPU = 512


def cnn2_batch(opts: InferenceOptions, device: torch.device) -> int:
    """CNN2's voxels per batch: ``opts.batch_cnn2``, or the device's default when it is None."""
    if opts.batch_cnn2 is not None:
        return int(opts.batch_cnn2)
    return CNN2_BATCH_CPU if device.type == "cpu" else CNN2_BATCH_GPU


def cnn1_features(
    cnn1: CNN1, norm: torch.Tensor, cand: np.ndarray | torch.Tensor, r: int, opts: InferenceOptions
) -> list[torch.Tensor]:
    """Per orientation, the (N, width) features of the candidate voxels.

    Args:
        cnn1: the network (an inference copy, :meth:`CNN1.for_inference`, on the block's device).
        norm: (Z + 2r, Y + 2r, X + 2r) normalised intensities with a margin of ``r`` voxels.
        cand: (N, 3) candidate (z, y, x) inside the block's core (without the margin).
        r: the margin in voxels, at least half CNN1's receptive field.
        opts: ``batch_slices`` (slices per subnetwork pass), ``channels_last`` and ``bf16``.

    Returns:
        [axial, sagittal, coronal] float32 (N, width) features, on the block's device.
    """
    device = norm.device
    out = []
    # (orientation axis of the block, the two in-plane coordinate columns of cand)
    plan = ((cnn1.axial, 0, (1, 2)), (cnn1.sagittal, 2, (0, 1)), (cnn1.coronal, 1, (0, 2)))
    cand_t = (cand if torch.is_tensor(cand) else torch.from_numpy(cand)).to(device)
    for net, axis, (ru, rv) in plan:
        feats = torch.empty((len(cand), cnn1.config.width), dtype=torch.float32, device=device)
        slice_of = cand_t[:, axis]
        used = torch.unique(slice_of)
        for start in range(0, len(used), opts.batch_slices):
            chunk = used[start : start + opts.batch_slices]
            rows = torch.nonzero(torch.isin(slice_of, chunk)).squeeze(1)
            u, v = cand_t[rows, ru], cand_t[rows, rv]
            # few shapes over a cohort (runtime.SHAPE_QUANTUM): the same features, less memory
            u0, u1 = bucket_span(int(u.min()), int(u.max()), norm.shape[ru] - 2 * r)
            v0, v1 = bucket_span(int(v.min()), int(v.max()), norm.shape[rv] - 2 * r)
            batch = pad_index(chunk, bucket_count(len(chunk), opts.batch_slices))
            planes = norm.index_select(axis, batch + r).movedim(axis, 0)  # (B, U + 2r, V + 2r)
            box = planes[:, None, u0 : u1 + 2 * r + 1, v0 : v1 + 2 * r + 1]  # candidates' box
            if opts.channels_last:
                box = box.contiguous(memory_format=torch.channels_last)
            with autocast(device, opts.bf16):  # (B, width, u, v): (i, j) = core (u0 + i, v0 + j)
                fmap = net.features(box)
            pos = torch.searchsorted(chunk, slice_of[rows])
            feats[rows] = fmap[pos, :, u - u0, v - v0].float()
        out.append(feats)
    return out


@torch.no_grad()
def cnn1_proba(
    cnn1: CNN1,
    norm: torch.Tensor,
    cand: np.ndarray | torch.Tensor,
    r: int,
    opts: InferenceOptions | None = None,
) -> torch.Tensor:
    """Class probabilities p = 1/2 p_N + 1/6 (p_A + p_S + p_C) of candidate voxels, fully
    convolutionally.

    Args:
        cnn1, norm, cand, r: as for :func:`cnn1_features`.
        opts: as for :func:`cnn1_features`, plus ``batch_voxels`` (voxels per head batch);
            None: the defaults on the block's device.

    Returns:
        (N, 7) float32 probabilities on the block's device.
    """
    opts = opts or InferenceOptions(device=str(norm.device))
    feats = cnn1_features(cnn1, norm, cand, r, opts)
    out = torch.empty((len(cand), cnn1.config.n_classes), dtype=torch.float32, device=norm.device)
    for s in range(0, len(cand), opts.batch_voxels):
        k = min(opts.batch_voxels, len(cand) - s)  # padded to few shapes (runtime.SHAPE_QUANTUM)
        rows = torch.arange(s, s + k, device=norm.device)
        fa, fs, fc = (f[pad_index(rows, bucket_count(k, opts.batch_voxels))] for f in feats)
        with autocast(norm.device, opts.bf16):
            pairs = zip(cnn1.subnets, (fa, fs, fc))
            aux = tuple(n.aux(f) for n, f in pairs) if cnn1.config.aux else None
            out[s : s + k] = cnn1.combine(cnn1.head(fa, fs, fc), aux)[:k]
    return out


def cnn2_patches(norm: torch.Tensor, zyx: torch.Tensor, size: int, r: int) -> torch.Tensor:
    """Axial / sagittal / coronal patches of a normalised block, in the orientation convention
    of :mod:`calcscore.sampling`.

    Args:
        norm: (Z + 2r, Y + 2r, X + 2r) normalised intensities with a margin of ``r`` voxels.
        zyx: (N, 3) patch centres in the block's core (without the margin).
        size: the patch side in voxels, odd (CNN2's ``patch_size``).
        r: the margin, ``r >= size // 2``.

    Returns:
        (N, 3, size, size) patches on the block's device.
    """
    t = torch.arange(-(size // 2), size // 2 + 1, device=norm.device)
    u, v = t.view(1, size, 1), t.view(1, 1, size)
    z, y, x = (zyx[:, i, None, None] + r for i in range(3))
    axial = norm[z, y + u, x + v]
    sagittal = norm[z + u, y + v, x]
    coronal = norm[z + u, y, x + v]
    return torch.stack([axial, sagittal, coronal], dim=1)


def _cnn2_filter(
    cnn2_model: CNN2,
    model: Model,
    opts: InferenceOptions,
    block: torch.Tensor,
    cand: torch.Tensor,
    pred: torch.Tensor,
    final: torch.Tensor,
    r: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 6: CNN2 on CNN1's calcium candidates; those below their label group's threshold
    are set to background in ``final`` (in place). Returns (rows of ``cand`` CNN2 saw, CNN2's
    probabilities)."""
    device = block.device
    # batch norm folded (same outputs, faster), channels-last if asked: a copy, model untouched
    cnn2 = cnn2_model.folded(channels_last=opts.channels_last).to(device)
    hit = torch.nonzero(pred > 0).squeeze(1)
    proba2 = torch.zeros(len(hit), dtype=torch.float32, device=device)
    thresholds = threshold_table(
        model.cnn2_thresholds if opts.cnn2_threshold is None else opts.cnn2_threshold
    ).to(device)
    step = cnn2_batch(opts, device)
    for s in range(0, len(hit), step):
        rows = hit[s : s + step]
        batch = pad_index(rows, bucket_count(len(rows), step))  # few shapes, as in CNN1
        x = cnn2_patches(block, cand[batch], cnn2.config.patch_size, r)
        if opts.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, opts.bf16):
            p2 = cnn2.predict_proba(x).float()[: len(rows)]
        proba2[s : s + len(rows)] = p2
        final[rows[~(p2 >= thresholds[pred[rows]])]] = 0
    return hit, proba2


def segment(
    volume: CTVolume, model: Model, options: InferenceOptions | None = None
) -> Segmentation:
    """Label every calcification of a scan (see the module docstring for the steps).

    A scan stored in another layout than the networks learned (a RAS NIfTI, a prone or head-first
    series: :mod:`calcscore.orientation`) is segmented in the standard layout and its labels come
    back on its own grid.

    Args:
        volume: a chest CT in HU.
        model: CNN1, CNN2 and their settings (:meth:`Model.load`).
        options: devices, batch sizes, precision and steps (None: :class:`InferenceOptions`'
            defaults, on the CPU).

    Returns:
        a :class:`Segmentation`: labels on the scan's grid and on the network grid, CNN1's own,
        CNN2's probabilities, the safety net's regions and the seconds of each step.
    """
    standard, orient = to_standard(volume)
    seg = _segment_standard(standard, model, options)
    if orient.is_standard:
        return seg
    return replace(seg, labels=orient.undo(seg.labels, volume), orientation=orient)


@torch.no_grad()
def _segment_standard(
    volume: CTVolume, model: Model, options: InferenceOptions | None
) -> Segmentation:
    """:func:`segment` of a scan in the standard layout."""
    opts = options or InferenceOptions()
    device = torch.device(opts.device)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    # every step runs on the device: the scan goes there once, the labels come back once
    hu = as_tensor(volume.hu).to(device)
    net_hu, net = network_grid_tensor(volume, hu)
    seconds["preprocess"] = time.perf_counter() - t0

    t = time.perf_counter()
    cand_mask = net_hu >= CALCIUM_THRESHOLD_HU
    if opts.restrict_to_body:
        cand_mask &= body_mask_tensor(net_hu)
    labels_net = torch.zeros(net.shape, dtype=torch.uint8, device=device)
    cnn1_net = torch.zeros(net.shape, dtype=torch.uint8, device=device)
    cnn2_zyx, cnn2_p = np.zeros((0, 3), np.int32), np.zeros(0, np.float32)
    cand_all = torch.nonzero(cand_mask)
    n_cand = len(cand_all)
    seconds["candidates"] = time.perf_counter() - t
    if n_cand:
        lo = cand_all.min(dim=0).values.cpu().numpy()
        hi = cand_all.max(dim=0).values.cpu().numpy() + 1
        # a copy (ELUs in place, channels-last if asked); the model is left as it is
        cnn1 = model.cnn1.for_inference(channels_last=opts.channels_last).to(device)
        r_cnn1 = cnn1.receptive_field // 2
        cnn2_model = model.cnn2 if opts.use_cnn2 else None
        r_cnn2 = cnn2_model.config.patch_size // 2 if cnn2_model is not None else 0
        r = max(r_cnn1, r_cnn2)
        block = _normalised_block(net_hu, lo, hi, r)
        cand = cand_all - torch.from_numpy(lo).to(device)  # row-major order, as np.argwhere
        t = time.perf_counter()
        inner = block[tuple(slice(r - r_cnn1, block.shape[i] - (r - r_cnn1)) for i in range(3))]
        pred = cnn1_proba(cnn1, inner, cand, r_cnn1, opts).argmax(dim=1)
        seconds["cnn1"] = time.perf_counter() - t
        t = time.perf_counter()
        final = pred.clone()
        if cnn2_model is not None:
            hit, proba2 = _cnn2_filter(cnn2_model, model, opts, block, cand, pred, final, r)
            cnn2_zyx = cand_all[hit].cpu().numpy().astype(np.int32)
            cnn2_p = proba2.cpu().numpy()
        seconds["cnn2"] = time.perf_counter() - t
        idx = tuple(cand_all.T)
        cnn1_net[idx] = pred.to(torch.uint8)
        labels_net[idx] = final.to(torch.uint8)
    t = time.perf_counter()
    rim_hu = _rim_threshold(volume, model, opts, hu)
    back_t = _to_original_grid_tensor(
        labels_net, net, volume, hu, opts.keep_below_threshold, cand_mask, rim_hu
    )
    back = LabelVolume.like(volume, back_t.cpu().numpy())
    back, regions, removed = _safety_net(volume, back, model, opts, seconds)
    fill, vote = _lesion_fill(model, opts), opts.artery_vote
    back = LabelVolume.like(
        volume, finish_labels(back.labels, volume.hu, fill, model.lesion_fill_hu, regions, vote)
    )
    lv_net = LabelVolume.like(net, labels_net.cpu().numpy())
    cnn1_lv = LabelVolume.like(net, cnn1_net.cpu().numpy())
    seconds["to_original_grid"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    log.info("segmented %s candidates in %.1f s", n_cand, seconds["total"])
    return Segmentation(
        back,
        lv_net,
        cnn1_lv,
        n_cand,
        seconds,
        cnn2_zyx,
        cnn2_p,
        cand_mask.cpu().numpy(),
        rim_hu,
        regions,
        removed,
        fill,
        model.lesion_fill_hu,
        vote,
    )
