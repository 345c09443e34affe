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
import math
from pathlib import Path

import numpy as np

from calcscore import __version__
from calcscore.errors import InputError, optional_import
from calcscore.io import atomic_path, read_volume
from calcscore.labels import CALCIUM_LABELS, Label
from calcscore.scoring import Scores
from calcscore.volume import LabelVolume, check_same_geometry

log = logging.getLogger(__name__)

SEG_SERIES_NUMBER = 901
SR_SERIES_NUMBER = 902

# SNOMED CT codes of each label's anatomic region: (value, meaning).
_REGION_CODES: dict[Label, tuple[str, str]] = {
    Label.LAD: ("59438005", "Anterior Descending Branch of Left Coronary Artery"),
    Label.LCX: ("57396003", "Circumflex Coronary Artery"),
    Label.RCA: ("13647002", "Right Coronary Artery"),
    Label.TAC: ("113262008", "Thoracic aorta"),
    Label.AV: ("34202007", "Aortic Valve"),
    Label.MV: ("91134007", "Mitral Valve"),
}
_CORONARY_ARTERY = ("41801008", "Coronary artery")
_CATEGORY = ("49755003", "SCT", "Morphologically Altered Structure")
_VASCULAR_CALCIFICATION = ("237897009", "SCT", "Vascular Calcification")
_CALCIFIED_VALVE = ("373136005", "SCT", "Calcified Heart Valve")
_CALCIUM_SCORE = ("112058", "DCM", "Calcium score")
_AGATSTON_METHOD = ("112055", "DCM", "Agatston scoring method")
_CALCIUM_VOLUME = ("122660", "DCM", "Calcium Volume")
_CALCIUM_MASS = ("122661", "DCM", "Calcium Mass")
_NO_UNITS = ("1", "UCUM", "no units")
_MM3 = ("mm3", "UCUM", "cubic millimeter")
_MG = ("mg", "UCUM", "milligram")
_PROCEDURE = ("426005005", "SCT", "Cardiac CT for calcium scoring")
_TYPE2_PATIENT_STUDY = (
    *("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime"),
    *("ReferringPhysicianName", "StudyID", "AccessionNumber"),
)
_FIELDS = {"112058": "agatston", "122660": "volume_mm3", "122661": "mass_mg"}
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
    pydicom = optional_import("pydicom", "reading DICOM", "io")
    p = Path(folder)
    if not p.is_dir():
        raise InputError(
            p, "is not a DICOM series folder", "pass the folder of the source CT series"
        )
    datasets = []
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # not DICOM (a DICOMDIR index, a README): skip
            log.debug("%s: not a DICOM file; skipped", f)
            continue
        if "ImagePositionPatient" in ds and "PixelData" in ds:
            datasets.append(ds)
    if not datasets:
        raise InputError(p, "holds no DICOM images", "pass the folder of the source CT series")
    uids = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(uids) > 1:
        raise InputError(p, f"holds {len(uids)} series", "pass a folder with the one source series")
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

    ``manual=True`` marks the segments as drawn by a person (a reference annotation) rather
    than computed by calcscore; ``model``: the name and version of the model that computed them
    (:func:`calcscore.bundle.model_identity`; default calcscore and its version).
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


