"""What calcscore's DICOM SEG (:mod:`calcscore.dicom_out`) and SR (:mod:`calcscore.dicom_sr`)
share: the anatomic region codes of the labels, the local coding scheme, the algorithm's name,
and the source CT series they reference (:func:`read_source_series`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from calcscore import __version__
from calcscore.dicom_read import _is_ct_stack, read_dicom_file
from calcscore.errors import InputError, optional_import
from calcscore.labels import Label

log = logging.getLogger(__name__)

# SNOMED CT codes of each label's anatomic region: (value, meaning).
_REGION_CODES: dict[Label, tuple[str, str]] = {
    Label.LAD: ("59438005", "Anterior Descending Branch of Left Coronary Artery"),
    Label.LCX: ("57396003", "Circumflex Coronary Artery"),
    Label.RCA: ("13647002", "Right Coronary Artery"),
    Label.TAC: ("113262008", "Thoracic aorta"),
    Label.AV: ("34202007", "Aortic Valve"),
    Label.MV: ("91134007", "Mitral Valve"),
}
_TYPE2_PATIENT_STUDY = (
    *("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"),
    *("ReferringPhysicianName", "StudyID", "AccessionNumber"),
)
#: calcscore's local (private, "99"-prefixed) coding scheme for the names and values of named
#: scores that no standard code covers (risk category, CAC-DRS, ...)
LOCAL_SCHEME = "99CALCSCORE"


def _hd():
    return optional_import("highdicom", "writing DICOM SEG and SR", "dicom")


def _code(value: str, scheme: str, meaning: str):
    from pydicom.sr.coding import Code

    return Code(value, scheme, meaning)


def _local_code(meaning: str):
    """A code of :data:`LOCAL_SCHEME` whose meaning is ``meaning`` (its value: the meaning in
    capitals, spaces as hyphens, at most 16 characters as DICOM's SH allows)."""
    value = "-".join(str(meaning).upper().split())[:16]
    return _code(value, LOCAL_SCHEME, str(meaning)[:64])


def _algorithm(model: dict | None) -> tuple[str, str]:
    """(name, version) of ``model`` (:func:`calcscore.bundle.model_identity`), else calcscore's."""
    return (str(model["name"]), str(model["version"])) if model else ("calcscore", __version__)


# ------------------------------------------------------------------------------ source series
def read_source_series(folder: str | Path) -> list:
    """The CT datasets of a DICOM series folder, in calcscore's slice order (along the normal)."""
    optional_import("pydicom", "reading DICOM", "io")
    p = Path(folder)
    if not p.is_dir():
        raise InputError(
            p, "is not a DICOM series folder", "pass the folder of the source CT series"
        )
    datasets = []
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        try:
            ds = read_dicom_file(f)  # raw datasets without the Part 10 header too
        except Exception:  # not DICOM (a DICOMDIR index, a README): skip
            log.debug("%s: not a DICOM file; skipped", f)
            continue
        if "ImagePositionPatient" in ds and "PixelData" in ds:
            datasets.append(ds)
    if not datasets:
        raise InputError(p, "holds no DICOM images", "pass the folder of the source CT series")
    by_uid: dict[str, list] = {}
    for ds in datasets:
        by_uid.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    if len(by_uid) > 1:  # the series read_volume scores: the only CT stack beside scouts ...
        stacks = [u for u, group in by_uid.items() if _is_ct_stack([(None, d) for d in group])]
        if len(stacks) != 1:
            raise InputError(
                p, f"holds {len(by_uid)} series", "pass a folder with the one source series"
            )
        datasets = by_uid[stacks[0]]
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    for ds in datasets:  # type 2 attributes that the derived objects copy: empty when absent
        for keyword in _TYPE2_PATIENT_STUDY:
            if keyword not in ds:
                setattr(ds, keyword, "")
        name = str(ds.PatientName)
        if name and "^" not in name:  # a one-component name, spelled as DICOM wants it
            ds.PatientName = name + "^"
    return datasets
