"""Figures: static matplotlib overlays for reports (and, in :mod:`calcscore.widgets`, the
interactive slice viewer).

Labels are drawn in the colours of the paper's Fig. 6 (:data:`calcscore.labels.COLOURS`).
matplotlib is imported inside the functions, with the non-interactive Agg backend when no
display backend was chosen, so that importing calcscore stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calcscore.labels import CALCIUM_LABELS, COLOURS
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

#: Window presets (level, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "mediastinum": (40.0, 400.0),
    "calcium": (300.0, 1200.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}


def window(hu: np.ndarray, preset: str | tuple[float, float] = "mediastinum") -> np.ndarray:
    """Map HU to [0, 1] grey values with a (level, width) window or a named preset."""
    level, width = WINDOWS[preset] if isinstance(preset, str) else preset
    return np.clip((hu - (level - width / 2)) / width, 0.0, 1.0)


def label_rgba(
    labels: np.ndarray, *, alpha: float = 0.8, visible: set[int] | None = None
) -> np.ndarray:
    """RGBA image of a label slice in the Fig. 6 colours (transparent background).

    Args:
        labels: label values (0..255), any shape.
        alpha: the opacity of labelled pixels, 0..1.
        visible: the label values to draw (None: all calcium labels).

    Returns:
        a float32 (..., 4) array.
    """
    lut = np.zeros((256, 4), np.float32)
    for lab in CALCIUM_LABELS:
        if visible is None or int(lab) in visible:
            lut[int(lab), :3] = COLOURS[lab]
            lut[int(lab), 3] = alpha
    return lut[labels]


def slices_with_most_calcium(labels: LabelVolume, n: int = 3) -> list[int]:
    """Axial slice indices with the most labelled voxels (at least one slice, sorted)."""
    counts = (labels.labels > 0).reshape(labels.shape[0], -1).sum(axis=1)
    if counts.max(initial=0) == 0:
        return [labels.shape[0] // 2]
    order = np.argsort(-counts, kind="stable")
    picked: list[int] = []
    for z in order:  # spread the picks: skip neighbours of slices already shown
        if counts[z] == 0 or len(picked) == n:
            break
        if all(abs(int(z) - p) > 2 for p in picked):
            picked.append(int(z))
    return sorted(picked)


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            import IPython  # noqa: F401

            if IPython.get_ipython() is None:
                matplotlib.use("Agg")
        except ImportError:
            matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay_figure(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    slices: list[int] | None = None,
    n_slices: int = 3,
    preset: str | tuple[float, float] = "mediastinum",
    title: str | None = None,
    numbers: Sequence[int] | None = None,
):
    """A row of axial slices (those with the most calcium by default) with the labels on top,
    and a legend of the labels present.

    Args:
        volume: the CT.
        labels: its labels on the same grid.
        slices: the axial slices to show (None: :func:`slices_with_most_calcium`).
        n_slices: how many slices to pick when ``slices`` is None.
        preset: a window name of :data:`WINDOWS` or (level, width) in HU.
        title: the figure's title (None: none).
        numbers: the number each slice is titled with (None: its index; the scan's own slice
            numbers for a scan shown in the standard layout, :mod:`calcscore.orientation`).

    Returns:
        the matplotlib Figure.
    """
    check_same_geometry(volume, labels)
    plt = _pyplot()
    from matplotlib.patches import Patch

    zs = slices if slices is not None else slices_with_most_calcium(labels, n_slices)
    sy, sx = volume.spacing_mm[1:]
    fig, axes = plt.subplots(1, len(zs), figsize=(4.2 * len(zs), 4.6), squeeze=False)
    for ax, z in zip(axes[0], zs):
        ax.imshow(
            window(volume.hu[z], preset),
            cmap="gray",
            vmin=0,
            vmax=1,
            aspect=sy / sx,
            interpolation="nearest",
        )
        ax.imshow(label_rgba(labels.labels[z]), aspect=sy / sx, interpolation="nearest")
        ax.set_title(f"axial slice {z if numbers is None else numbers[z]}")
        ax.axis("off")
    present = [lab for lab in CALCIUM_LABELS if (labels.labels == lab).any()]
    if present:
        fig.legend(
            handles=[Patch(color=COLOURS[lab], label=lab.name) for lab in present],
            loc="lower center",
            ncol=len(present),
            frameon=False,
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if present else 0, 1, 1))
    return fig


def save_overlay_png(volume: CTVolume, labels: LabelVolume, path: str | Path, **kwargs) -> Path:
    """Write :func:`overlay_figure` as a PNG (atomically, 90 dpi).

    Args:
        volume, labels: as for :func:`overlay_figure`.
        path: the PNG file.
        kwargs: further arguments of :func:`overlay_figure`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from calcscore.io import atomic_path

    plt = _pyplot()
    fig = overlay_figure(volume, labels, **kwargs)
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp / p.name, dpi=90)
    plt.close(fig)
    return p