# ------------------------------------------------------------------------------ SR
def write_sr(
    scores: Scores | dict,
    source_series: str | Path,
    path: str | Path,
    *,
    seg_path: str | Path | None = None,
    scan_id: str | None = None,
    model: dict | None = None,
    named_scores: dict[str, str | float] | None = None,
) -> Path:
    """Write ``scores`` as a DICOM SR measurement report referencing ``source_series`` (and the
    SEG at ``seg_path``, when given).

    ``scores`` is a :class:`~calcscore.scoring.Scores` (:func:`calcscore.scoring.agatston`) or
    the dict of :func:`calcscore.scoring.score_report` (a ``<scan>_scores.json``).
    ``model``: the name and version of the model (:func:`calcscore.bundle.model_identity`;
    default calcscore and its version). ``named_scores``: further scores of the scan, written
    into the CAC group, each one under its name: a text (``{"Risk category": "II",
    "CAC-DRS": "A2/N3"}``) as a qualitative evaluation, a number as a measurement without unit.
    """
    hd = _hd()
    pydicom = optional_import("pydicom", "reading DICOM", "io")
    from pydicom.uid import generate_uid

    source = read_source_series(source_series)
    seg = pydicom.dcmread(seg_path) if seg_path is not None else None
    observer = hd.sr.ObserverContext(
        observer_type=_code("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(),
            name="calcscore",
            manufacturer_name="calcscore",
            model_name=_algorithm(model)[0][:64],
        ),
    )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    algorithm = hd.sr.AlgorithmIdentification(*_algorithm(model))
    table = _score_table(scores)
    groups = []
    for name in [lab.name for lab in CALCIUM_LABELS] + ["CAC"]:
        measurements = _label_measurements(hd, table[name], algorithm)
        evaluations: list = []
        if name == "CAC":
            more, evaluations = _named(hd, named_scores or {}, algorithm)
            measurements += more
        groups.append(_group(hd, name, measurements, evaluations, algorithm, seg, source))
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=_code(*_PROCEDURE),
        imaging_measurements=groups,
    )
    evidence = list(source) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="calcscore",
        software_versions=__version__,
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(LOCAL_SCHEME, "calcscore local codes")
        ]
        if named_scores
        else None,
        is_complete=True,
        series_description=f"calcscore calcium scores{f' {scan_id}' if scan_id else ''}",
    )
    out = Path(path)
    with atomic_path(out) as tmp:
        sr.save_as(tmp / out.name)
    log.info("wrote DICOM SR %s", out)
    return out


def _label_measurements(hd, s, algorithm) -> list:
    """Agatston score, volume and (when known) mass of one label's :class:`LabelScore`."""
    out = [
        hd.sr.Measurement(
            name=_code(*_CALCIUM_SCORE),
            value=float(s.agatston),
            unit=_code(*_NO_UNITS),
            method=_code(*_AGATSTON_METHOD),
            algorithm_id=algorithm,
        ),
        hd.sr.Measurement(
            name=_code(*_CALCIUM_VOLUME),
            value=float(s.volume_mm3),
            unit=_code(*_MM3),
            algorithm_id=algorithm,
        ),
    ]
    if math.isfinite(s.mass_mg):
        out.append(
            hd.sr.Measurement(
                name=_code(*_CALCIUM_MASS),
                value=float(s.mass_mg),
                unit=_code(*_MG),
                algorithm_id=algorithm,
            )
        )
    return out


def _group(hd, name: str, measurements, evaluations, algorithm, seg, source):
    """The measurement group of label ``name`` (or CAC), tracked by the name: a volumetric ROI
    group pointing at the label's segment when the SEG has one, else an image group."""
    from pydicom.uid import generate_uid

    site = _CORONARY_ARTERY if name == "CAC" else _REGION_CODES[Label[name]]
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name),
        "finding_type": _code("5540006", "SCT", "Calcium"),
        "finding_sites": [hd.sr.FindingSite(anatomic_location=_code(site[0], "SCT", site[1]))],
        "measurements": measurements,
        "qualitative_evaluations": evaluations or None,
        "algorithm_id": algorithm,
    }
    number = None if seg is None or name == "CAC" else _seg_segment(seg, name)
    if number is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    ref = hd.sr.ReferencedSegment(
        sop_class_uid=seg.SOPClassUID,
        sop_instance_uid=seg.SOPInstanceUID,
        segment_number=number,
        source_series=hd.sr.SourceSeriesForSegmentation(source[0].SeriesInstanceUID),
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_segment=ref, **common
    )


