"""Where in the chest calcium of each label can be: the anatomical safety net.

CNN1 sees 44 mm around a voxel (the shipped workshop CNN1): too little to know whether a bright
voxel lies on a rib, the sternum, a scapula or a coronary artery. On real chest CT the networks,
trained on phantoms only, put coronary and aortic labels on bone and cartilage all over the chest
wall. This module finds, from the scan alone and without any learned model, the regions where
calcium of each label can lie, and :func:`apply_safety_net` removes labels outside them:

1. **Lungs**: air (< -400 HU, on a grid of about 3 mm blocks) enclosed by the body, in 3D
   components of at least a quarter of the largest (the two lungs, the airways; not bowel gas).
2. **Mediastinum**: the 3D convex hull of the lungs, eroded in-plane by ``margin_mm`` so that the
   ribs and costal cartilage the lungs lie against stay out, minus the lungs (but their outer
   3 mm, where the heart's surface meets them). The heart, the
   aorta and the valves lie inside it; the chest wall, the shoulder girdle, the arms and the neck
   outside.
3. **Heart**: the slices of the mediastinum from the heart's bottom (in a whole chest, 15 mm
   below the slice where the lungs, and their front half, widen from their bases: the upper
   abdomen between the lung bases lies in their hull too; :mod:`calcscore.heart_extent`) up to
   the heart's top (the highest slice with ``heart_rows_mm`` of rows whose tissue between the
   two lungs is at least ``heart_width_mm`` wide, where the coronary ostia lie, plus
   ``heart_top_margin_mm``, 20 mm: calcified lymph nodes lie above it): coronary and
   valve labels lie there, aortic labels anywhere in the mediastinum (below the heart's bottom
   only behind the lungs' middle and near the midline) and ``aorta_below_mm`` below it, behind
   the lungs' middle (the aorta's way out of the chest). Where no slice qualifies, the whole
   mediastinum.
   The heart's top is never above the carina (:func:`calcscore.airway.find_carina`), where it
   is found: calcium there is on the aortic arch.
4. **Bone**: voxels >= 130 HU around thick connected cores larger than ``max_lesion_mm3``
   (:func:`calcscore.bone.bone_mask`): vertebrae, the sternum, rib heads, clavicles.
   Calcifications are smaller and thin.
5. **Spine**: coronary and valve labels within 10 mm (in-plane; :func:`calcscore.bone.near_spine`)
   of the bone behind the lungs' middle row on their midline (vertebral bodies, rib heads) go:
   between the vertebrae and the heart lie the aorta, the oesophagus and the left atrium.
6. **Airway walls**: a lesion most of whose voxels touch air in-plane, or lie within
   ``airway_wall_mm`` of air inside the mediastinum, is the bright rim a sharp kernel draws along
   the trachea and bronchi (calcium lies in tissue, not on air); a faint one (no voxel of
   ``faint_peak_hu`` or more) mostly within ``faint_wall_mm`` of that air is a sharp kernel's
   overshoot where the lung meets the heart or a vessel.

Not in the paper: the paper's CNN1 saw 131 px (86 mm) and real training scans. It is on by
default (``InferenceOptions(safety_net=None)`` takes the model's choice) and can be switched off
(``calcscore score --no-safety-net``). Where no lungs are found (a crop around the heart without
lung, a scan of something else), :attr:`ChestRegions.found` is False and nothing is removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from calcscore.bone import BONE_HU, bone_mask, in_plane_disk, near_spine
from calcscore.constants import BODY_THRESHOLD_HU, OUTSIDE_FOV_HU
from calcscore.heart_extent import below_carina, heart_bottom, heart_top
from calcscore.labels import Label
from calcscore.volume import CTVolume

log = logging.getLogger(__name__)

#: HU below which a voxel is air (lung parenchyma reads -950..-700 HU)
AIR_HU = BODY_THRESHOLD_HU
#: below this a value is padding outside the field of view, not air
PADDING_HU = OUTSIDE_FOV_HU
#: the block edge (mm) of the coarse grid the lungs and the hull are found on
BLOCK_MM = 3.0
#: the aorta leaves the chest within this distance (mm) of the midline between the lungs
AORTA_HALF_WIDTH_MM = 45.0
#: a lesion more than this fraction of whose voxels touch air is an airway wall, not calcium
AIR_RIM_FRACTION = 0.5
#: lesions mostly within this distance (in-plane) of mediastinal air are the trachea's and main
#: bronchi's walls (cartilage rings, a sharp kernel's overshoot). 2 mm removed 9 tracheal-wall lesions
#: of 19 on the real sharp scan lungdx-a0001-l and none on the other 7; held-out v1 phantoms' TAC F1
#: 0.908 -> 0.905 soft, 0.822 -> 0.817 sharp; v2's true aortic lesions lie >= 3.2 mm (median) away
#: (2.5 mm cost 26-154 true aortic voxels in 6 of 22 v1 scans; benchmarks/README.md)
AIRWAY_WALL_MM = 2.0
#: a faint lesion (no voxel at or above FAINT_PEAK_HU) mostly within this distance of mediastinal
#: air is a sharp kernel's overshoot: on the real sharp scan lungdx-a0001-l a 21-voxel "LAD" lesion
#: on the ascending aorta's wall against the lung (peak 415 HU; the soft reconstruction reads
#: <= 163 HU there), 62 % of it within 2.5 mm, 38 % within 2 mm. Dense calcium stays: a true RCA
#: lesion at the heart's edge of a v2 phantom (P0124 sharp, peak 1,459 HU) is 50.4 % within
#: 2.5 mm (benchmarks/README.md, "Faint lesions against the lung")
FAINT_WALL_MM = 2.5
#: lesions with a voxel at or above this are dense enough to be calcium next to the lung
FAINT_PEAK_HU = 600.0
#: the heart region ends this far (mm) below the slice where the lungs widen from their bases
#: (:func:`calcscore.heart_extent.heart_bottom`): the lungs' hull holds the upper abdomen too,
#: and granulomas in the liver and spleen were called coronary (benchmarks/abdomen_granulomas.py)
HEART_BOTTOM_MARGIN_MM = 15.0
#: the heart region reaches this far (mm) above its widest rows (:func:`heart_top`): the coronary
#: ostia lie at about those rows. On the real non-contrast lungdx-a0001-b the widest rows are
#: slice 31 and the aortic root with the left main lies in slices 29-31 (by eye); on 24 v2
#: phantoms (seed 2018: whole chests, gated, heart regions) the highest coronary calcium lies at
#: most 10 mm above them. 40 mm reached the carina and took in calcified nodes above the heart:
#: 15 of 48 called coronary, 5 of 6 zero-calcium scans in category III; 20 mm: 9 of 48, 4 of 6;
#: 15 mm (4 of 48) cut a synthetic capsule at the top of a heart-only cut, where the widest rows
#: come out lower (benchmarks/mediastinal_nodes.py; benchmarks/README.md, "Calcified lymph nodes")
HEART_TOP_MARGIN_MM = 20.0
#: :attr:`ChestRegions.zone` flags: aortic (AORTA), coronary and valve (HEART) calcium may lie here
AORTA, HEART = 1, 2
#: :attr:`ChestRegions.rim` flags: on the air rim; >= 130 HU within ``faint_wall_mm`` of
#: mediastinal air; at or above ``faint_peak_hu``
RIM_AIR, RIM_FAINT, RIM_DENSE = 1, 2, 4
#: labels allowed only in the heart region
HEART_LABELS = (Label.LAD, Label.LCX, Label.RCA, Label.AV, Label.MV)


@dataclass(frozen=True)
class ChestRegions:
    """The regions of :func:`find_chest_regions`, on the scan's own grid (z, y, x).

    ``zone``: bit flags per voxel: :data:`AORTA` where aortic calcium can be (the mediastinum),
    :data:`HEART` where coronary and valve calcium can be (the mediastinum up to the heart's top,
    and the strip between the heart and the chest wall); 0 outside the mediastinum and on bone.
    ``found``: whether lungs were found; when False ``zone`` allows everything and the net is off.
    """

    zone: np.ndarray
    found: bool
    lung_volume_ml: float
    heart_top_z: int | None
    bone_mm3: float
    reason: str = ""
    #: bit flags per voxel (:data:`RIM_AIR`, :data:`RIM_FAINT`, :data:`RIM_DENSE`) for the
    #: airway-wall rule of :func:`apply_safety_net`; None where not found
    rim: np.ndarray | None = None

    @property
    def aorta(self) -> np.ndarray:
        """Where aortic (TAC) labels may lie."""
        return (self.zone & AORTA) > 0

    @property
    def heart(self) -> np.ndarray:
        """Where coronary and valve labels may lie."""
        return (self.zone & HEART) > 0


def block_mean(
    hu: np.ndarray, spacing_mm, block_mm: float = BLOCK_MM
) -> tuple[np.ndarray, np.ndarray]:
    """Average ``hu`` (clipped to -1024..3000) in blocks of about ``block_mm``. Voxels past the
    last whole block are dropped.

    Args:
        hu: a scan in HU, (z, y, x).
        spacing_mm: its voxel spacing (z, y, x).
        block_mm: the block edge aimed at; each block is a whole number of voxels (at least 1).

    Returns:
        the block means (float32) and the block size in voxels (z, y, x).
    """
    f = np.array([max(1, int(round(block_mm / s))) for s in spacing_mm])
    n = (np.array(hu.shape) // f) * f
    a = np.clip(hu[: n[0], : n[1], : n[2]], -1024.0, 3000.0, dtype=np.float32)
    a = a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).mean(axis=(1, 3, 5))
    return a, f


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def lungs_coarse(
    d: np.ndarray, block_mm: np.ndarray, *, min_ml: float = 50.0
) -> tuple[np.ndarray, float]:
    """The lungs on a coarse grid: air inside the body's convex hull in each slice (not the air
    around the patient; padding outside the field of view, below -1100 HU, is neither), in 3D
    components of at least a quarter of the largest and ``min_ml``.

    Args:
        d: block means in HU (:func:`block_mean`).
        block_mm: the size of a block in mm (z, y, x).
        min_ml: smaller components of air are not lung.

    Returns:
        the lung mask on the grid of ``d`` and its volume (mL).
    """
    body = _largest(d > AIR_HU)
    air = (d < AIR_HU) & (d > PADDING_HU) & ~body
    inside = np.zeros(d.shape, bool)
    for z in np.flatnonzero(body.any(axis=(1, 2))):
        inside[z] = convex_hull_mask(body[z], block_mm[1:])
    lab, n = ndimage.label(air & inside)
    if n == 0:
        return np.zeros(d.shape, bool), 0.0
    ml = np.bincount(lab.ravel()) * float(np.prod(block_mm)) / 1000.0
    ml[0] = 0.0
    keep = np.flatnonzero(ml >= max(min_ml, 0.25 * ml.max()))
    keep = keep[keep > 0]
    return np.isin(lab, keep), float(ml[keep].sum())


def convex_hull_mask(mask: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The voxels of ``mask``'s grid inside the convex hull of its voxels (2D or 3D; coordinates
    scaled by ``scale``, mm per voxel); empty where the hull is degenerate (flat, too few voxels)."""
    pts = np.argwhere(mask).astype(float)
    out = np.zeros(mask.shape, bool)
    if len(pts) < 2 * mask.ndim + 4:
        return out
    try:
        hull = ConvexHull(pts * scale)
        tri = Delaunay(hull.points[hull.vertices])
    except QhullError:
        return out
    lo, hi = pts.min(axis=0).astype(int), pts.max(axis=0).astype(int) + 1
    box = np.argwhere(np.ones(tuple(hi - lo), bool)) + lo
    inside = tri.find_simplex(box * scale) >= 0
    out[tuple(box[inside].T)] = True
    return out


