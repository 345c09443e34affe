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

import html
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from calcscore.annotate import MASK_VALUE, TOOLS, Annotator, slice_to_voxel
from calcscore.errors import CalcscoreError, optional_import
from calcscore.labels import CALCIUM_LABELS, COLOURS, Label
from calcscore.scoring import CALCIUM_THRESHOLD_HU
from calcscore.viz import (
    PLANES,
    THRESHOLD_COLOUR,
    WINDOWS,
    _square_pixels,
    default_index,
    n_slices,
    plane_slice,
    plane_spacing,
    png_bytes,
    render_slice,
    side_by_side,
)
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

__all__ = ["SliceViewer", "view"]

log = logging.getLogger(__name__)

#: CSS classes of the viewer's parts (used by the browser test and by custom styling).
CSS = {
    "viewer": "calcscore-viewer", "slider": "calcscore-slice-slider", "plane": "calcscore-plane",
    "preset": "calcscore-preset", "threshold": "calcscore-threshold-toggle",
    "label": "calcscore-label-toggle", "image": "calcscore-image",
    "annotate": "calcscore-annotate", "tool": "calcscore-tool", "annot_label": "calcscore-annot-label",
    "radius": "calcscore-radius", "row": "calcscore-cursor-row", "col": "calcscore-cursor-col",
    "apply": "calcscore-apply", "undo": "calcscore-undo", "path": "calcscore-path",
    "save": "calcscore-save", "load": "calcscore-load", "message": "calcscore-message",
}
#: Colour of region-mask voxels (:data:`calcscore.annotate.MASK_VALUE`) and of the cursor.
MASK_COLOUR: tuple[float, float, float] = (1.0, 0.45, 0.75)
CURSOR_COLOUR: tuple[float, float, float] = (1.0, 1.0, 1.0)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _with_annotator(volume: CTVolume, panels: dict, annotate) -> tuple[Annotator | None, dict]:
    """The annotator of ``annotate`` (False, True or an :class:`Annotator`) and the panels with
    its live label map first: True edits a copy of the first label map (or an empty one)."""
    if annotate is False or annotate is None:
        return None, panels
    if isinstance(annotate, Annotator):
        check_same_geometry(volume, annotate.volume, names=("volume", "the annotator's scan"))
        rest = {k: v for k, v in panels.items() if v is not None and k != "annotation"}
        return annotate, {"annotation": annotate.labels, **rest}
    if annotate is not True:
        raise TypeError(f"`annotate` must be True, False or an Annotator, got {type(annotate).__name__}")
    name, first = next(iter(panels.items()))
    ann = Annotator(volume, first)
    if first is None:
        return ann, {"annotation": ann.labels}
    return ann, {name: ann.labels, **{k: v for k, v in panels.items() if k != name}}


