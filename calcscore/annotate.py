"""Manual annotation of calcium, as users of Slicer's CACSLabeler expect (issue 26, step 4).

:class:`Annotator` holds a label map on the grid of a scan and edits it in place:

* :meth:`Annotator.grow` labels a lesion from one clicked voxel: the 3D 26-connected component
  of voxels >= 130 HU that holds it (the region growing of the paper's section V.H, the
  component labelling of :func:`calcscore.lesions.label_lesions`);
* :meth:`Annotator.paint` and :meth:`Annotator.erase` set or clear a disk of a given radius in mm
  on one slice, with a calcium label or :data:`MASK_VALUE` (region masks for training, e.g.
  "outside the heart and the great vessels");
* :meth:`Annotator.undo` takes back the last changes, several levels deep;
* :meth:`Annotator.save` and :meth:`Annotator.load` write and read the label map with the
  scan's spacing, origin and direction.

Slice coordinates (``plane``, ``index``, ``row``, ``col``) are those of
:func:`calcscore.viz.plane_slice`: the slice as displayed, before the square-pixel stretch.
The class knows nothing about widgets; :class:`calcscore.widgets.SliceViewer` drives it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from calcscore.labels import CALCIUM_LABELS, IGNORE, Label
from calcscore.lesions import label_lesions
from calcscore.scoring import CALCIUM_THRESHOLD_HU
from calcscore.viz import PLANES, plane_spacing
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

__all__ = ["Annotator", "MASK_VALUE", "TOOLS", "label_value", "slice_to_voxel"]

log = logging.getLogger(__name__)

#: The value painted for region masks: :data:`calcscore.labels.IGNORE`, so that a painted mask
#: is the "not annotated" region of a real negative (calcscore.negatives.real_negative_labels).
MASK_VALUE = IGNORE
#: The tools of the annotation mode.
TOOLS = ("grow", "paint", "erase")


def label_value(label: Label | int | str) -> int:
    """The voxel value of a calcium label (``Label``, 1-6 or a name such as "LAD") or of the
    region mask (``"mask"`` or :data:`MASK_VALUE`)."""
    if isinstance(label, str):
        if label.strip().lower() == "mask":
            return MASK_VALUE
        return int(Label.from_name(label))
    value = int(label)
    if value != MASK_VALUE and value not in {int(lab) for lab in CALCIUM_LABELS}:
        names = ", ".join(lab.name for lab in CALCIUM_LABELS)
        raise ValueError(
            f"`label` must be a calcium label ({names}) or 'mask' ({MASK_VALUE}), got {label!r}"
        )
    return value


def slice_to_voxel(shape: tuple[int, int, int], plane: str, index: int, row, col):
    """Voxel indices (z, y, x) of pixel(s) (``row``, ``col``) of slice ``index`` in ``plane``
    as :func:`calcscore.viz.plane_slice` shows it (coronal and sagittal rows run head first).

    Args:
        shape: the (z, y, x) shape of the volume.
        plane: "axial", "coronal" or "sagittal".
        index: the slice along the plane's axis.
        row, col: ints or integer arrays in the slice.

    Returns:
        (z, y, x), ints or arrays like ``row``.
    """
    if plane not in PLANES:
        raise ValueError(f"`plane` must be one of {', '.join(PLANES)}, got {plane=}")
    nz = shape[0]
    if plane == "axial":
        return index, row, col
    if plane == "coronal":
        return nz - 1 - row, index, col
    return nz - 1 - row, col, index


@dataclass(frozen=True)
class _Change:
    """One undoable edit: the flat indices it changed and their values before."""

    what: str
    flat: np.ndarray
    before: np.ndarray


class Annotator:
    """An editable label map on the grid of ``volume``, with undo.

    Parameters
    ----------
    volume : the CT scan (HU).
    labels : the label map to start from (copied; it must share the scan's grid), or None for
        an empty one.
    threshold_hu : the calcium threshold of :meth:`grow` (130 HU).
    connectivity : 6, 18 or 26, the neighbourhood of :meth:`grow` (26 in the paper).
    max_undo : how many changes :meth:`undo` can take back.
    """

    def __init__(
        self,
        volume: CTVolume,
        labels: LabelVolume | None = None,
        *,
        threshold_hu: float = CALCIUM_THRESHOLD_HU,
        connectivity: int = 26,
        max_undo: int = 50,
    ):
        if labels is not None:
            check_same_geometry(volume, labels, names=("scan", "label map"))
        self.volume = volume
        self.threshold_hu = float(threshold_hu)
        self.connectivity = int(connectivity)
        self._array = (
            np.zeros(volume.shape, np.uint8)
            if labels is None
            else np.array(labels.array, np.uint8, copy=True)
        )
        self._history: deque[_Change] = deque(maxlen=int(max_undo))
        # lazily, once (the HU never change): the component map and each component's box
        self._components: np.ndarray | None = None
        self._boxes: list[tuple[slice, slice, slice] | None] = []

    # ----------------------------------------------------------------------- state
    @property
    def labels(self) -> LabelVolume:
        """The current label map on the scan's grid (a read-only view that follows the edits)."""
        view = self._array.view()
        view.flags.writeable = False
        return LabelVolume.like(self.volume, view)

    @property
    def n_undo(self) -> int:
        """How many changes :meth:`undo` can take back now."""
        return len(self._history)

    def count(self, label: Label | int | str) -> int:
        """Voxels carrying ``label``."""
        return int(np.count_nonzero(self._array == label_value(label)))

    # ----------------------------------------------------------------------- edits
    def _apply(self, what: str, flat: np.ndarray, value) -> int:
        """Set the voxels ``flat`` (flat indices) to ``value`` (scalar or array), remember
        what they held, and return how many changed."""
        arr = self._array.reshape(-1)
        before = arr[flat]
        changed = before != value
        n = int(np.count_nonzero(changed))
        if n:
            new = value if np.ndim(value) == 0 else np.asarray(value)[changed]
            self._history.append(_Change(what, flat[changed], before[changed]))
            arr[flat[changed]] = new
        log.debug("%s: %d voxels changed", what, n)
        return n

    def _component(self, zyx: tuple[int, int, int]) -> np.ndarray:
        """Flat indices of the component >= ``threshold_hu`` that holds voxel ``zyx``."""
        if self._components is None:
            above = self.volume.hu >= self.threshold_hu
            self._components, n = label_lesions(above, connectivity=self.connectivity)
            self._boxes = ndimage.find_objects(self._components)
            log.debug("%d components >= %g HU", n, self.threshold_hu)
        c = int(self._components[zyx])
        box = self._boxes[c - 1]
        assert box is not None  # component c exists: it holds zyx
        local = np.nonzero(self._components[box] == c)
        return np.asarray(
            np.ravel_multi_index(tuple(i + s.start for i, s in zip(local, box)), self.volume.shape)
        )

    def grow(self, z: int, y: int, x: int, label: Label | int | str) -> int:
        """Label the lesion at voxel (``z``, ``y``, ``x``): every voxel of its
        ``connectivity``-connected component >= ``threshold_hu`` gets ``label`` (what it held
        before is overwritten).

        Args:
            z, y, x: voxel indices in the scan's (z, y, x) order.
            label: a :class:`Label`, its value (1-6), its name, or "mask".

        Returns:
            the number of voxels that changed.

        Raises ValueError when the voxel lies outside the scan or below the threshold.
        """
        value = label_value(label)
        zyx = (int(z), int(y), int(x))
        if not all(0 <= v < n for v, n in zip(zyx, self.volume.shape)):
            raise ValueError(
                f"voxel (z, y, x) = {zyx} lies outside the scan of shape {self.volume.shape}"
            )
        hu = float(self.volume.hu[zyx])
        if hu < self.threshold_hu:
            raise ValueError(
                f"voxel (z, y, x) = {zyx} has {hu:.0f} HU, below the calcium threshold of "
                f"{self.threshold_hu:g} HU: nothing to grow (click a bright voxel, or paint)"
            )
        return self._apply(f"grow {zyx}", self._component(zyx), value)

    def _disk(self, plane: str, index: int, row: int, col: int, radius_mm: float) -> np.ndarray:
        """Flat indices of the voxels of slice ``index`` within ``radius_mm`` of (row, col)."""
        if radius_mm < 0:
            raise ValueError(f"`radius_mm` must be >= 0, got {radius_mm=}")
        axis = PLANES[plane] if plane in PLANES else None
        if axis is None:
            raise ValueError(f"`plane` must be one of {', '.join(PLANES)}, got {plane=}")
        shape = self.volume.shape
        if not 0 <= index < shape[axis]:
            raise ValueError(
                f"`index` must lie in 0..{shape[axis] - 1} for the {plane} plane, got {index=}"
            )
        n_rows, n_cols = (s for a, s in enumerate(shape) if a != axis)
        sr, sc = plane_spacing(self.volume.spacing_mm, plane)
        dr, dc = int(radius_mm // sr), int(radius_mm // sc)
        rows = np.arange(max(0, row - dr), min(n_rows, row + dr + 1))
        cols = np.arange(max(0, col - dc), min(n_cols, col + dc + 1))
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        inside = ((rr - row) * sr) ** 2 + ((cc - col) * sc) ** 2 <= radius_mm**2 + 1e-9
        zyx = slice_to_voxel(shape, plane, index, rr[inside], cc[inside])
        return np.ravel_multi_index(tuple(np.broadcast_arrays(*zyx)), shape)

    def paint(
        self, plane: str, index: int, row: int, col: int, radius_mm: float, label: Label | int | str
    ) -> int:
        """Set a disk of ``radius_mm`` around pixel (``row``, ``col``) of slice ``index`` in
        ``plane`` (coordinates of :func:`calcscore.viz.plane_slice`) to ``label``: a calcium
        label or ``"mask"``.

        Args:
            plane: "axial", "coronal" or "sagittal".
            index: the slice.
            row, col: the centre of the disk in the slice; it may lie near or on the border.
            radius_mm: the radius in mm; voxels whose centre is at most this far are painted.
            label: a :class:`Label`, its name, or "mask".

        Returns:
            the number of voxels that changed.
        """
        value = label_value(label)
        flat = self._disk(plane, index, row, col, float(radius_mm))
        return self._apply(f"paint {label}", flat, value)

    def erase(
        self,
        plane: str,
        index: int,
        row: int,
        col: int,
        radius_mm: float,
        *,
        label: Label | int | str | None = None,
    ) -> int:
        """Clear a disk like :meth:`paint` does: every value, or only ``label`` when given.

        Args:
            plane, index, row, col, radius_mm: the disk, as for :meth:`paint`.
            label: clear only voxels holding this label (a :class:`Label`, its name or "mask");
                None clears every value in the disk.

        Returns:
            the number of voxels that changed.
        """
        flat = self._disk(plane, index, row, col, float(radius_mm))
        if label is not None:
            flat = flat[self._array.reshape(-1)[flat] == label_value(label)]
        return self._apply("erase", flat, 0)

    def undo(self) -> int:
        """Take back the last change. Returns the number of voxels restored (0 when there is
        nothing left to undo)."""
        if not self._history:
            log.info("nothing to undo")
            return 0
        change = self._history.pop()
        self._array.reshape(-1)[change.flat] = change.before
        log.debug("undid %s: %d voxels", change.what, change.flat.size)
        return int(change.flat.size)

    # ----------------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the label map with the scan's spacing, origin and direction (NIfTI, MHA or
        NRRD, by the suffix of ``path``). Returns the path."""
        from calcscore.io import write_labels

        out = write_labels(LabelVolume.like(self.volume, self._array.copy()), path)
        log.info("saved the annotation to %s", out)
        return out

    def load(self, path: str | Path) -> int:
        """Replace the label map by the one in ``path`` (an undoable change).

        A map of the same voxels saved in another layout (RAS NIfTI) is turned onto the scan's
        grid (:func:`calcscore.orientation.onto_layout`). Raises
        :class:`calcscore.volume.GeometryMismatchError` when the file's grid differs from the
        scan's. Returns the number of voxels that changed.
        """
        from calcscore.io import read_labels
        from calcscore.orientation import onto_layout

        loaded = onto_layout(read_labels(path), self.volume)
        check_same_geometry(self.volume, loaded, names=("scan", f"label map {path}"))
        new = loaded.array.reshape(-1)
        flat = np.flatnonzero(self._array.reshape(-1) != new)
        return self._apply(f"load {path}", flat, new[flat])
