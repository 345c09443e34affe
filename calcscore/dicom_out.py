"""Outputs that radiology tools open: the label map as DICOM SEG, the scores as DICOM SR. Both
reference the source CT series (a DICOM folder), so a PACS or viewer (OHIF, 3D Slicer) shows them
with the scan; the algorithm named in both is the model (:func:`calcscore.bundle.model_identity`).

- :func:`write_seg`: a binary Segmentation, one segment per calcium label present (all six when
  none is), numbered 1..n in label order and named by the label (LAD ... MV), coded (SNOMED CT)
  with its anatomic region and Fig. 6's colour; one frame per source slice that holds it.
- :func:`write_sr`: a Comprehensive 3D SR (TID 1500): one measurement group per label and one for
  CAC, tracked by the label name: Agatston score (DCM 112058, method 112055), volume (122660,
  mm3), mass (122661, mg; with a calibration only) and the label's segment; the CAC group also
  holds the named scores it is given (risk category, CAC-DRS, ...), coded in calcscore's local
  scheme "99CALCSCORE". The evidence lists the source series (and the SEG).

:func:`read_seg` and :func:`read_sr_scores` read them back. Needs highdicom
(``pip install 'calcscore[dicom]'``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from calcscore import __version__
from calcscore.dicom_common import (
    _REGION_CODES,
    LOCAL_SCHEME,
    _algorithm,
    _code,
    _hd,
    read_source_series,
)
from calcscore.dicom_sr import SR_SERIES_NUMBER, read_sr_scores, write_sr
from calcscore.errors import InputError
from calcscore.io import atomic_path, read_volume
from calcscore.labels import CALCIUM_LABELS, Label
from calcscore.volume import LabelVolume, check_same_geometry

__all__ = [
    "LOCAL_SCHEME",
    "SEG_SERIES_NUMBER",
    "SR_SERIES_NUMBER",
    "read_seg",
    "read_source_series",
    "read_sr_scores",
    "write_seg",
    "write_sr",
]

log = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 901

_CATEGORY = ("49755003", "SCT", "Morphologically Altered Structure")
_VASCULAR_CALCIFICATION = ("237897009", "SCT", "Vascular Calcification")
_CALCIFIED_VALVE = ("373136005", "SCT", "Calcified Heart Valve")


def _source_for(labels: LabelVolume, source_series: str | Path) -> list:
    datasets = read_source_series(source_series)
    volume = read_volume(source_series)
    try:
        check_same_geometry(volume, labels, names=("source series", "label map"))
    except ValueError as exc:
        raise InputError(source_series, str(exc), None) from None
    return datasets


# ------------------------------------------------------------------------------ SEG
def write_seg(
    labels: LabelVolume,
    source_series: str | Path,
    path: str | Path,
    *,
    manual: bool = False,
    series_description: str = "calcscore calcium labels",
    model: dict | None = None,
) -> Path:
    """Write ``labels`` (on the grid of ``source_series``) as a DICOM SEG at ``path``: one
    segment per calcium label present (all six, empty, when none is).

    Args:
        labels: the label map (values of :class:`~calcscore.labels.Label`), on the grid of the
            source series.
        source_series: the folder of the source CT series, which the SEG references.
        path: the SEG file to write (atomically).
        manual: mark the segments as drawn by a person (a reference annotation) rather than
            computed by calcscore.
        series_description: the SEG's SeriesDescription.
        model: the name and version of the model that computed the labels
            (:func:`calcscore.bundle.model_identity`; default calcscore and its version).

    Returns:
        ``path``, as a Path.

    Raises:
        InputError: a label map with values above the calcium labels, or one whose grid is not
            the source series'.
    """
    hd = _hd()
    from pydicom.uid import generate_uid

    source = _source_for(labels, source_series)
    arr = labels.array
    if arr.size and arr.max() > max(CALCIUM_LABELS):
        raise InputError(
            path,
            f"the label map holds value {int(arr.max())}; calcium labels are 1-6",
            "write a calcscore label map",
        )
    name, version = _algorithm(model)
    algorithm = (
        None
        if manual
        else hd.AlgorithmIdentificationSequence(
            name=name,
            version=version,
            family=_code("123110", "DCM", "Artificial Intelligence"),
        )
    )
    present = [lab for lab in CALCIUM_LABELS if (arr == int(lab)).any()]
    chosen = present or list(CALCIUM_LABELS)
    # segments are numbered 1..n (DICOM); the label of each is its SegmentLabel
    to_segment = np.zeros(256, np.uint8)
    to_segment[[int(lab) for lab in chosen]] = np.arange(1, len(chosen) + 1)
    descriptions = [
        _segment_description(hd, number, label, manual, algorithm)
        for number, label in enumerate(chosen, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=to_segment[arr],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="calcscore",
        manufacturer_model_name="calcscore",
        software_versions=__version__,
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=bool(arr.any()),
    )
    out = Path(path)
    with atomic_path(out) as tmp:
        seg.save_as(tmp / out.name)
    log.info("wrote DICOM SEG %s (%d frames)", out, int(seg.NumberOfFrames))
    return out


def _segment_description(hd, number: int, label: Label, manual: bool, algorithm):
    from pydicom.uid import generate_uid

    region = _REGION_CODES[label]
    is_valve = label in (Label.AV, Label.MV)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label.name,
        segmented_property_category=_code(*_CATEGORY),
        segmented_property_type=_code(*(_CALCIFIED_VALVE if is_valve else _VASCULAR_CALCIFICATION)),
        algorithm_type="MANUAL" if manual else "AUTOMATIC",
        algorithm_identification=algorithm,
        anatomic_regions=[_code(region[0], "SCT", region[1])],
        tracking_id=label.name,
        tracking_uid=generate_uid(),
        display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in label.colour)),
    )


def read_seg(path: str | Path, source_series: str | Path) -> LabelVolume:
    """Read a DICOM SEG back as a label map on the grid of ``source_series`` (segment number =
    label value)."""
    hd = _hd()
    p = Path(path)
    try:
        seg = hd.seg.segread(p)
    except Exception as exc:
        raise InputError(
            p, f"is not a readable DICOM SEG ({type(exc).__name__})", "write it again"
        ) from None
    datasets = read_source_series(source_series)
    volume = read_volume(source_series)
    uids = [str(ds.SOPInstanceUID) for ds in datasets]
    referenced = {
        str(r.ReferencedSOPInstanceUID)
        for item in seg.ReferencedSeriesSequence
        for r in item.ReferencedInstanceSequence
    }
    if not referenced & set(uids):
        raise InputError(
            p, f"references none of the images of {source_series}", "pass its source series"
        )
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids,
        combine_segments=True,
        relabel=False,
        assert_missing_frames_are_empty=True,
        dtype=np.uint8,
    )
    to_label = np.zeros(max(len(seg.SegmentSequence), 1) + 1, np.uint8)
    for item in seg.SegmentSequence:
        name = str(item.SegmentLabel)
        if name not in Label.__members__:
            raise InputError(
                p, f"has a segment {name!r}, not a calcium label", "pass a calcscore SEG"
            )
        to_label[int(item.SegmentNumber)] = int(Label[name])
    return LabelVolume.like(volume, to_label[arr])