def _named(hd, named: dict[str, str | float], algorithm) -> tuple[list, list]:
    """(measurements, qualitative evaluations) of the named scores: numbers and texts."""
    measurements, evaluations = [], []
    for name, value in named.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            unit = _code(*_NO_UNITS)
            measurements.append(
                hd.sr.Measurement(_local_code(name), float(value), unit, algorithm_id=algorithm)
            )
        else:
            evaluations.append(
                hd.sr.QualitativeEvaluation(name=_local_code(name), value=_local_code(str(value)))
            )
    return measurements, evaluations


def _score_table(scores: Scores | dict) -> dict:
    """name -> an object with ``agatston``, ``volume_mm3``, ``mass_mg`` (nan when unknown)."""
    from calcscore.scoring import LabelScore

    names = [lab.name for lab in CALCIUM_LABELS] + ["CAC"]
    if isinstance(scores, Scores):
        return {n: scores[n] for n in names}
    labels = scores.get("labels") if isinstance(scores, dict) else None
    if not isinstance(labels, dict) or any(n not in labels for n in names):
        raise ValueError(
            f"`scores` must be a Scores or a score_report dict with labels {', '.join(names)}"
        )

    def num(v) -> float:
        return math.nan if v is None else float(v)

    return {
        n: LabelScore(
            num(labels[n].get("agatston")),
            num(labels[n].get("volume_mm3")),
            num(labels[n].get("mass_mg")),
            int(labels[n].get("n_lesions") or 0),
        )
        for n in names
    }


def _seg_segment(seg, label: str) -> int | None:
    """The number of the SEG's segment labelled ``label``, None when it has none or the
    segment has no frame (an empty segment)."""
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence if str(s.SegmentLabel) == label]
    # each frame's segment: per frame, or shared by all frames when the SEG has one segment
    groups = list(getattr(seg, "PerFrameFunctionalGroupsSequence", []))
    groups += list(getattr(seg, "SharedFunctionalGroupsSequence", []))
    framed = {
        int(g.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for g in groups
        if "SegmentIdentificationSequence" in g
    }
    return next((n for n in numbers if n in framed), None)


def read_sr_scores(path: str | Path) -> dict[str, dict[str, float | str]]:
    """Read the scores back from a calcscore SR: ``{"LAD": {"agatston": ..., "volume_mm3": ...,
    "mass_mg": ... (when present)}, ..., "CAC": {..., "Risk category": "II", ...}}``, keyed by
    tracking identifier; named scores under their names (texts as str, numbers as float)."""
    pydicom = optional_import("pydicom", "reading DICOM", "io")
    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except Exception as exc:
        raise InputError(
            p, f"is not a readable DICOM file ({type(exc).__name__})", "write it again"
        ) from None
    out: dict[str, dict[str, float | str]] = {}
    for group in _walk(ds):
        name = None
        values: dict[str, float | str] = {}
        for item in getattr(group, "ContentSequence", []):
            concept = item.ConceptNameCodeSequence[0]
            code, local = concept.CodeValue, concept.CodingSchemeDesignator == LOCAL_SCHEME
            if item.ValueType == "TEXT" and code == "112039":  # Tracking Identifier
                name = str(item.TextValue)
            elif item.ValueType == "NUM" and (code in _FIELDS or local):
                key = str(concept.CodeMeaning) if local else _FIELDS[code]
                values[key] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE" and local:
                values[str(concept.CodeMeaning)] = str(item.ConceptCodeSequence[0].CodeMeaning)
        if name is not None and values:
            out[name] = values
    if not out:
        raise InputError(p, "holds no calcium score measurement groups", "pass a calcscore SR")
    return out


def _walk(ds):
    """Every Measurement Group (DCM 125007) container of an SR, depth first."""
    for item in getattr(ds, "ContentSequence", []):
        if item.ValueType == "CONTAINER" and item.ConceptNameCodeSequence[0].CodeValue == "125007":
            yield item
        yield from _walk(item)
