"""Static figures built on :mod:`calcscore.viz`'s slice views: panel grids that compare scans
or label maps, disagreement galleries, lesion galleries and training curves.

Labels are drawn in the colours of the paper's Fig. 6 (:data:`calcscore.labels.COLOURS`);
matplotlib is imported inside the functions (see :mod:`calcscore.viz`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calcscore.labels import CALCIUM_LABELS, COLOURS, Label
from calcscore.viz import (
    THRESHOLD_COLOUR,
    _pyplot,
    box_around,
    crop,
    default_index,
    render_slice,
)
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry


def _legend(fig, labels: list[LabelVolume | None], threshold_hu: float | None) -> bool:
    from matplotlib.patches import Patch

    present = [
        lab
        for lab in CALCIUM_LABELS
        if any(lv is not None and (lv.labels == lab).any() for lv in labels)
    ]
    handles = [Patch(color=COLOURS[lab], label=lab.name) for lab in present]
    if threshold_hu is not None:
        handles.append(Patch(color=THRESHOLD_COLOUR, label=f"≥ {threshold_hu:g} HU"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    return bool(handles)


def panel_figure(
    panels,
    *,
    plane: str = "axial",
    preset: str | tuple[float, float] = "mediastinum",
    threshold_hu: float | None = None,
    title: str | None = None,
    ncols: int | None = None,
    panel_inches: float = 3.6,
):
    """A grid of slice views, one per panel, with a legend of the labels shown.

    ``panels``: a sequence of ``(title, volume, labels_or_None, index_or_None)`` tuples (the
    index may be left out: the slice with the most labels, or the middle one). Every panel uses
    the same window ``preset`` (and ``threshold_hu`` overlay), so different scans compare
    directly.

    Args:
        panels: the panels, as above; at least one.
        plane: the plane of every panel.
        preset: a window name of :data:`WINDOWS` or (level, width) in HU.
        threshold_hu: tint voxels at or above this HU (None: no tint).
        title: the figure's title (None: none).
        ncols: panels per row (None: all in one row).
        panel_inches: the size of one panel in inches.

    Returns:
        the matplotlib Figure.
    """
    plt = _pyplot()
    items = [tuple(p) + (None,) * (4 - len(p)) for p in panels]
    if not items:
        raise ValueError("`panels` must hold at least one panel")
    ncols = ncols or len(items)
    nrows = -(-len(items) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_inches * ncols, panel_inches * nrows + 0.5), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, volume, labels, index) in zip(axes.ravel(), items):
        idx = default_index(volume.shape, plane, labels) if index is None else int(index)
        ax.imshow(
            render_slice(
                volume, labels, plane=plane, index=idx, preset=preset, threshold_hu=threshold_hu
            ),
            interpolation="nearest",
        )
        ax.set_title(f"{name}\n{plane} {idx}" if name else f"{plane} {idx}", fontsize="medium")
    has_legend = _legend(fig, [p[2] for p in items], threshold_hu)
    top = 1.0
    if title:
        fig.suptitle(title)
        top = 1.0 - 0.45 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight() if has_legend else 0, 1, top))
    return fig


def largest_lesion(
    labels: LabelVolume, *, margin_mm: float = 10.0
) -> tuple[int, tuple[slice, slice, slice]]:
    """(axial slice, (z, y, x) box) of the largest 26-connected calcification of a label map:
    the slice where it has the most voxels and its bounding box grown by ``margin_mm``."""
    from scipy import ndimage

    comps, count = ndimage.label(labels.labels > 0, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        raise ValueError("the label map holds no calcium")
    m = comps == int(np.argmax(np.bincount(comps.ravel())[1:])) + 1
    z = int(np.argmax(m.sum(axis=(1, 2))))
    return z, box_around(m, labels.spacing_mm, margin_mm=margin_mm)


def disagreement_boxes(
    reference: LabelVolume, other: LabelVolume, *, n: int = 4, margin_mm: float = 10.0
) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """Up to ``n`` regions where two label maps differ, largest first.

    Args:
        reference: one label map.
        other: another on the same grid.
        n: the most regions returned (26-connected voxels whose labels differ).
        margin_mm: the growth of each box, as for :func:`box_around`.

    Returns:
        [(axial slice with the most disagreeing voxels, (z, y, x) box), ...]; empty when the
        maps agree.
    """
    from scipy import ndimage

    check_same_geometry(reference, other, names=("reference", "other"))
    differ = reference.labels != other.labels
    comps, count = ndimage.label(differ, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return []
    sizes = np.bincount(comps.ravel())[1:]
    out = []
    for cid in np.argsort(-sizes, kind="stable")[:n] + 1:
        m = comps == cid
        z = int(np.argmax(m.sum(axis=(1, 2))))
        out.append((z, box_around(m, reference.spacing_mm, margin_mm=margin_mm)))
    return out


def disagreement_gallery(
    volume: CTVolume,
    reference: LabelVolume,
    other: LabelVolume,
    *,
    names: tuple[str, str] = ("reference", "observer"),
    n: int = 4,
    margin_mm: float = 10.0,
    preset: str | tuple[float, float] = "calcium",
    title: str | None = None,
):
    """One row per disagreement (:func:`disagreement_boxes`): the CT alone, ``reference`` and
    ``other``, zoomed to the region.

    Args:
        volume: the CT.
        reference, other: two label maps on its grid.
        names: the column titles of ``reference`` and ``other``.
        n, margin_mm: as for :func:`disagreement_boxes`.
        preset: a window name of :data:`WINDOWS` or (level, width) in HU.
        title: the figure's title (None: none).

    Returns:
        the matplotlib Figure (a note when the maps agree).
    """
    plt = _pyplot()
    boxes = disagreement_boxes(reference, other, n=n, margin_mm=margin_mm)
    if not boxes:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(
            0.5, 0.5, f"{names[0]} and {names[1]} agree on every voxel", ha="center", va="center"
        )
        return fig
    panels = []
    for z, box in boxes:
        zs = slice(z, z + 1)
        b = (zs, box[1], box[2])
        v = crop(volume, b)
        panels += [
            (f"CT, slice {z}", v, None, 0),
            (names[0], v, crop(reference, b), 0),
            (names[1], v, crop(other, b), 0),
        ]
    fig = panel_figure(panels, preset=preset, ncols=3, title=title, panel_inches=2.6)
    for ax in fig.axes[: len(panels)]:
        ax.set_title(ax.get_title().split("\n")[0], fontsize="small")
    return fig


def plot_training_curves(runs, *, ax=None, title: str | None = None):
    """Training and validation loss against the iteration, from ``metrics.csv`` files.

    Args:
        runs: a mapping name -> path of a ``metrics.csv`` (or its folder) or a DataFrame with
            ``iteration``, ``train_loss`` and ``val_loss`` columns.
        ax: the Axes to draw in (None: a new figure).
        title: the Axes' title (None: none).

    Returns:
        the matplotlib Axes.
    """
    import pandas as pd

    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    for i, (name, run) in enumerate(dict(runs).items()):
        if isinstance(run, pd.DataFrame):
            df = run
        else:
            p = Path(run)
            df = pd.read_csv(p / "metrics.csv" if p.is_dir() else p)
        colour = f"C{i}"
        ax.plot(df["iteration"], df["train_loss"], color=colour, label=f"{name} training")
        if "val_loss" in df and df["val_loss"].notna().any():
            ax.plot(
                df["iteration"],
                df["val_loss"],
                color=colour,
                linestyle="--",
                marker="o",
                markersize=3,
                label=f"{name} validation",
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy loss")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def lesion_gallery(
    volume: CTVolume,
    labels: LabelVolume,
    *,
    max_lesions: int = 40,
    half_width_mm: float = 30.0,
    ncols: int = 8,
    preset: str | tuple[float, float] = "mediastinum",
    title: str | None = None,
):
    """One axial close-up per labelled lesion (26-connected), largest first: the slice where the
    lesion has the most voxels, ``half_width_mm`` around its centre, labels in the Fig. 6
    colours; each titled with its label, volume and slice. For a reader to judge every lesion
    of a scan without a viewer.

    Args:
        volume: the CT.
        labels: its labels on the same grid.
        max_lesions: the most lesions shown (the largest).
        half_width_mm: the close-up reaches this far from the lesion's centre in y and x.
        ncols: close-ups per row.
        preset: a window name of :data:`WINDOWS` or (level, width) in HU.
        title: the figure's title (None: none).

    Returns:
        the matplotlib Figure (an empty one without lesions).
    """
    from scipy import ndimage

    check_same_geometry(volume, labels)
    plt = _pyplot()
    comps, count = ndimage.label(labels.labels > 0, structure=np.ones((3, 3, 3), bool))
    voxel_mm3 = float(np.prod(labels.spacing_mm))
    items = []
    for k, box in enumerate(ndimage.find_objects(comps), start=1):
        m = comps[box] == k
        zz, yy, xx = np.nonzero(m)
        name = Label(int(np.bincount(labels.labels[box][m]).argmax())).name
        items.append(
            (
                int(m.sum()),
                name,
                int(box[0].start + np.bincount(zz).argmax()),
                int(round(box[1].start + yy.mean())),
                int(round(box[2].start + xx.mean())),
            )
        )
    items.sort(key=lambda t: -t[0])
    items = items[:max_lesions]
    nrows = max(1, -(-len(items) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 2.3 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    hy, hx = (max(1, int(round(half_width_mm / s))) for s in volume.spacing_mm[1:])
    for ax, (n, name, z, y, x) in zip(axes.ravel(), items):
        box = (
            slice(z, z + 1),
            slice(max(0, y - hy), y + hy + 1),
            slice(max(0, x - hx), x + hx + 1),
        )
        ax.imshow(
            render_slice(
                crop(volume, box), crop(labels, box), plane="axial", index=0, preset=preset
            ),
            interpolation="nearest",
        )
        ax.set_title(f"{name} {n * voxel_mm3:.0f} mm³\nslice {z}, y {y}, x {x}", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
