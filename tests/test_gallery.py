"""calcscore.figures.lesion_gallery: one close-up per lesion, largest first."""

from __future__ import annotations

import numpy as np

from calcscore.figures import lesion_gallery
from calcscore.labels import Label
from calcscore.volume import CTVolume, LabelVolume


def test_one_panel_per_lesion_largest_first_with_its_label_and_volume():
    hu = np.full((10, 80, 80), 40.0, np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    lab[4:6, 10:14, 10:14] = Label.LAD  # 32 voxels of 0.5 mm3 = 16 mm3
    lab[2, 60:62, 60:62] = Label.TAC  # 4 voxels = 2 mm3
    lab[7:9, 40:43, 20:23] = Label.RCA  # 18 voxels = 9 mm3
    volume = CTVolume(hu, (2.0, 0.5, 0.5))
    fig = lesion_gallery(volume, LabelVolume.like(volume, lab), ncols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert [t.split(" ")[0] for t in titles] == ["LAD", "RCA", "TAC"]
    assert titles[0].startswith("LAD 16 mm³") and "slice 4" in titles[0]
    assert titles[1].startswith("RCA 9 mm³")
