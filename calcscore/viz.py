"""Figures: static matplotlib overlays for reports (and, in :mod:`calcscore.widgets`, the
interactive slice viewer).

Labels are drawn in the colours of the paper's Fig. 6 (:data:`calcscore.labels.COLOURS`).
matplotlib is imported inside the functions, with the non-interactive Agg backend when no
display backend was chosen, so that importing calcscore stays light.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from calcscore.labels import CALCIUM_LABELS, COLOURS, Label
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


def label_rgba(labels: np.ndarray, *, alpha: float = 0.8, visible: set[int] | None = None) -> np.ndarray:
    """(..., 4) RGBA image of a label slice in the Fig. 6 colours (transparent background)."""
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


def overlay_figure(volume: CTVolume, labels: LabelVolume, *, slices: list[int] | None = None,
                   n_slices: int = 3, preset: str | tuple[float, float] = "mediastinum",
                   title: str | None = None):
    """A row of axial slices (those with the most calcium by default) with the labels on top,
    and a legend of the labels present. Returns the matplotlib Figure."""
    check_same_geometry(volume, labels)
    plt = _pyplot()
    from matplotlib.patches import Patch

    zs = slices if slices is not None else slices_with_most_calcium(labels, n_slices)
    sy, sx = volume.spacing_mm[1:]
    fig, axes = plt.subplots(1, len(zs), figsize=(4.2 * len(zs), 4.6), squeeze=False)
    for ax, z in zip(axes[0], zs):
        ax.imshow(window(volume.hu[z], preset), cmap="gray", vmin=0, vmax=1, aspect=sy / sx,
                  interpolation="nearest")
        ax.imshow(label_rgba(labels.labels[z]), aspect=sy / sx, interpolation="nearest")
        ax.set_title(f"axial slice {z}")
        ax.axis("off")
    present = [lab for lab in CALCIUM_LABELS if (labels.labels == lab).any()]
    if present:
        fig.legend(handles=[Patch(color=COLOURS[lab], label=lab.name) for lab in present],
                   loc="lower center", ncol=len(present), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 if present else 0, 1, 1))
    return fig


def save_overlay_png(volume: CTVolume, labels: LabelVolume, path: str | Path, **kwargs) -> Path:
    """Write :func:`overlay_figure` as a PNG (atomically)."""
    from calcscore.io import atomic_path

    plt = _pyplot()
    fig = overlay_figure(volume, labels, **kwargs)
    p = Path(path)
    with atomic_path(p) as tmp:
        fig.savefig(tmp / p.name, dpi=90)
    plt.close(fig)
    return p


def label_names(labels: np.ndarray) -> list[str]:
    """Names of the calcium labels present in an array."""
    return [Label(int(v)).name for v in np.unique(labels) if v in {int(lab) for lab in CALCIUM_LABELS}]
