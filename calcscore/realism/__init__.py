"""The realism report: a phantom and a real chest CT measured the same way, side by side.

The networks learn from phantoms; where a phantom's anatomy differs from a real chest, a model
trained on it puts calcium labels on what it never saw (ribs, costal cartilage, the shoulder
girdle). This package measures one scan from the scan alone, with no phantom ground truth, so
that a phantom and a real scan are measured alike (:func:`measure_scan`):

- the HU histogram and its statistics per tissue class (lung, fat, soft tissue, heart, bone);
- noise SD and texture (noise power spectrum peak, autocorrelation length) in homogeneous
  soft tissue (:mod:`calcscore.realism.noise`);
- where the voxels >= 130 HU lie: bone, heart, mediastinum, chest wall, lung, above/below;
- per-slice profiles along z (body and lung cross-section, voxels >= 130 HU);
- landmark slices (carina, mid-heart, diaphragm) to match slices by anatomy
  (:mod:`calcscore.realism.landmarks`).

:func:`compare` puts two reports side by side with a distance per measure; the figures show
matched slices (:func:`slices_figure`), the histograms (:func:`histograms_figure`) and the
profiles (:func:`profiles_figure`). :func:`match_slices` averages a thin-slice phantom to the
slice thickness of a real scan before measuring; :func:`load_real_scan` reads the real scan.

:mod:`calcscore.realism.hybrid` goes the other way: synthetic calcifications inserted into a real
scan's epicardial fat (hybrid images), for a model's sensitivity in real anatomy and as training
positives.
"""

from calcscore.realism.compare import (
    compare,
    histogram_distance,
    histograms_figure,
    profiles_figure,
    slices_figure,
)
from calcscore.realism.measures import (
    PLACES,
    TISSUES,
    RealismReport,
    match_slices,
    measure_scan,
)
from calcscore.realism.noise import NoiseTexture, measure_noise
from calcscore.realism.real import load_real_scan

__all__ = [
    "PLACES",
    "TISSUES",
    "NoiseTexture",
    "RealismReport",
    "compare",
    "histogram_distance",
    "histograms_figure",
    "load_real_scan",
    "match_slices",
    "measure_noise",
    "measure_scan",
    "profiles_figure",
    "slices_figure",
]
