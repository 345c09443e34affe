"""Does the scan cover the heart? Measured from the scan, with the safety net's heart rule.

A scan that misses the heart, or holds only part of it, cannot say "no coronary calcium".
:func:`heart_coverage` answers **covered**, **partly covered** or **not covered** with the
heart-row rule of :mod:`calcscore.regions` (the anatomical safety net), on its coarse grid of
about 3 mm blocks and its lungs (:func:`calcscore.regions.lungs_coarse`):

1. **Heart rows.** A row (fixed slice and y) whose run of mediastinal tissue is at least
   ``min_width_mm`` (80 mm) wide between lung on its right and lung on its left; the heart is
   the widest thing between the lungs. Unlike the safety net (which wants unenhanced tissue,
   < 200 HU), the tissue here reaches 700 HU without cortical bone (no voxel of the block above
   800 HU), so that a contrast-enhanced heart counts as heart and a vertebra still splits a row.
2. **Heart slices.** Slices with at least ``min_rows_mm`` (30 mm) of heart rows, in groups with
   gaps of up to 15 mm; the group with the most rows is the heart. It is found when it is
   ``min_heart_mm`` (20 mm) high and, in one of its slices or of those up to 30 mm above it,
   lung fills at least ``min_lung_fraction`` (40 %) of the lungs' convex outline. Below the heart
   the dome of the liver also lies between the two lungs and is as wide, but there the lungs are
   thin crescents around it: in the 12 lowest slices of lungdx-a0001-b (liver only) lung fills at
   most 36 % of the outline; at the heart 67-72 % on the seven real chest CTs. A heart-only field
   of view cuts the lungs beside the heart, most of all beside its lower half: on heart-centred
   square crops of the seven real chest CTs (the heart and 10 mm above and below), 140-200 mm
   wide, lung fills 35-66 % (160 mm: 42-54 %; 140 mm: 35-45 %) in the heart slices, on
   heart-only phantoms of the realistic anatomy (166 mm; generator 2026-12-05.3) 37-57 %. All of
   them reach 40 % (the phantoms of generator 2026-12-05.4: 51-64 %) when the 30 mm above the
   heart's widest slices are read too, where the heart narrows and the lungs widen. A crop that
   ends in the liver's dome has no such slices above it.
3. **Field of view.** A heart between two lungs has its sides inside the field of view. Where
   none is found, rows of the same width from lung to the edge of the field of view (the image
   border or padding outside the reconstruction circle) that span the body's middle are tried
   with the same rule, save that the visible run need only be half as wide (a field of view
   that cuts the heart shows part of its width): a heart found so is cut by the field of view.
4. **Top and bottom.** Heart slices in the scan's first or last block of slices: the heart is
   cut at the bottom or the top. Any cut: **partly covered**; none: **covered** (so a gated
   heart-only field of view counts as covered when the whole heart is inside it).

Checked on every real scan the project has (8, all covered; the QRM thorax phantom's cardiac
insert is its heart), on crops of them without the heart or cutting it, and on phantoms of every
size (tests/test_coverage.py). Known limit: the liver dome just below the heart can join the heart
slices, so a scan that starts in the liver dome is called cut at the bottom (partly covered) though
the heart is whole: the error is on the side of "not assessable". On a heart-only field of view
cut below the middle of the heart, the cut may be placed at the field of view rather than at the
top: the status (partly covered) is right, its place not. Heart-only phantoms cut from the side
to 83-100 mm come out partly covered (tests/test_coverage.py); one crop through the heart's
middle of the 12 tried was called not covered (refused: still no category). A side cut of the
liver dome below the heart (the 12 lowest slices of lungdx-a0001-b, one lung kept) is called
partly covered rather than not covered: scored, but not assessable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from calcscore.regions import (
    AIR_HU,
    PADDING_HU,
    _largest,
    block_mean,
    convex_hull_mask,
    lungs_coarse,
)
from calcscore.volume import CTVolume

log = logging.getLogger(__name__)

Coverage = Literal["covered", "partly covered", "not covered"]
COVERED: Coverage = "covered"
PARTLY_COVERED: Coverage = "partly covered"
NOT_COVERED: Coverage = "not covered"

_CORTEX_HU = 800.0  # a block holding a voxel above this holds cortical bone
_MAX_TISSUE_HU = 700.0  # enhanced blood stays below; block means of bone marrow too
_MIN_LUNG_ML = 100.0  # as the safety net (calcscore.regions.find_chest_regions)
_ABOVE_MM = 30.0  # the lung fraction is read in the heart's slices and this far above them


@dataclass(frozen=True)
class HeartCoverage:
    """What :func:`heart_coverage` found.

    ``status``: covered, partly covered or not covered; ``reason``: one sentence for the user;
    ``cut``: where a partly covered heart is cut ("top", "bottom", "field of view");
    ``first_slice``/``last_slice``: the heart slices on the scan's grid (None when none);
    ``heart_mm``: their height; ``lung_fraction``: the largest share of the lungs' convex outline
    that is lung in a heart slice or up to 30 mm above the heart slices.
    """

    status: Coverage
    reason: str
    cut: tuple[str, ...] = ()
    first_slice: int | None = None
    last_slice: int | None = None
    heart_mm: float = 0.0
    lung_fraction: float = 0.0

    @property
    def covered(self) -> bool:
        return self.status == COVERED

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "cut": list(self.cut),
            "first_slice": self.first_slice,
            "last_slice": self.last_slice,
            "heart_mm": round(float(self.heart_mm), 1),
            "lung_fraction": round(float(self.lung_fraction), 3),
        }


def heart_coverage(
    volume: CTVolume,
    *,
    min_width_mm: float = 80.0,
    min_rows_mm: float = 30.0,
    min_heart_mm: float = 20.0,
    min_lung_fraction: float = 0.40,
) -> HeartCoverage:
    """Whether ``volume`` covers the heart (see the module docstring for the rule and its figures).

    Args:
        volume: the scan in HU; it must hold finite values (the checks refuse NaN and infinite
            voxels first).
        min_width_mm: a heart row's run of mediastinal tissue between the lungs is this wide.
        min_rows_mm: a heart slice has this much of heart rows.
        min_heart_mm: the heart slices span at least this height.
        min_lung_fraction: in one heart slice, or up to 30 mm above them, lung fills at least
            this share of the lungs' convex outline (below it: the liver dome).

    Returns:
        the :class:`HeartCoverage`: covered, partly covered or not covered, with the reason.
    """
    hu = volume.hu
    d, f = block_mean(hu, volume.spacing_mm)
    block = np.asarray(volume.spacing_mm, float) * f
    if min(d.shape) < 3:
        return HeartCoverage(NOT_COVERED, f"the scan is too small ({hu.shape}) to hold a heart")
    lungs, lung_ml = lungs_coarse(d, block)
    if lung_ml < _MIN_LUNG_ML:
        return HeartCoverage(
            NOT_COVERED,
            f"no heart: {lung_ml:.0f} mL of lung found (the heart lies between the lungs; "
            f"a chest CT holds litres)",
        )
    peak = _block_max(hu, f)
    cortex = peak > _CORTEX_HU
    tissue = (d >= AIR_HU) & (d < _MAX_TISSUE_HU) & ~cortex
    edge = peak <= PADDING_HU  # padding outside the reconstruction circle
    body = _largest(d > AIR_HU)
    min_run = max(2, int(np.ceil(min_width_mm / block[2])))
    min_edge_run = max(2, int(np.ceil(min_width_mm / 2 / block[2])))
    lung_rows, edge_rows = _heart_rows(lungs, tissue, edge, body, min_run, min_edge_run)
    fraction = _lung_fraction(lungs, block, np.asarray(lungs.any(axis=(1, 2))))
    rule = (min_width_mm, min_rows_mm, min_heart_mm, min_lung_fraction)
    between = _heart_slices(lung_rows * block[1], fraction, block[0], *rule[1:])
    if isinstance(between, str):  # no heart between two lungs: one cut by the field of view?
        at_edge = _heart_slices(edge_rows * block[1], fraction, block[0], *rule[1:])
        if isinstance(at_edge, str):
            return HeartCoverage(NOT_COVERED, "no heart: " + between.format(*rule))
        heart, cut = at_edge, ["field of view"]
    else:
        heart, cut = between, []
    first, last = int(heart.min()), int(heart.max())
    if last >= d.shape[0] - 1:
        cut.append("top")
    if first <= 0:
        cut.append("bottom")
    span = (first * int(f[0]), min(hu.shape[0] - 1, (last + 1) * int(f[0]) - 1))
    heart_mm = len(heart) * block[0]
    kw = dict(
        first_slice=span[0],
        last_slice=span[1],
        heart_mm=heart_mm,
        lung_fraction=_lung_reach(fraction, heart, block[0]),
    )
    where = f"slices {span[0]}-{span[1]}, {heart_mm:.0f} mm"
    if cut:
        return HeartCoverage(
            PARTLY_COVERED,
            f"the heart ({where}) is cut at the {' and the '.join(cut)} of the scan",
            cut=tuple(cut),
            **kw,
        )
    return HeartCoverage(COVERED, f"the whole heart is in the scan ({where})", **kw)


def _lung_fraction(lungs: np.ndarray, block: np.ndarray, slices: np.ndarray) -> np.ndarray:
    """Per slice (of ``slices``; 0 elsewhere), the share of the lungs' convex outline that is
    lung: small where the liver's dome fills the space between thin crescents of lung."""
    out = np.zeros(lungs.shape[0])
    for z in np.flatnonzero(slices):
        outline = convex_hull_mask(lungs[z], block[1:]).sum()
        out[z] = lungs[z].sum() / outline if outline else 0.0
    return out


