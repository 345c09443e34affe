"""The result of a segmentation (:func:`calcscore.inference.segment`), and the labels it gives
at other thresholds without running the networks again."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calcscore.bundle import threshold_table
from calcscore.candidates import _to_original_grid
from calcscore.constants import CALCIUM_THRESHOLD_HU
from calcscore.orientation import Orientation
from calcscore.postprocess import finish_labels
from calcscore.regions import ChestRegions, apply_safety_net
from calcscore.volume import CTVolume, LabelVolume


@dataclass
class Segmentation:
    """The result of :func:`calcscore.inference.segment`: labels on the scan's own grid and, in
    the standard layout (:mod:`calcscore.orientation`), on the network grid.

    A scan stored in another layout was segmented in the standard one: :attr:`labels` are on the
    scan's own grid; :attr:`labels_network`, :attr:`cnn2_zyx`, :attr:`candidates_network` and
    :attr:`regions` are of the standard layout, and :attr:`orientation` takes one to the other.
    """

    labels: LabelVolume
    labels_network: LabelVolume
    cnn1_labels_network: LabelVolume
    n_candidates: int
    seconds: dict[str, float]
    #: network-grid (z, y, x) of the voxels CNN2 scored (CNN1's calcium) and CNN2's calcium
    #: probability at each (empty without CNN2)
    cnn2_zyx: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int32))
    cnn2_proba: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    #: the network-grid candidates (what the networks saw) and the HU an unseen rim voxel
    #: needs to be filled (None: no rim fill), see :func:`calcscore.rim.fill_rim`
    candidates_network: np.ndarray | None = None
    rim_min_hu: float | None = None
    #: the anatomical regions of the safety net (None: the net was off) and the voxels it removed
    #: per label name from :attr:`labels`
    regions: ChestRegions | None = None
    safety_net_removed: dict[str, int] = field(default_factory=dict)
    #: the lesion fill's share (None: off) and its lesions' HU, see :mod:`calcscore.lesion_fill`
    lesion_fill: float | None = None
    lesion_fill_hu: float = CALCIUM_THRESHOLD_HU
    artery_vote: bool = False  #: step 10 ran (see :class:`calcscore.inference.InferenceOptions`)
    #: how the scan's layout becomes the standard one (identity for most scans)
    orientation: Orientation = field(default_factory=Orientation)

    def _back(
        self, labels_net: LabelVolume, volume: CTVolume, keep_below_threshold: bool
    ) -> LabelVolume:
        return _to_original_grid(
            labels_net, volume, keep_below_threshold, self.candidates_network, self.rim_min_hu
        )

    def cnn1_labels(self, volume: CTVolume, *, keep_below_threshold: bool = False) -> LabelVolume:
        """CNN1's labels before false-positive reduction, on the grid of ``volume`` (the scan
        that was segmented), e.g. to measure what CNN2 removes."""
        std = self.orientation.apply(volume)
        out = self._back(self.cnn1_labels_network, std, keep_below_threshold)
        return self.orientation.undo(out, volume)

    def labels_at(
        self,
        volume: CTVolume,
        thresholds: float | dict[str, float] | None,
        *,
        keep_below_threshold: bool = False,
        rim_fill: bool = True,
        safety_net: bool = True,
    ) -> LabelVolume:
        """The labels CNN2 would have kept with other thresholds, on the grid of ``volume``,
        without running the networks again.

        Args:
            volume: the scan that was segmented.
            thresholds: CNN2's calcium probability a voxel needs: one for all labels, one per
                label group (``{"CAC": 0.4, ...}``), or None for the paper's 0.5.
            keep_below_threshold: keep labels on original voxels < 130 HU.
            rim_fill: fill the unseen rim as :func:`calcscore.inference.segment` does (False:
                the paper's nearest-neighbour mapping).
            safety_net: apply the safety net (where :func:`calcscore.inference.segment` ran it).

        Returns:
            the labels on the grid of ``volume``.
        """
        source, volume = volume, self.orientation.apply(volume)
        table = threshold_table(thresholds).numpy()
        lab = self.cnn1_labels_network.labels.copy()
        if len(self.cnn2_zyx):
            idx = tuple(self.cnn2_zyx.T)
            drop = self.cnn2_proba < table[lab[idx]]
            lab[tuple(self.cnn2_zyx[drop].T)] = 0
        back = LabelVolume.like(self.cnn1_labels_network, lab)
        out = (
            _to_original_grid(back, volume, keep_below_threshold)
            if not rim_fill
            else self._back(back, volume, keep_below_threshold)
        )
        regions = self.regions if safety_net else None
        if regions is not None:
            out = LabelVolume.like(out, apply_safety_net(out.labels, regions)[0])
        filled = finish_labels(
            out.labels, volume.hu, self.lesion_fill, self.lesion_fill_hu, regions, self.artery_vote
        )
        return self.orientation.undo(LabelVolume.like(out, filled), source)
