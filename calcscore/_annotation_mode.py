"""The annotation mode of :class:`calcscore.widgets.SliceViewer` (its controls, cursor and
actions on a :class:`calcscore.annotate.Annotator`), kept apart so that the viewer's module stays
readable. Used only as the viewer's base class.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from calcscore.annotate import MASK_VALUE, TOOLS, Annotator, slice_to_voxel
from calcscore.errors import CalcscoreError
from calcscore.labels import CALCIUM_LABELS
from calcscore.viz import PLANES, _square_pixels, plane_slice, plane_spacing
from calcscore.volume import CTVolume, check_same_geometry

log = logging.getLogger("calcscore.widgets")

#: CSS classes of the viewer's parts (used by the browser test and by custom styling).
CSS = {
    "viewer": "calcscore-viewer",
    "slider": "calcscore-slice-slider",
    "plane": "calcscore-plane",
    "preset": "calcscore-preset",
    "threshold": "calcscore-threshold-toggle",
    "label": "calcscore-label-toggle",
    "image": "calcscore-image",
    "annotate": "calcscore-annotate",
    "tool": "calcscore-tool",
    "annot_label": "calcscore-annot-label",
    "radius": "calcscore-radius",
    "row": "calcscore-cursor-row",
    "col": "calcscore-cursor-col",
    "apply": "calcscore-apply",
    "undo": "calcscore-undo",
    "path": "calcscore-path",
    "save": "calcscore-save",
    "load": "calcscore-load",
    "message": "calcscore-message",
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
        raise TypeError(
            f"`annotate` must be True, False or an Annotator, got {type(annotate).__name__}"
        )
    name, first = next(iter(panels.items()))
    ann = Annotator(volume, first)
    if first is None:
        return ann, {"annotation": ann.labels}
    return ann, {name: ann.labels, **{k: v for k, v in panels.items() if k != name}}


def _pixel_maps(
    shape_rc: tuple[int, int], spacing_rc: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """For every displayed row and column of a slice stretched by
    :func:`calcscore.viz._square_pixels`, the slice row and column it shows."""
    rows = _square_pixels(np.arange(shape_rc[0])[:, None], spacing_rc)[:, 0]
    cols = _square_pixels(np.arange(shape_rc[1])[None, :], spacing_rc)[0, :]
    return rows, cols


def _mark(rgb: np.ndarray, hit: np.ndarray, colour, alpha: float) -> None:
    rgb[hit] = np.round((1 - alpha) * rgb[hit] + alpha * 255 * np.asarray(colour)).astype(np.uint8)


class AnnotationMode:
    """Annotation controls and actions of the slice viewer (see :class:`calcscore.widgets.SliceViewer`)."""

    if TYPE_CHECKING:  # what the viewer (the only subclass) provides
        volume: CTVolume
        plane: Any
        widget: Any
        annotator: Annotator | None
        alpha: float
        _scale: int

        @property
        def index(self) -> int: ...

        def refresh(self) -> None: ...

        def _on_change(self, change: Any) -> None: ...

        def _quiet(self) -> contextlib.AbstractContextManager[None]: ...

    def _build_annotation(self, widgets) -> None:
        """The annotation controls, in a box above the panels."""
        lay = widgets.Layout(width="auto")
        self.tool = widgets.ToggleButtons(options=list(TOOLS), value="grow", description="tool")
        self.annot_label = widgets.Dropdown(
            options=[lab.name for lab in CALCIUM_LABELS] + ["mask"],
            value="LAD",
            description="label",
            layout=widgets.Layout(width="180px"),
        )
        self.radius = widgets.BoundedFloatText(
            value=2.0,
            min=0.0,
            max=50.0,
            step=0.5,
            description="brush mm",
            layout=widgets.Layout(width="180px"),
        )
        rows, cols = self._slice_shape()
        self.cursor_row = widgets.BoundedIntText(
            value=rows // 2,
            min=0,
            max=rows - 1,
            description="row",
            layout=widgets.Layout(width="150px"),
        )
        self.cursor_col = widgets.BoundedIntText(
            value=cols // 2,
            min=0,
            max=cols - 1,
            description="col",
            layout=widgets.Layout(width="150px"),
        )
        self.apply_button = widgets.Button(description="apply at cursor", layout=lay)
        self.undo_button = widgets.Button(description="undo", layout=lay)
        self.path = widgets.Text(value="annotation.nii.gz", description="file")
        self.save_button = widgets.Button(description="save", layout=lay)
        self.load_button = widgets.Button(description="load", layout=lay)
        self.message = widgets.HTML()
        for key, w in [
            ("tool", self.tool),
            ("annot_label", self.annot_label),
            ("radius", self.radius),
            ("row", self.cursor_row),
            ("col", self.cursor_col),
            ("apply", self.apply_button),
            ("undo", self.undo_button),
            ("path", self.path),
            ("save", self.save_button),
            ("load", self.load_button),
            ("message", self.message),
        ]:
            w.add_class(CSS[key])
        for w in (self.cursor_row, self.cursor_col):
            w.observe(self._on_change, names="value")
        self.apply_button.on_click(lambda _: self.apply())
        self.undo_button.on_click(lambda _: self.undo())
        self.save_button.on_click(lambda _: self.save())
        self.load_button.on_click(lambda _: self.load())
        box = widgets.VBox(
            [
                widgets.HBox([self.tool, self.annot_label, self.radius]),
                widgets.HBox(
                    [self.cursor_row, self.cursor_col, self.apply_button, self.undo_button]
                ),
                widgets.HBox([self.path, self.save_button, self.load_button]),
                self.message,
            ]
        )
        box.add_class(CSS["annotate"])
        children = list(self.widget.children)
        self.widget.children = (*children[:-1], box, children[-1])

    @property
    def _editor(self) -> Annotator:
        """The annotator, or a clear error on a viewer made without ``annotate``."""
        if self.annotator is None:
            raise ValueError(
                "this viewer has no annotation mode; make it with SliceViewer(..., annotate=True)"
            )
        return self.annotator

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
        with self._quiet():
            self.cursor_row.value, self.cursor_col.value = int(row), int(col)
        self.refresh()

    def display_to_slice(self, row_px: int, col_px: int) -> tuple[int, int]:
        """The slice pixel (row, col) shown at pixel (``row_px``, ``col_px``) of the first
        panel's PNG as displayed (enlarged ``scale`` times, stretched to square pixels)."""
        spacing = plane_spacing(self.volume.spacing_mm, self.plane.value)
        rows, cols = _pixel_maps(self._slice_shape(), spacing)
        r, c = int(row_px) // self._scale, int(col_px) // self._scale
        if not (0 <= r < rows.size and 0 <= c < cols.size):
            raise ValueError(
                f"pixel ({row_px}, {col_px}) lies outside the displayed slice of "
                f"{rows.size * self._scale} x {cols.size * self._scale} pixels"
            )
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
        mask = plane_slice(self._editor.labels.array, plane, self.index) == MASK_VALUE
        if mask.any():
            _mark(rgb, mask[np.ix_(rows, cols)], MASK_COLOUR, self.alpha)
        row, col = self.cursor
        r_hit, c_hit = np.flatnonzero(rows == row), np.flatnonzero(cols == col)
        if not (r_hit.size and c_hit.size):
            return
        gap, arm = 2, 5
        cross = np.zeros(rgb.shape[:2], bool)
        r0, r1, c0, c1 = r_hit[0], r_hit[-1] + 1, c_hit[0], c_hit[-1] + 1
        cross[r0:r1, max(0, c0 - gap - arm) : max(0, c0 - gap)] = True
        cross[r0:r1, c1 + gap : c1 + gap + arm] = True
        cross[max(0, r0 - gap - arm) : max(0, r0 - gap), c0:c1] = True
        cross[r1 + gap : r1 + gap + arm, c0:c1] = True
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
                n = self._editor.grow(*self.cursor_voxel, label)
            elif tool == "paint":
                n = self._editor.paint(plane, index, row, col, self.radius.value, label)
            else:
                n = self._editor.erase(plane, index, row, col, self.radius.value)
        except ValueError as exc:
            self._say(str(exc), error=True)
            return 0
        what = f"{tool} {label}" if tool != "erase" else tool
        self._say(f"{what} at voxel (z, y, x) {self.cursor_voxel}: {n} voxels changed")
        self.refresh()
        return n

    def undo(self) -> int:
        """Take back the last change. Returns the voxels restored."""
        n = self._editor.undo()
        self._say(f"undo: {n} voxels restored" if n else "nothing to undo")
        self.refresh()
        return n

    def save(self, path: str | None = None) -> None:
        """Save the edited label map to ``path`` (the *file* box when None)."""
        target = self.path.value if path is None else str(path)
        try:
            out = self._editor.save(target)
        except (CalcscoreError, ValueError, OSError) as exc:
            self._say(f"could not save: {exc}", error=True)
            return
        self._say(f"saved {out}")

    def load(self, path: str | None = None) -> int:
        """Load a label map from ``path`` (the *file* box when None); one on another grid is
        refused with the reason in the message line. Returns the voxels changed."""
        target = self.path.value if path is None else str(path)
        try:
            n = self._editor.load(target)
        except (CalcscoreError, ValueError, OSError) as exc:
            self._say(f"could not load: {exc}", error=True)
            return 0
        self._say(f"loaded {target}: {n} voxels changed")
        self.refresh()
        return n
