"""Phantoms beside real scans: what changes for a model trained on phantoms only (notebook 08).

- :func:`matched_slice`: the same anatomical level in any chest scan, found by the same rule
  (:mod:`calcscore.regions`), so a phantom and a real scan are compared slice for slice.
- :func:`where_map`, :func:`where_hot`, :func:`where_labels`: where the voxels >= 130 HU, and
  the labels a model puts on them, lie: the heart region, the mediastinum above it, bone, the
  rest of the body.
- :func:`texture_table`: the acquisition and the image texture (noise, soft tissue) of scans.
- :func:`receptive_field_mm`, :func:`receptive_field_figure`: what CNN1 sees around a voxel.
- :func:`box_mask`, :func:`keep_in_region`: a region a person marks, and the labels outside it
  that it removes (the notebook's exercise; the anatomical safety net does the same
  automatically).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from calcscore.bone import bone_mask
from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.labels import Label
from calcscore.preprocess import INPLANE_SPACING_MM
from calcscore.regions import AORTA, HEART, HEART_TOP_MARGIN_MM, ChestRegions
from calcscore.volume import CTVolume, LabelVolume

#: the categories of :func:`where_map`, by code
WHERE = {
    1: "heart region",
    2: "mediastinum above the heart",
    3: "bone",
    4: "rest of the body",
    0: "outside the body",
}


def matched_slice(volume: CTVolume, regions: ChestRegions, *, below_top_mm: float = 30.0) -> int:
    """The axial slice ``below_top_mm`` below the heart's top, the heart's top found by
    :func:`calcscore.regions.find_chest_regions`'s rule (its ``heart_top_z`` less its
    :data:`calcscore.regions.HEART_TOP_MARGIN_MM`). The same rule on every scan matches slices by
    anatomy, not by index.

    Args:
        volume: the chest CT.
        regions: its :func:`calcscore.regions.find_chest_regions`.
        below_top_mm: how far below the heart's top (30 mm: the upper heart).

    Returns:
        the slice index (the middle slice when the regions have no heart top).
    """
    if regions.heart_top_z is None:
        return volume.shape[0] // 2
    down = (HEART_TOP_MARGIN_MM + below_top_mm) / volume.spacing_mm[0]
    return int(np.clip(round(regions.heart_top_z - down), 0, volume.shape[0] - 1))


def where_map(volume: CTVolume, regions: ChestRegions, body: np.ndarray) -> np.ndarray:
    """Where each voxel lies, as the codes of :data:`WHERE`.

    Args:
        volume: the CT scan.
        regions: its :func:`calcscore.regions.find_chest_regions`.
        body: the body mask (:func:`calcscore.inference.body_mask`).

    Returns:
        a uint8 array on the scan's grid: 1 where coronary and valve calcium can lie, 2 where
        only aortic calcium can (the mediastinum above the heart), 3 bone (thick cores >= 130
        HU, :func:`calcscore.bone.bone_mask`), 4 the rest of the body (chest wall,
        cartilage, shoulders, neck, abdomen), 0 outside it.
    """
    out = np.where(body, 4, 0).astype(np.uint8)
    out[bone_mask(volume, max_lesion_mm3=3000.0)] = 3
    out[(regions.zone & AORTA) > 0] = 2
    out[(regions.zone & HEART) > 0] = 1
    return out


def where_hot(volume: CTVolume, where: np.ndarray) -> pd.DataFrame:
    """The voxels >= 130 HU by :data:`WHERE` category: mL and % of all of them."""
    hot = volume.hu >= CALCIUM_THRESHOLD_HU
    counts = np.bincount(where[hot].ravel(), minlength=len(WHERE))
    ml = counts * volume.voxel_volume_mm3 / 1000.0
    return pd.DataFrame(
        {
            "mL >= 130 HU": [round(float(ml[c]), 1) for c in WHERE],
            "%": [round(100.0 * counts[c] / max(int(hot.sum()), 1), 1) for c in WHERE],
        },
        index=list(WHERE.values()),
    )


def where_labels(labels: LabelVolume, where: np.ndarray) -> pd.DataFrame:
    """Labelled voxels per calcium label (rows) and :data:`WHERE` category (columns)."""
    rows = {}
    for lab in Label:
        if lab == Label.BACKGROUND:
            continue
        counts = np.bincount(where[labels.labels == lab], minlength=len(WHERE))
        rows[lab.name] = {WHERE[c]: int(counts[c]) for c in WHERE}
    table = pd.DataFrame(rows).T
    table.loc["all"] = table.sum()
    return table


def texture_table(volumes: dict[str, CTVolume]) -> pd.DataFrame:
    """The acquisition and the texture of each scan: scanner, kernel, slice thickness, pixel
    size, noise SD and soft-tissue HU (:mod:`calcscore.rim`'s robust estimates), and the share
    of the body's voxels >= 130 HU."""
    from calcscore.inference import body_mask
    from calcscore.rim import estimate_noise_sd, soft_tissue_hu

    rows = {}
    for name, v in volumes.items():
        body = body_mask(v)
        rows[name] = {
            "scanner": f"{v.meta.manufacturer or '?'} {v.meta.model or ''}".strip(),
            "kernel": v.meta.kernel,
            "slice thickness (mm)": v.meta.slice_thickness_mm or v.spacing_mm[0],
            "pixel (mm)": round(v.spacing_mm[1], 3),
            "noise SD (HU)": round(estimate_noise_sd(v), 1),
            "soft tissue (HU)": round(soft_tissue_hu(v), 1),
            "body >= 130 HU (%)": round(
                100.0 * float((v.hu[body] >= CALCIUM_THRESHOLD_HU).mean()), 2
            ),
        }
    return pd.DataFrame(rows)


def receptive_field_mm(model) -> float:
    """How wide (mm, in-plane) CNN1's view of a voxel is: its receptive field in pixels of the
    network grid (0.66 mm)."""
    return float(model.cnn1.receptive_field * INPLANE_SPACING_MM)


def largest_lesion_centre(mask: np.ndarray) -> tuple[int, int, int] | None:
    """The voxel of ``mask`` nearest the centre of its largest 26-connected component (None
    when the mask is empty)."""
    comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return None
    big = int(np.argmax(np.bincount(comps.ravel())[1:])) + 1
    idx = np.argwhere(comps == big)
    z, y, x = idx[np.argmin(((idx - idx.mean(axis=0)) ** 2).sum(axis=1))]
    return int(z), int(y), int(x)


def view_box(volume, zyx, width_mm: float) -> tuple[slice, slice, slice]:
    """The one-slice box ``width_mm`` wide in-plane around a voxel.

    Args:
        volume: the scan (or label map) the box is for.
        zyx: the voxel (z, y, x) at the box's centre.
        width_mm: the box's in-plane width.

    Returns:
        (z, y, x) slices, clipped to the scan.
    """
    z, y, x = (int(v) for v in zyx)
    half = np.ceil(width_mm / 2.0 / np.asarray(volume.spacing_mm[1:])).astype(int)
    ys = slice(max(y - half[0], 0), min(y + half[0] + 1, volume.shape[1]))
    xs = slice(max(x - half[1], 0), min(x + half[1] + 1, volume.shape[2]))
    return slice(z, z + 1), ys, xs


def receptive_field_figure(panels, width_mm: float, *, preset="mediastinum", title=None):
    """What CNN1 sees of a voxel: the square of ``width_mm`` around it, zoomed, one per panel.

    Args:
        panels: ``(title, volume, labels_or_None, zyx)`` tuples (a panel whose ``zyx`` is None
            is left out).
        width_mm: the square's width (:func:`receptive_field_mm`).
        preset: the window of every panel (:func:`calcscore.viz.window`).
        title: the figure's title.

    Returns:
        the matplotlib Figure; where no panel has a voxel to centre on (no lesion in any of
        them), a figure that says so.
    """
    from calcscore.viz import _pyplot, crop, panel_figure

    items = []
    for name, volume, labels, zyx in panels:
        if zyx is None:
            continue
        box = view_box(volume, zyx, width_mm)
        items.append((name, crop(volume, box), None if labels is None else crop(labels, box), 0))
    if not items:
        fig = _pyplot().figure(figsize=(6, 1.2))
        names = ", ".join(p[0] for p in panels)
        fig.text(
            0.5,
            0.5,
            f"nothing to show: no labelled voxel to centre on in {names}",
            ha="center",
            va="center",
            wrap=True,
        )
        if title:
            fig.suptitle(title)
        return fig
    return panel_figure(items, preset=preset, title=title)


def box_mask(shape: tuple[int, int, int], box) -> np.ndarray:
    """A boolean mask of ``shape``, True inside ``box`` = [[z0, z1], [y0, y1], [x0, x1]]
    (ends excluded, as Python slices)."""
    if len(box) != 3 or any(len(b) != 2 for b in box):
        raise ValueError(f"`box` must be [[z0, z1], [y0, y1], [x0, x1]], got {box!r}")
    mask = np.zeros(shape, bool)
    mask[tuple(slice(int(a), int(b)) for a, b in box)] = True
    return mask


def keep_in_region(labels: LabelVolume, region: np.ndarray) -> tuple[LabelVolume, dict[str, int]]:
    """``labels`` with every label outside ``region`` (a boolean mask on their grid) removed,
    and the voxels removed per label name."""
    region = np.asarray(region, bool)
    if region.shape != labels.shape:
        raise ValueError(f"the region has shape {region.shape}, the labels {labels.shape}")
    drop = (labels.labels > 0) & ~region
    values, counts = np.unique(labels.labels[drop], return_counts=True)
    kept = labels.labels.copy()
    kept[drop] = 0
    return LabelVolume.like(labels, kept), {
        Label(int(v)).name: int(c) for v, c in zip(values, counts)
    }


def marked_region(marks: np.ndarray, *, through_slices: bool = True) -> np.ndarray:
    """The region a person marked (a boolean mask, e.g. an :class:`~calcscore.annotate.Annotator`
    label map ``== MASK_VALUE``). With ``through_slices`` the marks of every slice are united
    in-plane and applied to every slice from the lowest to the highest one marked (mark the heart
    on its top and its bottom slice), or to every slice of the scan when one slice is marked;
    else the marks as they are."""
    marks = np.asarray(marks, bool)
    if not through_slices or not marks.any():
        return marks.copy()
    zs = np.flatnonzero(marks.any(axis=(1, 2)))
    out = np.zeros_like(marks)
    lo, hi = (0, marks.shape[0]) if len(zs) == 1 else (zs[0], zs[-1] + 1)
    out[lo:hi] = marks.any(axis=0)
    return out


def take_slab(volume, slab):
    """Slices ``[first, last)`` of a volume or label map (its origin moved along), or the whole
    of it when ``slab`` is None: the notebook's way to run a model on part of a scan."""
    if slab is None:
        return volume
    from calcscore.viz import crop

    first, last = (int(v) for v in slab)
    if not 0 <= first < last <= volume.shape[0]:
        raise ValueError(f"slab {slab!r} is outside the scan's {volume.shape[0]} slices")
    return crop(volume, (slice(first, last), slice(None), slice(None)))


def heart_centre(regions: ChestRegions, z: int) -> tuple[int, int, int]:
    """(z, row, col): the centre of the heart region on slice ``z`` (of the scan's middle where
    the slice has none)."""
    heart = (regions.zone[z] & HEART) > 0
    if not heart.any():
        return z, regions.zone.shape[1] // 2, regions.zone.shape[2] // 2
    rows, cols = np.nonzero(heart)
    return z, int(round(rows.mean())), int(round(cols.mean()))


def score_table(volume: CTVolume, label_maps: dict[str, LabelVolume]) -> pd.DataFrame:
    """One row per label map of ``volume``: CAC and TAC Agatston, the risk category, the
    labelled voxels and the lesions (:func:`calcscore.scoring.agatston`)."""
    from calcscore.scoring import agatston

    rows = {}
    for name, labels in label_maps.items():
        s = agatston(volume, labels)
        rows[name] = {
            "CAC Agatston": round(s.cac_agatston, 1),
            "risk category": s.risk_category,
            "TAC Agatston": round(s["TAC"].agatston, 1),
            "labelled voxels": int((labels.labels > 0).sum()),
            "lesions": int(sum(s[lab.name].n_lesions for lab in Label if lab != Label.BACKGROUND)),
        }
    return pd.DataFrame(rows).T


def slab_around(volume: CTVolume, z: int, height_mm: float | None) -> tuple[int, int] | None:
    """The slices of a slab centred on a slice, moved (not shrunk) to lie inside the scan.

    Args:
        volume: the scan.
        z: the slice at the slab's centre.
        height_mm: the slab's height; None for the whole scan.

    Returns:
        ``(first, last)`` (``last`` excluded), or None for the whole scan.
    """
    if height_mm is None:
        return None
    n_scan = volume.shape[0]
    n = int(np.clip(round(height_mm / volume.spacing_mm[0]), 1, n_scan))
    first = int(np.clip(z - n // 2, 0, n_scan - n))
    return first, first + n
