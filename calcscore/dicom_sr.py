"""The scores as a DICOM SR (Comprehensive 3D SR, TID 1500), and back: :func:`write_sr`,
:func:`read_sr_scores` (both also importable from :mod:`calcscore.dicom_out`, which describes the
content). Needs highdicom (``pip install 'calcscore[dicom]'``).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from calcscore import __version__
from calcscore.dicom_common import (
    _REGION_CODES,
    LOCAL_SCHEME,
    _algorithm,
    _code,
    _hd,
    _local_code,
    read_source_series,
)
from calcscore.errors import InputError, optional_import
from calcscore.io import atomic_path
from calcscore.labels import CALCIUM_LABELS, Label
from calcscore.scoring import Scores

log = logging.getLogger(__name__)

SR_SERIES_NUMBER = 902

_CORONARY_ARTERY = ("41801008", "Coronary artery")
_CALCIUM_SCORE = ("112058", "DCM", "Calcium score")
_AGATSTON_METHOD = ("112055", "DCM", "Agatston scoring method")
_CALCIUM_VOLUME = ("122660", "DCM", "Calcium Volume")
_CALCIUM_MASS = ("122661", "DCM", "Calcium Mass")
_NO_UNITS = ("1", "UCUM", "no units")
_MM3 = ("mm3", "UCUM", "cubic millimeter")
_MG = ("mg", "UCUM", "milligram")
_PROCEDURE = ("426005005", "SCT", "Cardiac CT for calcium scoring")
_FIELDS = {"112058": "agatston", "122660": "volume_mm3", "122661": "mass_mg"}


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

    Args:
        scores: a :class:`~calcscore.scoring.Scores` (:func:`calcscore.scoring.agatston`) or the
            dict of :func:`calcscore.scoring.score_report` (a ``<scan>_scores.json``).
        source_series: the folder of the source CT series, listed in the evidence.
        path: the SR file to write (atomically).
        seg_path: the DICOM SEG of the labels (:func:`calcscore.dicom_out.write_seg`): each
            label's group then points at its segment.
        scan_id: appended to the SeriesDescription.
        model: the name and version of the model (:func:`calcscore.bundle.model_identity`;
            default calcscore and its version).
        named_scores: further scores of the scan, written into the CAC group, each one under its
            name: a text (``{"Risk category": "II", "CAC-DRS": "A2/N3"}``) as a qualitative
            evaluation, a number as a measurement without unit.

    Returns:
        ``path``, as a Path.
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