# ------------------------------------------------------------------------ slice views (any plane)
#: Colour of the >= 130 HU overlay (paper Fig. 5): cyan, distinct from the six label colours.
THRESHOLD_COLOUR: tuple[float, float, float] = (0.0, 0.85, 0.9)
#: Display planes and the array axis each one cuts.
PLANES: dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}


def _check_plane(plane: str) -> int:
    if plane not in PLANES:
        raise ValueError(f"`plane` must be one of {', '.join(PLANES)}, got {plane=}")
    return PLANES[plane]


def n_slices(shape: tuple[int, int, int], plane: str) -> int:
    """Number of slices of a (z, y, x) array in ``plane``."""
    return int(shape[_check_plane(plane)])


def plane_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One slice of a (z, y, x) array as displayed (radiological view of an identity-direction
    scan): axial rows y (anterior up), columns x (patient left on the right); coronal and
    sagittal with the head up (rows z reversed); sagittal columns y (anterior on the left).

    Args:
        array: a (z, y, x) array (HU or labels).
        plane: "axial", "coronal" or "sagittal".
        index: the slice along the plane's axis.

    Returns:
        a 2D view of ``array`` (not a copy).
    """
    axis = _check_plane(plane)
    n = array.shape[axis]
    if not 0 <= index < n:
        raise ValueError(f"`index` must lie in 0..{n - 1} for the {plane} plane, got {index=}")
    if plane == "axial":
        return array[index]
    if plane == "coronal":
        return array[::-1, index, :]
    return array[::-1, :, index]


def plane_spacing(spacing_mm: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(row, column) pixel spacing in mm of a slice from :func:`plane_slice`."""
    _check_plane(plane)
    sz, sy, sx = (float(s) for s in spacing_mm)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def _square_pixels(img: np.ndarray, spacing_rc: tuple[float, float]) -> np.ndarray:
    """Nearest-neighbour stretch of a slice so that both axes have the smaller pixel spacing."""
    s = min(spacing_rc)
    out = img
    for axis, sp in enumerate(spacing_rc):
        n = img.shape[axis]
        n_out = max(1, int(round(n * sp / s)))
        if n_out == n:
            continue
        idx = np.minimum(((np.arange(n_out) + 0.5) * n / n_out).astype(int), n - 1)
        out = np.take(out, idx, axis=axis)
    return out


