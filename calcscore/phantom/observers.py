"""Simulated second and third observers.

:func:`observe` derives another observer's voxel labels from a reference annotation with the
disagreements the paper reports between its observers: small lesions missed, LAD/LCX confusion
(near the bifurcation), LCX/mitral confusion (the LCX runs in the left atrioventricular groove
next to the mitral annulus), aortic valve/TAC confusion (at the aortic root), and boundaries
drawn a voxel wider or narrower. Every labelled voxel stays >= 130 HU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.labels import CALCIUM_LABELS, Label
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObserverProfile:
    """How an observer differs from the reference (probabilities per lesion)."""

    p_miss_small: float = 0.35
    small_mm3: float = 8.0
    p_lad_lcx: float = 0.04
    p_lad_lcx_near: float = 0.35
    p_lcx_mv: float = 0.02
    p_lcx_mv_near: float = 0.4
    p_av_tac: float = 0.03
    p_av_tac_near: float = 0.4
    near_mm: float = 15.0
    p_boundary: float = 0.5
    shrink_below_hu: float = 180.0
    threshold_hu: float = CALCIUM_THRESHOLD_HU

    def __post_init__(self) -> None:
        for name in (
            "p_miss_small",
            "p_lad_lcx",
            "p_lad_lcx_near",
            "p_lcx_mv",
            "p_lcx_mv_near",
            "p_av_tac",
            "p_av_tac_near",
            "p_boundary",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1], got {v!r}")


#: The pairs an observer confuses: (label, other label, base rate field, near rate field).
_CONFUSIONS = (
    (Label.LAD, Label.LCX, "p_lad_lcx", "p_lad_lcx_near"),
    (Label.LCX, Label.LAD, "p_lad_lcx", "p_lad_lcx_near"),
    (Label.LCX, Label.MV, "p_lcx_mv", "p_lcx_mv_near"),
    (Label.MV, Label.LCX, "p_lcx_mv", "p_lcx_mv_near"),
    (Label.AV, Label.TAC, "p_av_tac", "p_av_tac_near"),
    (Label.TAC, Label.AV, "p_av_tac", "p_av_tac_near"),
)


def _landmarks(info) -> dict[tuple[Label, Label], np.ndarray]:
    """Points (x, y, z mm) where a pair is confused: the left main bifurcation, the mitral
    annulus next to the LCX, the aortic root."""
    if info is None:
        return {}
    geo = info.geometry
    bif = geo.coronaries["LCX"][:1]
    ring = np.array([geo.mv_center + geo.mv_radius * np.array(v) for v in _ring(geo.mv_normal)])
    root = geo.aorta[:40]
    return {
        (Label.LAD, Label.LCX): bif,
        (Label.LCX, Label.LAD): bif,
        (Label.LCX, Label.MV): ring,
        (Label.MV, Label.LCX): geo.coronaries["LCX"],
        (Label.AV, Label.TAC): root,
        (Label.TAC, Label.AV): geo.av_center[None],
    }


def _ring(normal: np.ndarray, n: int = 24) -> list[np.ndarray]:
    e1 = np.cross(normal, [0.0, 0.0, 1.0])
    if np.linalg.norm(e1) < 1e-6:
        e1 = np.cross(normal, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    return [np.cos(a) * e1 + np.sin(a) * e2 for a in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def observe(
    labels: LabelVolume, volume: CTVolume, *, rng, profile: ObserverProfile | None = None, info=None
) -> LabelVolume:
    """Another observer's annotation of the same scan, derived from ``labels``.

    Args:
        labels, volume: the reference annotation and its scan (same grid).
        rng: seed or Generator; the same seed gives the same observer.
        profile: the disagreement rates (:class:`ObserverProfile`); defaults resemble the paper's.
        info: the :class:`~calcscore.phantom.ScanInfo` of a phantom, if known: confusions then
            happen near the anatomy where observers confuse (bifurcation, mitral annulus, aortic
            root); without it, "near" means within ``near_mm`` of calcium of the other label.

    Returns:
        the other observer's :class:`~calcscore.volume.LabelVolume` on the grid of ``labels``.
    """
    check_same_geometry(volume, labels, names=("volume", "labels"))
    rng = np.random.default_rng(rng)
    prof = profile or ObserverProfile()
    ref = labels.labels
    out = ref.copy()
    hu = volume.hu
    sp = np.asarray(labels.spacing_mm)
    vox_mm3 = float(np.prod(sp))
    struct = np.ones((3, 3, 3), bool)
    landmarks = _landmarks(info)
    # physical points of each label's voxels, for "near the other label"
    trees: dict[int, cKDTree] = {}
    nz_idx = np.argwhere(ref > 0)
    nz_lab = ref[tuple(nz_idx.T)]
    for lab in CALCIUM_LABELS:
        idx = nz_idx[nz_lab == lab]
        if len(idx):
            trees[int(lab)] = cKDTree(idx * sp)
    lm_trees = {k: cKDTree(_to_index_mm(labels, v)) for k, v in landmarks.items()}
    n_changed = {"missed": 0, "relabelled": 0, "boundary": 0}
    calcium = np.nonzero(ref)
    if not len(calcium[0]):
        return LabelVolume.like(labels, out)
    # work inside the bounding box of all calcium (plus a margin for growing)
    crop = _grow_box(tuple(slice(int(c.min()), int(c.max()) + 1) for c in calcium), ref.shape, 2)
    offset = np.array([s.start for s in crop])
    for lab in CALCIUM_LABELS:
        comp, n = ndimage.label(ref[crop] == lab, structure=struct)
        if n == 0:
            continue
        boxes = ndimage.find_objects(comp)
        for cid in range(1, n + 1):
            local = _grow_box(boxes[cid - 1], comp.shape, 1)
            mask = comp[local] == cid
            bb = tuple(slice(s.start + o, s.stop + o) for s, o in zip(local, offset))
            size_mm3 = float(mask.sum()) * vox_mm3
            if size_mm3 < prof.small_mm3 and rng.random() < prof.p_miss_small:
                out[bb][mask] = 0
                n_changed["missed"] += 1
                continue
            pts = (np.argwhere(mask) + [s.start for s in bb]) * sp
            new = lab
            for a, b, base, near in _CONFUSIONS:
                if a != lab:
                    continue
                if (a, b) in lm_trees:
                    d = float(lm_trees[(a, b)].query(pts, k=1)[0].min())
                elif int(b) in trees:
                    d = float(trees[int(b)].query(pts, k=1)[0].min())
                else:
                    d = np.inf
                p = getattr(prof, near) if d <= prof.near_mm else getattr(prof, base)
                if rng.random() < p:
                    new = b
                    break
            if new != lab:
                out[bb][mask] = new
                n_changed["relabelled"] += 1
            if rng.random() < prof.p_boundary:
                n_changed["boundary"] += 1
                sub_out = out[bb]
                sub_hu = hu[bb]
                if rng.random() < 0.5:  # wider: the >= 130 HU neighbours the reference left out
                    ring = ndimage.binary_dilation(mask, struct) & ~mask
                    add = ring & (sub_out == 0) & (sub_hu >= prof.threshold_hu)
                    sub_out[add] = new
                else:  # narrower: faint surface voxels
                    surface = mask & ~ndimage.binary_erosion(mask, struct)
                    drop = surface & (sub_hu < prof.shrink_below_hu)
                    if drop.sum() < mask.sum():
                        sub_out[drop] = 0
    log.debug("observer: %s", n_changed)
    return LabelVolume.like(labels, out)


def _to_index_mm(grid: LabelVolume, points_xyz: np.ndarray) -> np.ndarray:
    """LPS points (x, y, z) -> (z, y, x) mm offsets from voxel 0 (identity direction grids)."""
    p = np.atleast_2d(np.asarray(points_xyz, dtype=float))[:, ::-1]
    rel = p - np.asarray(grid.origin_mm)
    return rel @ np.asarray(grid.direction, dtype=float)


def _grow_box(box: tuple[slice, ...], shape: tuple[int, ...], by: int) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - by, 0), min(s.stop + by, n)) for s, n in zip(box, shape))