def _lung_reach(
    fraction: np.ndarray, heart: np.ndarray, slice_mm: float, above_mm: float = _ABOVE_MM
) -> float:
    """The largest lung fraction in the heart's slices and those up to ``above_mm`` above them
    (a heart-only field of view cuts the lungs beside the lower heart; they widen above it)."""
    above = int(round(above_mm / slice_mm))
    return float(fraction[int(heart.min()) : int(heart.max()) + above + 1].max())


def _block_max(hu: np.ndarray, f: np.ndarray) -> np.ndarray:
    n = (np.array(hu.shape) // f) * f
    a = hu[: n[0], : n[1], : n[2]]
    return a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).max(axis=(1, 3, 5))


def _heart_slices(
    rows_mm: np.ndarray,
    fraction: np.ndarray,
    slice_mm: float,
    min_rows_mm: float,
    min_heart_mm: float,
    min_lung_fraction: float,
    max_gap_mm: float = 15.0,
    above_mm: float = _ABOVE_MM,
) -> np.ndarray | str:
    """The heart's slices: of the slices with ``min_rows_mm`` of heart rows, the group (gaps of
    up to ``max_gap_mm``) with the most rows, if lung fills ``min_lung_fraction`` of the lungs'
    outline in one of its slices or of those up to ``above_mm`` above it; or why there is none,
    a template for ``str.format(min_width_mm, min_rows_mm, min_heart_mm, min_lung_fraction)``."""
    hits = np.flatnonzero(rows_mm >= min_rows_mm)
    if not len(hits):
        return "no slice has {1:g} mm of rows with {0:g} mm of tissue between the lungs"
    groups = np.split(hits, np.flatnonzero(np.diff(hits) * slice_mm > max_gap_mm) + 1)
    heart = max(groups, key=lambda g: rows_mm[g].sum())
    if len(heart) * slice_mm < min_heart_mm:
        return (
            f"{len(heart) * slice_mm:.0f} mm of slices have {{1:g}} mm of rows with {{0:g}} mm "
            "of tissue between the lungs, fewer than {2:g} mm"
        )
    top = _lung_reach(fraction, heart, slice_mm, above_mm)
    if top < min_lung_fraction:
        return (
            f"the tissue between the lungs lies where lung fills at most {100 * top:.0f} % "
            "of their outline, at the heart {3:.0%} or more: the liver's dome below the heart"
        )
    return heart


