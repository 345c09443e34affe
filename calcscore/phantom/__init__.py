"""Synthetic non-contrast, non-gated low-dose chest CT with voxel-exact calcium labels.

numpy and scipy only: importable where SimpleITK, torch and ipywidgets are not installed.

- :func:`make_scan` / :func:`make_scans`: one subject, one or several reconstruction kernels.
- :func:`make_cohort`: participants with soft and sharp reconstructions, in memory.
- :func:`observe`: a second or third observer's annotation derived from the reference.

Two anatomies (``anatomy=``): "v2", the default, a realistic chest (shoulder girdle and arms,
ribs, costal cartilage, sternum, vertebrae with posterior elements, upper abdomen, neck,
breasts; a four-chamber heart with the coronary arteries in its grooves and an aorta of real
curvature; modules ``habitus``, ``skeleton``, ``torso``, ``artifacts``, ``heart``, ``aorta``),
and "v1", the first generator's cartoon anatomy, byte for byte (``render``). See
docs/phantoms.md.
"""

from calcscore.phantom.acquisition import KERNELS, SCANNERS, SIZES, ScannerProfile
from calcscore.phantom.anatomy import ANATOMIES
from calcscore.phantom.calcification import Lesion
from calcscore.phantom.cohort import GENERATOR_VERSION, CohortScan, make_cohort
from calcscore.phantom.observers import ObserverProfile, observe
from calcscore.phantom.scan import ScanInfo, make_scan, make_scans

__all__ = [
    "ANATOMIES",
    "GENERATOR_VERSION",
    "KERNELS",
    "SCANNERS",
    "SIZES",
    "CohortScan",
    "Lesion",
    "ObserverProfile",
    "ScanInfo",
    "ScannerProfile",
    "make_cohort",
    "make_scan",
    "make_scans",
    "observe",
]
