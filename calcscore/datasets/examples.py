"""Two small real scans that ship with calcscore, for the notebooks, the tutorials and Binder.

They live inside the package (``calcscore/datasets/data``, listed in pyproject's package data),
so a clone, a ``pip install`` and a Binder session all have them; their licences and
attribution lie beside them (``data/README.md``).

- :func:`qrm_phantom`: a **real** scan of a physical QRM thorax phantom with a cardiac
  calcification insert (Canon/Toshiba Aquilion ONE, 120 kV, 3 mm slices, kernel FC12), from
  MolloiLab/CAC-stanford-data (MIT). Nine calcium inserts (three densities x three sizes) lie on
  slices :data:`QRM_INSERT_SLICES`; their physical masses are in :func:`qrm_reference`. Stored as
  the 47 DICOM slices' HU in one compressed int16 NIfTI (lossless) plus the DICOM header fields
  calcscore uses, with the geometry at the DICOM's full precision.
- :func:`chest_ct`: a **real** non-contrast low-dose chest CT of a patient (Lung-PET-CT-Dx
  ``lungdx-a0001-b``, Philips Brilliance 16, 5 mm slices, soft kernel B; TCIA, CC BY 4.0). It
  has no calcium annotations: it shows what real anatomy looks like to a model trained on
  phantoms.

Each call reads the file again and returns a new :class:`~calcscore.volume.CTVolume`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from calcscore.errors import InputError
from calcscore.io import read_volume
from calcscore.volume import CTVolume

#: the folder of the shipped scans
DATA_DIR = Path(__file__).resolve().parent / "data"
QRM_NAME = "qrm-canon-large-rep1"
CHEST_NAME = "lungdx-a0001-b"
#: array indices (k = 0 the lowest z) of the QRM slices through the nine calcium inserts
QRM_INSERT_SLICES = (21, 22, 23)
#: what each example is, where it comes from and under which licence
EXAMPLES = {
    QRM_NAME: {
        "what": "real scan of a physical QRM thorax phantom with calcium inserts",
        "source": "MolloiLab/CAC-stanford-data (GitHub)",
        "licence": "MIT (qrm-canon-large-rep1.LICENSE)",
    },
    CHEST_NAME: {
        "what": "real non-contrast chest CT of a patient, no calcium annotations",
        "source": "The Cancer Imaging Archive, Lung-PET-CT-Dx (Li P. et al., 2020)",
        "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
    },
}


def path(name: str) -> Path:
    """The shipped file of example ``name`` (``qrm-canon-large-rep1`` or ``lungdx-a0001-b``)."""
    if name not in EXAMPLES:
        raise ValueError(f"no shipped example {name!r}; choose one of {', '.join(EXAMPLES)}")
    p = DATA_DIR / f"{name}.nii.gz"
    if not p.is_file():
        raise InputError(
            p,
            "is missing from this calcscore installation",
            "reinstall calcscore from its repository or wheel (the scans are package data)",
        )
    return p


def qrm_phantom() -> CTVolume:
    """The real QRM phantom scan (47 x 512 x 512, 3 x 0.488 x 0.488 mm), exactly as read from its
    DICOM series: the same HU, geometry and header fields (``meta.extra`` holds the series
    description and the other descriptive fields the DICOM reader keeps)."""
    p = path(QRM_NAME)
    volume = read_volume(p)
    header = json.loads(p.with_name(f"{QRM_NAME}.json").read_text())
    if list(volume.shape) != header["shape_zyx"]:
        raise InputError(
            p,
            f"has shape {volume.shape}, its header file says {header['shape_zyx']}",
            "reinstall calcscore",
        )
    meta = replace(volume.meta, extra=dict(header.get("extra", {})))
    return CTVolume(
        volume.hu,
        tuple(header["spacing_zyx_mm"]),
        tuple(header["origin_zyx_mm"]),
        np.asarray(header["direction_zyx"], dtype=float),
        meta=meta,
    )


def qrm_reference() -> pd.DataFrame:
    """The QRM inserts' physical masses (mg) and the scores MolloiLab's software computed on this
    scan (their conventions, not calcscore's: a neighbour to compare with, not a target)."""
    return pd.read_csv(DATA_DIR / f"{QRM_NAME}_reference_agatston_mass.csv")


def chest_ct() -> CTVolume:
    """The real non-contrast chest CT ``lungdx-a0001-b`` (64 x 360 x 512, 5 x 0.84 x 0.84 mm,
    cropped in-plane to the body), with its header fields from the JSON beside it."""
    return read_volume(path(CHEST_NAME))


def describe() -> pd.DataFrame:
    """One row per shipped example: what it is, its source, licence and file size."""
    rows = {
        name: {**facts, "file": path(name).name, "MB": round(path(name).stat().st_size / 1e6, 1)}
        for name, facts in EXAMPLES.items()
    }
    return pd.DataFrame(rows).T
