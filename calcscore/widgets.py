"""An interactive slice viewer for JupyterLab (ipywidgets).

:class:`SliceViewer` scrolls through a scan in the axial, coronal or sagittal plane, with window
presets (:data:`calcscore.viz.WINDOWS`) or a free level and width, one toggle per calcium label
in the colours of the paper's Fig. 6, a >= 130 HU overlay (Fig. 5), and one panel per label map,
side by side (reference vs prediction, observer 1 vs observer 2)::

    from calcscore.widgets import SliceViewer
    SliceViewer(volume, {"reference": truth, "calcscore": seg.labels})

The state lives in the controls; :meth:`SliceViewer.render` returns the RGB array of the current
view (all panels in one row), so everything the browser shows can be tested without one. Images
are composed with numpy (:func:`calcscore.viz.render_slice`), written as PNG by matplotlib and
shown in ``ipywidgets.Image`` widgets: light and deterministic.

With ``annotate=True`` the viewer is also an annotation tool (CACSLabeler's tools, driven by a
widget-free :class:`calcscore.annotate.Annotator`): the first panel becomes the edited label
map, and a row of controls picks the tool (grow a lesion from one voxel at 130 HU, paint or
erase a disk of a radius in mm), the label (LAD ... MV, or "mask" for region masks), the
cursor, undo, save and load::

    v = SliceViewer(volume, annotate=True)
    v.click(120, 200)          # a pixel of the first panel's image, as displayed
    v.annotator.save("annotation.nii.gz")

``ipywidgets.Image`` reports no click positions, so in the browser the cursor is set with the
``row`` and ``col`` boxes (the slice's pixel, shown as a white cross) and applied with the
*apply at cursor* button; :meth:`SliceViewer.click` maps a pixel of the displayed PNG to the
voxel (through the whole-pixel enlargement and the square-pixel stretch) for any front end
that does deliver clicks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from calcscore._annotation_mode import (  # noqa: F401  (MASK_COLOUR, CURSOR_COLOUR: as before)
    CSS,
    CURSOR_COLOUR,
    MASK_COLOUR,
    AnnotationMode,
    _hex,
    _with_annotator,
)
from calcscore.annotate import Annotator
from calcscore.errors import optional_import
from calcscore.labels import CALCIUM_LABELS, COLOURS, Label
from calcscore.orientation import orientation_of
from calcscore.scoring import CALCIUM_THRESHOLD_HU
from calcscore.viz import (
    PLANES,
    THRESHOLD_COLOUR,
    WINDOWS,
    default_index,
    n_slices,
    png_bytes,
    render_slice,
    side_by_side,
)
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

__all__ = ["SliceViewer", "view"]

log = logging.getLogger(__name__)


def _as_panels(labels) -> dict[str, LabelVolume | None]:
    if labels is None:
        return {"": None}
    if isinstance(labels, LabelVolume):
        return {"labels": labels}
    if isinstance(labels, Mapping):
        panels = dict(labels)
    elif isinstance(labels, Sequence):
        panels = {f"labels {i + 1}": lv for i, lv in enumerate(labels)}
    else:
        raise TypeError(
            f"`labels` must be a LabelVolume, a mapping name -> LabelVolume or a list, "
            f"got {type(labels).__name__}"
        )
    if not panels:
        return {"": None}
    return panels


class SliceViewer(AnnotationMode):
    """Scroll through ``volume`` with one panel per label map.

    Parameters
    ----------
    volume : the CT scan (HU).
    labels : None (the CT alone), a :class:`LabelVolume`, a mapping title -> label map (one
        panel each, side by side, e.g. ``{"reference": ref, "prediction": pred}``) or a list.
        Every label map must share the grid of ``volume``. A scan stored in another layout
        than DICOM's usual one (a dcm2niix or RAS NIfTI) is shown in that usual layout, anterior
        up (:mod:`calcscore.orientation`; not with an ``annotate`` Annotator, shown as it is):
        its slice numbers and saved label maps are then that layout's (the same voxels, which
        calcscore reads onto the scan's own grid).
    plane : "axial", "coronal" or "sagittal" at the start.
    preset : a name of :data:`calcscore.viz.WINDOWS` or a (level, width) pair in HU.
    threshold_hu : the calcium threshold of the overlay (130 HU).
    show_threshold : start with the >= ``threshold_hu`` overlay on.
    alpha : opacity of the label colours.
    display_px : the panels are enlarged by whole pixels to about this width on screen.
    annotate : True to edit (a copy of) the first label map with the annotation tools, or an
        :class:`calcscore.annotate.Annotator` whose label map becomes the first panel.
    """

    def __init__(
        self,
        volume: CTVolume,
        labels=None,
        *,
        plane: str = "axial",
        preset: str | tuple[float, float] = "mediastinum",
        threshold_hu: float = CALCIUM_THRESHOLD_HU,
        show_threshold: bool = False,
        alpha: float = 0.7,
        display_px: int = 384,
        annotate: bool | Annotator = False,
    ):
        widgets = optional_import("ipywidgets", "the interactive slice viewer", "notebooks")
        if plane not in PLANES:
            raise ValueError(f"`plane` must be one of {', '.join(PLANES)}, got {plane=}")
        self.panels = _as_panels(labels)
        for name, lv in self.panels.items():
            if lv is not None:
                check_same_geometry(volume, lv, names=("volume", f"label map {name!r}"))
        if not isinstance(annotate, Annotator):  # shown as radiologists read it (anterior up)
            orient = orientation_of(volume.direction)
            volume = orient.apply(volume)
            self.panels = {
                k: None if v is None else orient.apply(v) for k, v in self.panels.items()
            }
        self.volume = volume
        self.annotator, self.panels = _with_annotator(volume, self.panels, annotate)
        self.threshold_hu = float(threshold_hu)
        self.alpha = float(alpha)
        self.display_px = int(display_px)
        first = next((lv for lv in self.panels.values() if lv is not None), None)
        # the slice shown in each plane, kept when switching planes
        self._index = {p: default_index(volume.shape, p, first) for p in PLANES}
        level, width = WINDOWS[preset] if isinstance(preset, str) else preset
        self._busy = False

        self._build_controls(widgets, plane, preset, (level, width), show_threshold)
        self._build_layout(widgets)
        self._scale = 1
        if self.annotator is not None:
            self._build_annotation(widgets)
        self.refresh()

    def _build_controls(
        self, widgets, plane: str, preset, window: tuple[float, float], show_threshold: bool
    ) -> None:
        """The plane, slice, window and overlay controls."""
        level, width = window
        self.plane = widgets.ToggleButtons(options=list(PLANES), value=plane, description="plane")
        self.slider = widgets.IntSlider(
            value=self._index[plane],
            min=0,
            max=n_slices(self.volume.shape, plane) - 1,
            description="slice",
            continuous_update=False,
            layout=widgets.Layout(width="420px"),
        )
        self.preset = widgets.Dropdown(
            options=[*WINDOWS, "custom"],
            value=preset if isinstance(preset, str) else "custom",
            description="window",
        )
        self.level = widgets.IntSlider(
            value=int(level),
            min=-1200,
            max=3000,
            step=10,
            description="level",
            continuous_update=False,
        )
        self.width = widgets.IntSlider(
            value=int(width), min=1, max=4000, step=10, description="width", continuous_update=False
        )
        self.threshold = widgets.Checkbox(
            value=bool(show_threshold),
            indent=False,
            description=f"≥ {self.threshold_hu:g} HU",
            style={"background": _hex(THRESHOLD_COLOUR)},
            layout=widgets.Layout(width="auto", margin="0 12px 0 0"),
        )
        self.label_toggles: dict[Label, Any] = {
            lab: widgets.Checkbox(
                value=True,
                indent=False,
                description=lab.name,
                style={"background": _hex(COLOURS[lab])},
                layout=widgets.Layout(width="auto"),
            )
            for lab in CALCIUM_LABELS
        }

    def _build_layout(self, widgets) -> None:
        """The image panels, the CSS classes, the observers and the viewer's box."""
        self.images = [widgets.Image(format="png") for _ in self.panels]
        self.position = widgets.HTML()

        self.plane.add_class(CSS["plane"])
        self.slider.add_class(CSS["slider"])
        self.preset.add_class(CSS["preset"])
        self.threshold.add_class(CSS["threshold"])
        for lab, box in self.label_toggles.items():
            box.add_class(CSS["label"])
            box.add_class(f"{CSS['label']}-{lab.name.lower()}")
        for im in self.images:
            im.add_class(CSS["image"])

        self.plane.observe(self._on_plane, names="value")
        self.slider.observe(self._on_slice, names="value")
        self.preset.observe(self._on_preset, names="value")
        for w in (self.level, self.width, self.threshold, *self.label_toggles.values()):
            w.observe(self._on_change, names="value")

        panels = [
            widgets.VBox([widgets.HTML(f"<b>{name}</b>"), im])
            for name, im in zip(self.panels, self.images)
        ]
        toggles = widgets.HBox(
            [self.threshold, *self.label_toggles.values()],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.plane, self.preset]),
                widgets.HBox([self.slider, self.position]),
                widgets.HBox([self.level, self.width]),
                toggles,
                widgets.HBox(panels),
            ]
        )
        self.widget.add_class(CSS["viewer"])

    # ----------------------------------------------------------------------- state
    @property
    def index(self) -> int:
        return int(self.slider.value)

    @property
    def window(self) -> tuple[float, float]:
        """(level, width) in HU."""
        return float(self.level.value), float(self.width.value)

    @property
    def visible(self) -> set[int]:
        return {int(lab) for lab, box in self.label_toggles.items() if box.value}

    def set_plane(self, plane: str) -> None:
        self.plane.value = plane

    def set_slice(self, index: int) -> None:
        self.slider.value = int(index)

    def set_window(self, preset: str | tuple[float, float]) -> None:
        """A preset name of :data:`calcscore.viz.WINDOWS` or a (level, width) pair."""
        if isinstance(preset, str):
            if preset not in WINDOWS:
                raise ValueError(f"`preset` must be one of {', '.join(WINDOWS)}, got {preset=}")
            self.preset.value = preset
            return
        level, width = preset
        with self._quiet():
            self.preset.value = "custom"
            self.level.value, self.width.value = int(level), int(width)
        self.refresh()

    def show_label(self, label: Label | int | str, on: bool = True) -> None:
        lab = Label.from_name(label) if isinstance(label, str) else Label(int(label))
        if lab not in self.label_toggles:
            raise ValueError(f"`label` must be a calcium label, got {lab.name}")
        self.label_toggles[lab].value = bool(on)

    def show_threshold(self, on: bool = True) -> None:
        self.threshold.value = bool(on)

    # ----------------------------------------------------------------------- rendering
    def render_panels(self) -> list[np.ndarray]:
        """The RGB (uint8) image of every panel in the current view; in annotation mode the
        first one also shows the region mask and the cursor."""
        plane = self.plane.value
        thr = self.threshold_hu if self.threshold.value else None
        images = [
            render_slice(
                self.volume,
                lv,
                plane=plane,
                index=self.index,
                preset=self.window,
                visible=self.visible,
                threshold_hu=thr,
                alpha=self.alpha,
            )
            for lv in self.panels.values()
        ]
        if self.annotator is not None:
            self._draw_annotation(images[0])
        return images

    def render(self) -> np.ndarray:
        """The RGB (uint8) image of the current view: all panels side by side."""
        return side_by_side(self.render_panels())

    def describe(self) -> str:
        """Where the view is: plane, slice and its position in mm."""
        plane = self.plane.value
        axis = PLANES[plane]
        n = n_slices(self.volume.shape, plane)
        idx = np.zeros((1, 3))
        idx[0, axis] = self.index
        mm = float(self.volume.index_to_physical(idx)[0, axis])
        return f"{plane} slice {self.index + 1} of {n} ({'zyx'[axis]} = {mm:.1f} mm)"

    def refresh(self) -> None:
        """Render the current view into the image widgets."""
        if self._busy:
            return
        for i, (im, rgb) in enumerate(zip(self.images, self.render_panels())):
            scale = max(1, int(round(self.display_px / rgb.shape[1])))
            if i == 0:
                self._scale = scale
            im.value = png_bytes(rgb, scale=scale)
        self.position.value = self.describe()

    # ----------------------------------------------------------------------- callbacks
    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """Set widget values without their observers refreshing on each (refresh once after)."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    def _on_plane(self, change) -> None:
        self._index[change["old"]] = self.index
        plane = change["new"]
        with (
            self._quiet()
        ):  # widen the range before moving the value into it, and the other way round
            self.slider.max = max(self.slider.max, n_slices(self.volume.shape, plane) - 1)
            self.slider.value = self._index[plane]
            self.slider.max = n_slices(self.volume.shape, plane) - 1
            if self.annotator is not None:
                self._fit_cursor()
        self.refresh()

    def _on_slice(self, change) -> None:
        self._index[self.plane.value] = int(change["new"])
        self.refresh()

    def _on_preset(self, change) -> None:
        if change["new"] in WINDOWS:
            level, width = WINDOWS[change["new"]]
            with self._quiet():
                self.level.value, self.width.value = int(level), int(width)
            self.refresh()

    def _on_change(self, change) -> None:
        if change["owner"] in (self.level, self.width) and not self._busy:
            if self.window != WINDOWS.get(self.preset.value):
                with self._quiet():
                    self.preset.value = "custom"
        self.refresh()

    # ----------------------------------------------------------------------- annotation
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def view(volume: CTVolume, labels=None, **kwargs) -> SliceViewer:
    """``SliceViewer(volume, labels, **kwargs)``: show it as the last line of a cell.

    Args:
        volume: the CT scan (HU).
        labels: None, a label map, a mapping title -> label map or a list (one panel each).
        kwargs: the other arguments of :class:`SliceViewer` (plane, preset, annotate, ...).

    Returns:
        the viewer, which a notebook displays.
    """
    return SliceViewer(volume, labels, **kwargs)