def _heart_rows(
    lungs: np.ndarray,
    tissue: np.ndarray,
    edge: np.ndarray,
    body: np.ndarray,
    min_run: int,
    min_edge_run: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per slice, the rows with a run of ``tissue`` at least ``min_run`` blocks long between
    lung and lung, and (of the others) those with one at least ``min_edge_run`` long between lung
    and the edge of the field of view (the border or ``edge`` blocks) that spans the body's
    middle in that row: a field of view that cuts the heart shows only part of its width."""
    nz, ny, nx = tissue.shape
    along_x = np.zeros((3, 3, 3), bool)
    along_x[1, 1, :] = True
    runs, n = ndimage.label(tissue, structure=along_x)
    if n == 0:
        return np.zeros(nz, int), np.zeros(nz, int)
    z, y, x = np.nonzero(runs)
    k = runs[z, y, x]
    a = np.full(n + 1, nx)
    np.minimum.at(a, k, x)
    b = np.zeros(n + 1, int)
    np.maximum.at(b, k, x + 1)
    rz, ry = np.zeros(n + 1, int), np.zeros(n + 1, int)
    rz[k], ry[k] = z, y
    keep = np.flatnonzero(b - a >= min(min_run, min_edge_run))
    keep = keep[keep > 0]
    a, b, rz, ry = a[keep], b[keep], rz[keep], ry[keep]
    wide = b - a >= min_run
    left_lung = (a > 0) & lungs[rz, ry, np.maximum(a - 1, 0)]
    right_lung = (b < nx) & lungs[rz, ry, np.minimum(b, nx - 1)]
    left_edge = (a == 0) | edge[rz, ry, np.maximum(a - 1, 0)]
    right_edge = (b == nx) | edge[rz, ry, np.minimum(b, nx - 1)]
    first = np.argmax(body, axis=2)
    last = nx - 1 - np.argmax(body[:, :, ::-1], axis=2)
    mid = np.where(body.any(axis=2), (first + last) / 2.0, nx / 2.0)[rz, ry]
    spans = (a <= mid) & (mid < b)
    at_edge = (
        spans & (b - a >= min_edge_run) & ((left_lung & right_edge) | (left_edge & right_lung))
    )
    between = np.zeros((nz, ny), bool)
    lung_both = wide & left_lung & right_lung
    between[rz[lung_both], ry[lung_both]] = True
    edged = np.zeros((nz, ny), bool)
    edged[rz[at_edge], ry[at_edge]] = True
    return between.sum(axis=1), (edged & ~between).sum(axis=1)