def default_index(
    shape: tuple[int, int, int], plane: str, labels: LabelVolume | None = None
) -> int:
    """The middle slice, or the slice of ``plane`` with the most labelled voxels.

    Args:
        shape: the (z, y, x) shape of the volume.
        plane: "axial", "coronal" or "sagittal".
        labels: a label map; None or empty: the middle slice.

    Returns:
        the slice index.
    """
    axis = _check_plane(plane)
    if labels is not None and labels.array.any():
        other = tuple(a for a in range(3) if a != axis)
        return int(np.argmax((labels.array > 0).sum(axis=other)))
    return int(shape[axis] // 2)


def render_slice(
    volume: CTVolume,
    labels: LabelVolume | None = None,
    *,
    plane: str = "axial",
    index: int | None = None,
    preset: str | tuple[float, float] = "mediastinum",
    visible: set[int] | None = None,
    threshold_hu: float | None = None,
    alpha: float = 0.7,
    square_pixels: bool = True,
) -> np.ndarray:
    """The RGB image (uint8, rows x columns x 3) of one slice: grey values in the window
    ``preset``, the voxels >= ``threshold_hu`` in :data:`THRESHOLD_COLOUR` (when given), and the
    labels in ``visible`` (all when None) in the Fig. 6 colours on top.

    Deterministic (numpy only). With ``square_pixels`` the slice is stretched by nearest
    neighbour so that a display pixel is square in millimetres.

    Args:
        volume: the CT.
        labels: its labels on the same grid (None: the CT alone).
        plane: "axial", "coronal" or "sagittal" (:func:`plane_slice`).
        index: the slice (None: :func:`default_index`).
        preset: a window name of :data:`WINDOWS` or (level, width) in HU.
        visible: the label values to draw (None: all).
        threshold_hu: tint voxels at or above this HU (None: no tint).
        alpha: the labels' opacity, 0..1.
        square_pixels: stretch to square pixels.

    Returns:
        the uint8 (rows, columns, 3) image.
    """
    if labels is not None:
        check_same_geometry(volume, labels)
    if index is None:
        index = default_index(volume.shape, plane, labels)
    hu = plane_slice(volume.hu, plane, index)
    grey = window(hu, preset).astype(np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if threshold_hu is not None:
        above = hu >= threshold_hu
        rgb[above] = 0.45 * rgb[above] + 0.55 * np.asarray(THRESHOLD_COLOUR, np.float32)
    if labels is not None:
        rgba = label_rgba(plane_slice(labels.labels, plane, index), alpha=alpha, visible=visible)
        a = rgba[..., 3:4]
        rgb = rgb * (1.0 - a) + rgba[..., :3] * a
    out = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    if square_pixels:
        out = _square_pixels(out, plane_spacing(volume.spacing_mm, plane))
    return out


def side_by_side(images: list[np.ndarray], *, gap: int = 4, fill: int = 255) -> np.ndarray:
    """Images in one row, top-aligned, padded below to the tallest.

    Args:
        images: uint8 (H_i, W_i, 3) images; at least one.
        gap: pixels between neighbours.
        fill: the grey value (0..255) of the gaps and the padding.

    Returns:
        a uint8 (max H_i, sum W_i + gaps, 3) image.
    """
    if not images:
        raise ValueError("`images` must hold at least one image")
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(np.full((h, gap, 3), fill, np.uint8))
        pad = np.full((h - im.shape[0], im.shape[1], 3), fill, np.uint8)
        parts.append(np.concatenate([im, pad], axis=0))
    return np.concatenate(parts, axis=1)


def png_bytes(rgb: np.ndarray, *, scale: int = 1) -> bytes:
    """PNG of an RGB uint8 image, enlarged ``scale`` times by pixel repetition (deterministic:
    no time stamp, no software tag)."""
    import io

    import matplotlib.image

    if scale > 1:
        rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    matplotlib.image.imsave(
        buf,
        np.ascontiguousarray(rgb),
        format="png",
        # None drops the key (no "Software" chunk: identical bytes across versions)
        metadata={"Software": None},  # type: ignore[dict-item]
    )
    return buf.getvalue()


# ----------------------------------------------------------------------------- cropping
def box_around(
    mask: np.ndarray | LabelVolume,
    spacing_mm: tuple[float, float, float] | None = None,
    *,
    margin_mm: float = 10.0,
) -> tuple[slice, slice, slice]:
    """The (z, y, x) bounding box of a mask (or of the labelled voxels of a label map), grown
    by ``margin_mm`` on every side and clipped to the array.

    Args:
        mask: a boolean (z, y, x) array, or a label map (its labelled voxels).
        spacing_mm: the (z, y, x) voxel spacing; needed with a bare mask (default: the label
            map's).
        margin_mm: the growth on every side, in mm (rounded up to whole voxels per axis).

    Returns:
        three slices (z, y, x).
    """
    if isinstance(mask, LabelVolume):
        spacing_mm = mask.spacing_mm if spacing_mm is None else spacing_mm
        mask = mask.labels > 0
    if spacing_mm is None:
        raise ValueError("`spacing_mm` is needed with a bare mask")
    idx = np.argwhere(np.asarray(mask, bool))
    if idx.size == 0:
        raise ValueError("the mask is empty: there is nothing to put a box around")
    grow = np.ceil(margin_mm / np.asarray(spacing_mm, float)).astype(int)
    lo = np.maximum(idx.min(axis=0) - grow, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + grow, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def crop(grid, box: tuple[slice, slice, slice]):
    """A :class:`CTVolume` or :class:`LabelVolume` cut to ``box`` (z, y, x slices), with its
    origin moved to the box's first voxel so that physical positions stay the same."""
    from dataclasses import replace

    start = [s.start or 0 for s in box]
    origin = grid.index_to_physical(np.asarray([start], float))[0]
    return replace(grid, array=grid.array[box], origin_mm=tuple(float(v) for v in origin))


# the static figures live in calcscore.figures; their old import path keeps working
_MOVED = frozenset(
    (
        "panel_figure",
        "largest_lesion",
        "disagreement_boxes",
        "disagreement_gallery",
        "plot_training_curves",
        "lesion_gallery",
    )
)


def __getattr__(name: str):
    if name in _MOVED:
        import calcscore.figures

        return getattr(calcscore.figures, name)
    raise AttributeError(f"module 'calcscore.viz' has no attribute {name!r}")
