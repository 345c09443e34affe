"""Numbers of the method that several modules share (docs/method.md §1, §3).

This module imports nothing from calcscore, so every other module can use it. The old names stay
importable where they were (``calcscore.preprocess.CALCIUM_THRESHOLD_HU``,
``calcscore.sampling.PAD_HU``, ``calcscore.inference.BODY_THRESHOLD_HU``, ...): those modules
re-export these.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The calcium threshold of the paper and of the reference annotations: candidate voxels, the
#: labels kept on the original grid and the Agatston lesions are voxels >= 130 HU.
CALCIUM_THRESHOLD_HU = 130.0
#: The range HU are clipped to before normalisation (and in the training cache).
HU_CLIP = (-1000.0, 3000.0)
#: The authors' input normalisation: (HU - NORM_CENTER) / NORM_SCALE.
NORM_CENTER = CALCIUM_THRESHOLD_HU
NORM_SCALE = 1130.0
#: What voxels outside a scan read as, in patches and in whole-scan inference (air).
PAD_HU = -1000.0
#: The default range (mm) of the distance from a training patch's centre to the first and to the
#: last slice of the shorter scans that ``calcscore.sampling.PatchSampler``'s ``z_crop``
#: simulates: an ECG-gated scan covers the heart, about 120 mm, from a little above the coronary
#: ostia to a little below the apex (``TrainConfig.z_crop_mm``).
Z_CROP_MM = (10.0, 150.0)
#: The body mask of whole-scan inference: the largest connected region above this HU.
BODY_THRESHOLD_HU = -400.0
#: Below this a value is padding outside the field of view, not air (the safety net's regions).
OUTSIDE_FOV_HU = -1100.0
#: The training cache keeps the bounding box of the voxels above this HU (a looser bound than
#: :data:`BODY_THRESHOLD_HU`: a box, not a mask); ``calcscore.sampling.BODY_THRESHOLD_HU``.
CACHE_BODY_THRESHOLD_HU = -500.0


def scale_hu(hu: Any) -> Any:
    """(hu - 130) / 1130 of a numpy array or a torch tensor (of HU already within
    :data:`HU_CLIP`, e.g. the int16 training cache), in the type it comes in."""
    return (hu - NORM_CENTER) / NORM_SCALE


def normalise_hu(hu: Any) -> Any:
    """The authors' network input (clip(hu, -1000, 3000) - 130) / 1130: float32 numpy for a numpy
    array, a float32 tensor for a tensor (on its device)."""
    if hasattr(hu, "clamp"):  # a torch tensor
        return scale_hu(hu.float().clamp(*HU_CLIP))
    return scale_hu(np.clip(hu, *HU_CLIP)).astype(np.float32)


#: The normalised value of :data:`PAD_HU`.
PAD_NORMALISED = scale_hu(PAD_HU)

#: ``calcscore score`` scores a cohort in a worker process replaced by a fresh one after this many
#: scans, when a process has more than that to score (:class:`calcscore.scan_job.Scorer`)
FRESH_EVERY = 10