def _erode_inplane(mask: np.ndarray, radius_blocks: np.ndarray) -> np.ndarray:
    ry, rx = (int(round(r)) for r in radius_blocks)
    if ry < 1 and rx < 1:
        return mask
    yy, xx = np.mgrid[-ry : ry + 1, -rx : rx + 1]
    disk = ((yy / max(ry, 1e-9)) ** 2 + (xx / max(rx, 1e-9)) ** 2) <= 1.0
    return ndimage.binary_erosion(mask, structure=disk[None], border_value=1)


def _not_found(shape: tuple[int, ...], lung_ml: float, reason: str) -> ChestRegions:
    """Regions that allow every label everywhere (the net is off), and why."""
    return ChestRegions(np.full(shape, AORTA | HEART, np.uint8), False, lung_ml, None, 0.0, reason)


def _aorta_below(
    mediastinum: np.ndarray, lungs: np.ndarray, n_slices: int, near_midline: np.ndarray
) -> np.ndarray:
    """The descending aorta's way down past the lungs' lowest slice: the back half (behind the
    lungs' middle row) of the mediastinum's lowest three slices, in the ``near_midline``
    columns, carried ``n_slices`` further down. Below the diaphragm the aorta runs on in front
    of the spine, a few centimetres left of the midline."""
    out = np.zeros(mediastinum.shape, bool)
    zs = np.flatnonzero(mediastinum.any(axis=(1, 2)))
    if not len(zs) or n_slices < 1 or zs[0] == 0:
        return out
    ys = np.flatnonzero(lungs.any(axis=(0, 2)))
    footprint = mediastinum[zs[0] : zs[0] + 3].any(axis=0) & near_midline[None, :]
    footprint[: (ys[0] + ys[-1]) // 2] = False
    out[max(0, zs[0] - n_slices) : zs[0]] = footprint
    return out


def _block_any(mask: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = (np.array(mask.shape) // f) * f
    m = mask[: n[0], : n[1], : n[2]]
    return np.asarray(
        m.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).any(axis=(1, 3, 5))
    )


def _between(lungs: np.ndarray) -> np.ndarray:
    """Voxels with lung both to their left and to their right in their row (z, y)."""
    return (
        np.logical_or.accumulate(lungs, axis=2)
        & np.logical_or.accumulate(lungs[:, :, ::-1], axis=2)[:, :, ::-1]
    )


def _anterior_extension(
    hull: np.ndarray,
    lungs: np.ndarray,
    body: np.ndarray,
    stop: np.ndarray,
    n_blocks: int,
    near_midline: np.ndarray,
) -> np.ndarray:
    """Voxels up to ``n_blocks`` in front of ``hull`` (smaller y: anterior), grown from its front
    where it lies between the lungs, is not lung and lies in a ``near_midline`` column (where the
    heart meets the chest wall, behind the sternum and the cartilages beside it; the costal
    margins lie further out), inside the body, outside the lungs and up to the first ``stop``
    voxel (the sternum)."""
    front = hull & ~lungs & _between(lungs) & near_midline[None, None, :]
    front[:, 1:] &= ~hull[:, :-1]  # hull voxels with no hull in front of them
    out = np.zeros(hull.shape, bool)
    for _ in range(n_blocks):
        front = np.concatenate([front[:, 1:], np.zeros_like(front[:, :1])], axis=1)
        front &= body & ~stop & ~hull & ~lungs
        if not front.any():
            break
        out |= front
    return out


def _air_rim(
    volume: CTVolume,
    mediastinum: np.ndarray,
    airway_wall_mm: float,
    faint_wall_mm: float,
    faint_peak_hu: float,
) -> np.ndarray:
    """The :attr:`ChestRegions.rim` flags: :data:`RIM_AIR` on voxels >= 130 HU that touch air
    in-plane or lie within ``airway_wall_mm`` (in-plane) of air inside the mediastinum (the
    trachea's and main bronchi's walls, cartilage rings); :data:`RIM_FAINT` on those and on
    voxels >= 130 HU within ``faint_wall_mm`` of that air; :data:`RIM_DENSE` on voxels of
    ``faint_peak_hu`` or more."""
    air = (volume.hu < AIR_HU) & (volume.hu > PADDING_HU)
    touching = ndimage.binary_dilation(air, structure=np.ones((1, 3, 3), bool))
    airway = air & mediastinum

    def within(mm: float) -> np.ndarray:
        if mm <= 0 or not airway.any():
            return touching
        disk = in_plane_disk(mm, volume.spacing_mm)
        return touching | ndimage.binary_dilation(airway, structure=disk[None])

    near = within(airway_wall_mm)
    bright = volume.hu >= BONE_HU
    rim = (bright & near).astype(np.uint8) * np.uint8(RIM_AIR)
    rim |= (bright & (near | within(faint_wall_mm))).astype(np.uint8) * np.uint8(RIM_FAINT)
    rim |= (volume.hu >= faint_peak_hu).astype(np.uint8) * np.uint8(RIM_DENSE)
    return rim


def find_chest_regions(
    volume: CTVolume,
    *,
    margin_mm: float = 8.0,
    anterior_mm: float = 5.0,
    front_half_width_mm: float = 70.0,
    aorta_below_mm: float = 30.0,
    heart_width_mm: float = 80.0,
    heart_rows_mm: float = 30.0,
    heart_top_margin_mm: float = HEART_TOP_MARGIN_MM,
    max_lesion_mm3: float = 3000.0,
    min_lung_ml: float = 100.0,
    airway_wall_mm: float = AIRWAY_WALL_MM,
    faint_wall_mm: float = FAINT_WALL_MM,
    faint_peak_hu: float = FAINT_PEAK_HU,
    heart_bottom_margin_mm: float | None = HEART_BOTTOM_MARGIN_MM,
) -> ChestRegions:
    """Find where calcium of each label can lie in ``volume`` (see the module docstring).

    Args:
        volume: a chest CT in HU.
        margin_mm: in-plane erosion of the lungs' convex hull (keeps the ribs out).
        anterior_mm: the heart region reaches this far in front of the hull between the lungs
            (where the heart's front, with the LAD, touches the chest wall; 20 mm took in costal
            cartilage on real scans), up to bone, within ``front_half_width_mm`` of the midline.
        front_half_width_mm: half the width of that band in front of the heart.
        aorta_below_mm: the aortic region reaches this far below the mediastinum's lowest
            slice, in the back half of its footprint there (the aorta leaving the chest).
        heart_width_mm, heart_rows_mm: a slice belongs to the heart's height when it has
            ``heart_rows_mm`` of rows whose tissue between the lungs is ``heart_width_mm`` wide.
        heart_top_margin_mm: added above the heart's widest rows so that the coronary ostia
            stay in (:data:`HEART_TOP_MARGIN_MM`).
        max_lesion_mm3: thick cores of voxels >= 130 HU larger than this are bone
            (:func:`calcscore.bone.bone_mask`).
        min_lung_ml: less lung than this and the regions are not found (the net is off).
        airway_wall_mm: lesions mostly this close (in-plane) to air inside the mediastinum lie
            on the airway walls and are removed (0: only lesions touching air).
        faint_wall_mm, faint_peak_hu: lesions without a voxel of ``faint_peak_hu`` or more,
            mostly within ``faint_wall_mm`` of air inside the mediastinum, are a sharp kernel's
            overshoot and are removed (0: no such rule).
        heart_bottom_margin_mm: the heart region ends this far below the slice where the lungs
            widen from their bases (:func:`calcscore.heart_extent.heart_bottom`); None: down to
            the lungs' bases.

    Returns:
        a :class:`ChestRegions` on the grid of ``volume``.
    """
    shape = volume.hu.shape
    d, f = block_mean(volume.hu, volume.spacing_mm)
    block = np.asarray(volume.spacing_mm) * f
    lungs, lung_ml = lungs_coarse(d, block)
    if lung_ml < min_lung_ml:
        return _not_found(
            shape, lung_ml, f"{lung_ml:.0f} mL of lung found, fewer than {min_lung_ml:g} mL"
        )
    hull = convex_hull_mask(lungs, block)
    eroded = _erode_inplane(hull, margin_mm / block[1:])
    # the lungs without their outer block: coronaries lie on the heart's surface, against the lung
    mediastinum = eroded & ~ndimage.binary_erosion(lungs)
    if not mediastinum.any():
        return _not_found(shape, lung_ml, "the lungs enclose no mediastinum")
    # where the heart touches the chest wall between the lungs it lies in front of their hull
    bone = bone_mask(volume, max_lesion_mm3=max_lesion_mm3)
    xs = np.flatnonzero(lungs.any(axis=(0, 1)))
    mid_x = (xs[0] + xs[-1]) / 2.0
    near_midline = np.abs(np.arange(d.shape[2]) - mid_x) * block[2] <= front_half_width_mm
    front = _anterior_extension(
        eroded,
        lungs,
        d > AIR_HU,
        _block_any(bone, f),
        int(round((margin_mm + anterior_mm) / block[1])),
        near_midline,
    )
    top = heart_top(
        d,
        lungs,
        block,
        min_width_mm=heart_width_mm,
        min_rows_mm=heart_rows_mm,
        margin_mm=heart_top_margin_mm,
    )
    top = below_carina(volume, lungs, f, mid_x, top, heart_top_margin_mm)
    bottom = heart_bottom(lungs, hull, block, heart_bottom_margin_mm)
    heart_rows = slice(bottom, d.shape[0] if top is None else top + 1)
    front[heart_rows.stop :] = False  # the extension is the heart's
    front[: heart_rows.start] = False
    zone_c = mediastinum.astype(np.uint8) * AORTA
    zone_c[heart_rows] |= (mediastinum[heart_rows] * HEART).astype(np.uint8)
    zone_c[front] |= HEART
    aorta_columns = np.abs(np.arange(d.shape[2]) - mid_x) * block[2] <= AORTA_HALF_WIDTH_MM
    ys = np.flatnonzero(lungs.any(axis=(0, 2)))
    zone_c[:bottom, : (ys[0] + ys[-1]) // 2] = 0  # below the heart: the aorta lies behind it,
    zone_c[:bottom, :, ~aorta_columns] = 0  # in front of the spine, near the midline
    zone_c[
        _aorta_below(mediastinum, lungs, int(round(aorta_below_mm / block[0])), aorta_columns)
    ] |= AORTA
    # back to the scan's grid (voxels past the last whole block take the last block's zone)
    zone = zone_c.repeat(f[0], 0).repeat(f[1], 1).repeat(f[2], 2)
    pad = [(0, s - z) for s, z in zip(shape, zone.shape)]
    zone = np.pad(zone, pad, mode="edge")
    zone[bone] = 0
    mid_y = ((ys[0] + ys[-1]) / 2.0 + 0.5) * f[1]
    spine = near_spine(bone, volume.spacing_mm, mid_y, (mid_x + 0.5) * f[2])
    zone[spine] &= np.uint8(~HEART & 0xFF)
    rim = _air_rim(volume, zone > 0, airway_wall_mm, faint_wall_mm, faint_peak_hu)
    voxel_mm3 = float(np.prod(volume.spacing_mm))
    top_z = None if top is None else min(shape[0] - 1, (top + 1) * int(f[0]) - 1)
    return ChestRegions(zone, True, lung_ml, top_z, float(bone.sum()) * voxel_mm3, rim=rim)


def apply_safety_net(
    labels: np.ndarray, regions: ChestRegions, *, max_air_rim_fraction: float = AIR_RIM_FRACTION
) -> tuple[np.ndarray, dict[str, int]]:
    """``labels`` with every label outside its region removed: TAC outside
    :attr:`ChestRegions.aorta`, coronary and valve labels outside :attr:`ChestRegions.heart`, and
    whole lesions (26-connected) of which more than ``max_air_rim_fraction`` of the voxels touch
    air (:data:`RIM_AIR` of :attr:`ChestRegions.rim`: calcium lies in tissue, a sharp kernel's
    overshoot on an airway wall does not), and faint lesions (no :data:`RIM_DENSE` voxel) with
    more than that fraction within the wider faint band (:data:`RIM_FAINT`).

    Args:
        labels: a calcium label map (0 background, :class:`calcscore.labels.Label` values).
        regions: the :func:`find_chest_regions` of the scan, on the grid of ``labels``; when
            they were not found, ``labels`` is returned as it is.
        max_air_rim_fraction: a lesion with more of its voxels on the air rim is removed.

    Returns:
        the new labels and the removed voxels per label name.
    """
    if not regions.found:
        return labels, {}
    drop = (labels == int(Label.TAC)) & ~regions.aorta
    drop |= np.isin(labels, [int(v) for v in HEART_LABELS]) & ~regions.heart
    rim = regions.rim
    if rim is not None and (labels > 0).any():
        comps, n = ndimage.label((labels > 0) & ~drop, structure=np.ones((3, 3, 3), bool))
        lesion = comps > 0  # the flags are read on the labelled voxels only
        ids, flags = comps[lesion], rim[lesion]
        size = np.bincount(ids, minlength=n + 1)

        def count(flag: int) -> np.ndarray:
            return np.bincount(ids[(flags & flag) > 0], minlength=n + 1)

        limit = max_air_rim_fraction * size
        on_rim = (count(RIM_AIR) > limit) | ((count(RIM_FAINT) > limit) & (count(RIM_DENSE) == 0))
        on_rim[0] = False
        drop |= on_rim[comps]
    removed = {
        Label(int(v)).name: int(c) for v, c in zip(*np.unique(labels[drop], return_counts=True))
    }
    out = labels.copy()
    out[drop] = 0
    return out, removed