def _pixel_maps(shape_rc: tuple[int, int], spacing_rc: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """For every displayed row and column of a slice stretched by
    :func:`calcscore.viz._square_pixels`, the slice row and column it shows."""
    rows = _square_pixels(np.arange(shape_rc[0])[:, None], spacing_rc)[:, 0]
    cols = _square_pixels(np.arange(shape_rc[1])[None, :], spacing_rc)[0, :]
    return rows, cols


def _mark(rgb: np.ndarray, hit: np.ndarray, colour, alpha: float) -> None:
    rgb[hit] = np.round((1 - alpha) * rgb[hit] + alpha * 255 * np.asarray(colour)).astype(np.uint8)


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
        raise TypeError(f"`labels` must be a LabelVolume, a mapping name -> LabelVolume or a list, "
                        f"got {type(labels).__name__}")
    if not panels:
        return {"": None}
    return panels


class SliceViewer:
    """Scroll through ``volume`` with one panel per label map.

    Parameters
    ----------
    volume : the CT scan (HU).
    labels : None (the CT alone), a :class:`LabelVolume`, a mapping title -> label map (one
        panel each, side by side, e.g. ``{"reference": ref, "prediction": pred}``) or a list.
        Every label map must share the grid of ``volume``.
    plane : "axial", "coronal" or "sagittal" at the start.
    preset : a name of :data:`calcscore.viz.WINDOWS` or a (level, width) pair in HU.
    threshold_hu : the calcium threshold of the overlay (130 HU).
    show_threshold : start with the >= ``threshold_hu`` overlay on.
    alpha : opacity of the label colours.
    display_px : the panels are enlarged by whole pixels to about this width on screen.
    annotate : True to edit (a copy of) the first label map with the annotation tools, or an
        :class:`calcscore.annotate.Annotator` whose label map becomes the first panel.
    """

    def __init__(self, volume: CTVolume, labels=None, *, plane: str = "axial",
                 preset: str | tuple[float, float] = "mediastinum",
                 threshold_hu: float = CALCIUM_THRESHOLD_HU, show_threshold: bool = False,
                 alpha: float = 0.7, display_px: int = 384, annotate: bool | Annotator = False):
        widgets = optional_import("ipywidgets", "the interactive slice viewer", "notebooks")
        if plane not in PLANES:
            raise ValueError(f"`plane` must be one of {', '.join(PLANES)}, got {plane=}")
        self.volume = volume
        self.panels = _as_panels(labels)
        for name, lv in self.panels.items():
            if lv is not None:
                check_same_geometry(volume, lv, names=("volume", f"label map {name!r}"))
        self.annotator, self.panels = _with_annotator(volume, self.panels, annotate)
        self.threshold_hu = float(threshold_hu)
        self.alpha = float(alpha)
        self.display_px = int(display_px)
        first = next((lv for lv in self.panels.values() if lv is not None), None)
        # the slice shown in each plane, kept when switching planes
        self._index = {p: default_index(volume.shape, p, first) for p in PLANES}
        level, width = WINDOWS[preset] if isinstance(preset, str) else preset
        self._busy = False

        self.plane = widgets.ToggleButtons(options=list(PLANES), value=plane, description="plane")
        self.slider = widgets.IntSlider(value=self._index[plane], min=0,
                                        max=n_slices(volume.shape, plane) - 1, description="slice",
                                        continuous_update=False, layout=widgets.Layout(width="420px"))
        self.preset = widgets.Dropdown(options=[*WINDOWS, "custom"],
                                       value=preset if isinstance(preset, str) else "custom",
                                       description="window")
        self.level = widgets.IntSlider(value=int(level), min=-1200, max=3000, step=10,
                                       description="level", continuous_update=False)
        self.width = widgets.IntSlider(value=int(width), min=1, max=4000, step=10,
                                       description="width", continuous_update=False)
        self.threshold = widgets.Checkbox(value=bool(show_threshold), indent=False,
                                          description=f"≥ {self.threshold_hu:g} HU",
                                          style={"background": _hex(THRESHOLD_COLOUR)},
                                          layout=widgets.Layout(width="auto", margin="0 12px 0 0"))
        self.label_toggles: dict[Label, object] = {
            lab: widgets.Checkbox(value=True, indent=False, description=lab.name,
                                  style={"background": _hex(COLOURS[lab])},
                                  layout=widgets.Layout(width="auto"))
            for lab in CALCIUM_LABELS
        }
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

        panels = [widgets.VBox([widgets.HTML(f"<b>{name}</b>"), im])
                  for name, im in zip(self.panels, self.images)]
        toggles = widgets.HBox([self.threshold, *self.label_toggles.values()],
                               layout=widgets.Layout(flex_flow="row wrap"))
        self.widget = widgets.VBox([
            widgets.HBox([self.plane, self.preset]),
            widgets.HBox([self.slider, self.position]),
            widgets.HBox([self.level, self.width]),
            toggles,
            widgets.HBox(panels),
        ])
        self.widget.add_class(CSS["viewer"])
        self._scale = 1
        if self.annotator is not None:
            self._build_annotation(widgets)
        self.refresh()

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
        self._busy = True
        try:
            self.preset.value = "custom"
            self.level.value, self.width.value = int(level), int(width)
        finally:
            self._busy = False
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
        images = [render_slice(self.volume, lv, plane=plane, index=self.index, preset=self.window,
                               visible=self.visible, threshold_hu=thr, alpha=self.alpha)
                  for lv in self.panels.values()]
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
    def _on_plane(self, change) -> None:
        self._index[change["old"]] = self.index
        plane = change["new"]
        self._busy = True
        try:  # widen the range before moving the value into it, and the other way round
            self.slider.max = max(self.slider.max, n_slices(self.volume.shape, plane) - 1)
            self.slider.value = self._index[plane]
            self.slider.max = n_slices(self.volume.shape, plane) - 1
            if self.annotator is not None:
                self._fit_cursor()
        finally:
            self._busy = False
        self.refresh()

    def _on_slice(self, change) -> None:
        self._index[self.plane.value] = int(change["new"])
        self.refresh()

    def _on_preset(self, change) -> None:
        if change["new"] in WINDOWS:
            level, width = WINDOWS[change["new"]]
            self._busy = True
            try:
                self.level.value, self.width.value = int(level), int(width)
            finally:
                self._busy = False
            self.refresh()

    def _on_change(self, change) -> None:
        if change["owner"] in (self.level, self.width) and not self._busy:
            if self.window != WINDOWS.get(self.preset.value):
                self._busy = True
                try:
                    self.preset.value = "custom"
                finally:
                    self._busy = False
        self.refresh()

    # ----------------------------------------------------------------------- annotation
    def _build_annotation(self, widgets) -> None:
        """The annotation controls, in a box above the panels."""
        lay = widgets.Layout(width="auto")
        self.tool = widgets.ToggleButtons(options=list(TOOLS), value="grow", description="tool")
        self.annot_label = widgets.Dropdown(options=[lab.name for lab in CALCIUM_LABELS] + ["mask"],
                                            value="LAD", description="label", layout=widgets.Layout(width="180px"))
        self.radius = widgets.BoundedFloatText(value=2.0, min=0.0, max=50.0, step=0.5,
                                               description="brush mm", layout=widgets.Layout(width="180px"))
        rows, cols = self._slice_shape()
        self.cursor_row = widgets.BoundedIntText(value=rows // 2, min=0, max=rows - 1, description="row",
                                                 layout=widgets.Layout(width="150px"))
        self.cursor_col = widgets.BoundedIntText(value=cols // 2, min=0, max=cols - 1, description="col",
                                                 layout=widgets.Layout(width="150px"))
        self.apply_button = widgets.Button(description="apply at cursor", layout=lay)
        self.undo_button = widgets.Button(description="undo", layout=lay)
        self.path = widgets.Text(value="annotation.nii.gz", description="file")
        self.save_button = widgets.Button(description="save", layout=lay)
        self.load_button = widgets.Button(description="load", layout=lay)
        self.message = widgets.HTML()
        for key, w in [("tool", self.tool), ("annot_label", self.annot_label), ("radius", self.radius),
                       ("row", self.cursor_row), ("col", self.cursor_col), ("apply", self.apply_button),
                       ("undo", self.undo_button), ("path", self.path), ("save", self.save_button),
                       ("load", self.load_button), ("message", self.message)]:
            w.add_class(CSS[key])
        for w in (self.cursor_row, self.cursor_col):
            w.observe(self._on_change, names="value")
        self.apply_button.on_click(lambda _: self.apply())
        self.undo_button.on_click(lambda _: self.undo())
        self.save_button.on_click(lambda _: self.save())
        self.load_button.on_click(lambda _: self.load())
        box = widgets.VBox([
            widgets.HBox([self.tool, self.annot_label, self.radius]),
            widgets.HBox([self.cursor_row, self.cursor_col, self.apply_button, self.undo_button]),
            widgets.HBox([self.path, self.save_button, self.load_button]),
            self.message,
        ])
        box.add_class(CSS["annotate"])
        children = list(self.widget.children)
        self.widget.children = (*children[:-1], box, children[-1])

    def _slice_shape(self) -> tuple[int, int]:
        axis = PLANES[self.plane.value]
        rows, cols = (n for a, n in enumerate(self.volume.shape) if a != axis)
        return int(rows), int(cols)

    def _fit_cursor(self) -> None:
        """Bound the cursor boxes by the current plane's slice (keeping it inside)."""
        rows, cols = self._slice_shape()
        for box, n in ((self.cursor_row, rows), (self.cursor_col, cols)):
            box.max = max(box.max, n - 1)
            box.value = min(box.value, n - 1)
            box.max = n - 1

    @property
    def cursor(self) -> tuple[int, int]:
        """(row, column) of the cursor in the current slice (:func:`calcscore.viz.plane_slice`)."""
        return int(self.cursor_row.value), int(self.cursor_col.value)

    @property
    def cursor_voxel(self) -> tuple[int, int, int]:
        """The voxel (z, y, x) under the cursor."""
        z, y, x = slice_to_voxel(self.volume.shape, self.plane.value, self.index, *self.cursor)
        return int(z), int(y), int(x)

    def set_cursor(self, row: int, col: int) -> None:
        """Move the cursor to pixel (``row``, ``col``) of the current slice."""
        self._busy = True
        try:
            self.cursor_row.value, self.cursor_col.value = int(row), int(col)
        finally:
            self._busy = False
        self.refresh()

    def display_to_slice(self, row_px: int, col_px: int) -> tuple[int, int]:
        """The slice pixel (row, col) shown at pixel (``row_px``, ``col_px``) of the first
        panel's PNG as displayed (enlarged ``scale`` times, stretched to square pixels)."""
        spacing = plane_spacing(self.volume.spacing_mm, self.plane.value)
        rows, cols = _pixel_maps(self._slice_shape(), spacing)
        r, c = int(row_px) // self._scale, int(col_px) // self._scale
        if not (0 <= r < rows.size and 0 <= c < cols.size):
            raise ValueError(f"pixel ({row_px}, {col_px}) lies outside the displayed slice of "
                             f"{rows.size * self._scale} x {cols.size * self._scale} pixels")
        return int(rows[r]), int(cols[c])

    def click(self, row_px: int, col_px: int) -> int:
        """A click at pixel (``row_px``, ``col_px``) of the first panel's image: move the
        cursor there and apply the current tool. Returns the voxels changed."""
        self.set_cursor(*self.display_to_slice(row_px, col_px))
        return self.apply()

    def _draw_annotation(self, rgb: np.ndarray) -> None:
        """Region-mask voxels and the cursor (a cross around its pixel) onto the first panel."""
        plane = self.plane.value
        spacing = plane_spacing(self.volume.spacing_mm, plane)
        rows, cols = _pixel_maps(self._slice_shape(), spacing)
        mask = plane_slice(self.annotator.labels.array, plane, self.index) == MASK_VALUE
        if mask.any():
            _mark(rgb, mask[np.ix_(rows, cols)], MASK_COLOUR, self.alpha)
        row, col = self.cursor
        r_hit, c_hit = np.flatnonzero(rows == row), np.flatnonzero(cols == col)
        if not (r_hit.size and c_hit.size):
            return
        gap, arm = 2, 5
        cross = np.zeros(rgb.shape[:2], bool)
        r0, r1, c0, c1 = r_hit[0], r_hit[-1] + 1, c_hit[0], c_hit[-1] + 1
        cross[r0:r1, max(0, c0 - gap - arm):max(0, c0 - gap)] = True
        cross[r0:r1, c1 + gap:c1 + gap + arm] = True
        cross[max(0, r0 - gap - arm):max(0, r0 - gap), c0:c1] = True
        cross[r1 + gap:r1 + gap + arm, c0:c1] = True
        _mark(rgb, cross, CURSOR_COLOUR, 1.0)

    def _say(self, text: str, *, error: bool = False) -> None:
        colour = "#b00020" if error else "#1b5e20"
        self.message.value = f'<span style="color: {colour}">{html.escape(text)}</span>'
        (log.warning if error else log.info)("%s", text)

    def apply(self) -> int:
        """Apply the current tool at the cursor: grow the lesion under it, or paint or erase a
        disk of the brush radius. Returns the voxels changed (0 after an error, which is shown
        in the message line)."""
        tool, label = self.tool.value, self.annot_label.value
        plane, index, (row, col) = self.plane.value, self.index, self.cursor
        try:
            if tool == "grow":
                n = self.annotator.grow(*self.cursor_voxel, label)
            elif tool == "paint":
                n = self.annotator.paint(plane, index, row, col, self.radius.value, label)
            else:
                n = self.annotator.erase(plane, index, row, col, self.radius.value)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return 0
        what = f"{tool} {label}" if tool != "erase" else tool
        self._say(f"{what} at voxel (z, y, x) {self.cursor_voxel}: {n} voxels changed")
        self.refresh()
        return n

    def undo(self) -> int:
        """Take back the last change. Returns the voxels restored."""
        n = self.annotator.undo()
        self._say(f"undo: {n} voxels restored" if n else "nothing to undo")
        self.refresh()
        return n

    def save(self, path: str | None = None) -> None:
        """Save the edited label map to ``path`` (the *file* box when None)."""
        target = self.path.value if path is None else str(path)
        try:
            out = self.annotator.save(target)
        except (CalcscoreError, ValueError, OSError) as exc:
            self._say(f"could not save: {exc}", error=True)
            return
        self._say(f"saved {out}")

    def load(self, path: str | None = None) -> int:
        """Load a label map from ``path`` (the *file* box when None); one on another grid is
        refused with the reason in the message line. Returns the voxels changed."""
        target = self.path.value if path is None else str(path)
        try:
            n = self.annotator.load(target)
        except (CalcscoreError, ValueError, OSError) as exc:
            self._say(f"could not load: {exc}", error=True)
            return 0
        self._say(f"loaded {target}: {n} voxels changed")
        self.refresh()
        return n

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def view(volume: CTVolume, labels=None, **kwargs) -> SliceViewer:
    """``SliceViewer(volume, labels, **kwargs)``: show it as the last line of a cell."""
    return SliceViewer(volume, labels, **kwargs)
