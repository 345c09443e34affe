"""orCaScore-style data: CT images with reference label images (MHD/MHA, NIfTI or NRRD).

Reference labels: 0 background, 1 LAD (including the left main), 2 LCX, 3 RCA, the same values
as :class:`calcscore.labels.Label`, so they are copied as they are.

Pairs are found in either of two layouts under ``ROOT`` (searched recursively):

- orCaScore names: ``<id>CTI.mhd`` is the image of scan ``<id>`` (e.g. ``TRV1P1CTI.mhd``) and
  ``<id>CTR.mhd`` or ``<id>R.mhd`` its reference, in any folder;
- folders: ``.../images/<id>.mhd`` and ``.../labels/<id>.mhd`` (or a folder named
  ``reference``, ``references`` or ``reference standard``) beside it.

An image without a reference, a reference with values other than 0-3, or a reference on another
grid than its image is an error of that scan (named in ``import_errors.csv``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from calcscore.checks import classify_kernel
from calcscore.datasets._common import (
    ImportResult,
    check_format,
    finish,
    prepare_out,
    run_scans,
    write_scan,
)
from calcscore.errors import InputError
from calcscore.io import ITK_SUFFIXES, read_labels, read_volume, strip_suffix, suffix_of
from calcscore.labels import CAC_LABELS
from calcscore.volume import CTVolume, LabelVolume, check_same_geometry

log = logging.getLogger(__name__)

REFERENCE_FOLDERS = (
    "labels",
    "reference",
    "references",
    "reference standard",
    "reference_standard",
)
_IMAGE_NAME = re.compile(r"^(?P<id>.+?)CTI$", re.IGNORECASE)
_VALID = {0} | {int(lab) for lab in CAC_LABELS}
_PARTICIPANT = re.compile(r"^(?:TR|TE)?(?P<pid>V\d+P\d+)$", re.IGNORECASE)


def _image_files(root: Path) -> list[Path]:
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and suffix_of(p) in ITK_SUFFIXES
        and suffix_of(p) != ".nhdr"
        and not p.name.startswith(".")
    ]
    return sorted(files)


def find_pairs(root: str | Path) -> dict[str, tuple[Path, Path | None]]:
    """scan id -> (image, reference or None), from orCaScore names or images/ + labels/ folders."""
    src = Path(root)
    files = _image_files(src)
    by_folder_stem = {(p.parent, strip_suffix(p).lower()): p for p in files}
    pairs: dict[str, tuple[Path, Path | None]] = {}
    for p in files:
        stem = strip_suffix(p)
        m = _IMAGE_NAME.match(stem)
        if m:
            scan_id = m.group("id")
            ref = next(
                (
                    by_folder_stem[(q.parent, (scan_id + suffix).lower())]
                    for q in files
                    for suffix in ("CTR", "R")
                    if (q.parent, (scan_id + suffix).lower()) in by_folder_stem
                ),
                None,
            )
        elif p.parent.name.lower() == "images":
            scan_id = stem
            ref = next(
                (
                    by_folder_stem[(p.parent.parent / name, stem.lower())]
                    for name in _sibling_folders(p.parent)
                    if (p.parent.parent / name, stem.lower()) in by_folder_stem
                ),
                None,
            )
        else:
            continue
        if scan_id in pairs:
            raise InputError(
                p,
                f"is a second image of scan {scan_id!r} (the first: {pairs[scan_id][0]})",
                "keep one image per scan id",
            )
        pairs[scan_id] = (p, ref)
    return dict(sorted(pairs.items()))


def _sibling_folders(images_dir: Path) -> list[str]:
    return [
        d.name
        for d in images_dir.parent.iterdir()
        if d.is_dir() and d.name.lower() in REFERENCE_FOLDERS
    ]


def load_pair(image: Path, reference: Path | None) -> tuple[CTVolume, LabelVolume]:
    """Read one image and its reference label map, checking values and grid."""
    if reference is None:
        raise InputError(
            image,
            "has no reference label image",
            "add <id>CTR.mhd beside it, or labels/<id>.mhd beside images/",
        )
    volume = read_volume(image)
    labels = read_labels(reference)
    values = set(np.unique(labels.array).tolist())
    if not values <= _VALID:
        bad = sorted(values - _VALID)
        raise InputError(
            reference,
            f"holds label values {bad}; orCaScore references use 0 background, "
            "1 LAD (incl. left main), 2 LCX, 3 RCA",
            "relabel it to 0-3",
        )
    try:
        check_same_geometry(volume, labels, names=("image", "reference"))
    except ValueError as exc:
        raise InputError(reference, str(exc), None) from None
    return volume, labels


def _participant_of(scan_id: str) -> str:
    m = _PARTICIPANT.match(scan_id)
    return m.group("pid") if m else scan_id


def import_orcascore(
    root: str | Path, out_dir: str | Path, *, fmt: str = "nii.gz", keep_going: bool = True
) -> ImportResult:
    """Import orCaScore-style pairs from ``root`` into ``out_dir``.

    Writes ``images/<id>.<fmt>``, ``labels/<id>.<fmt>`` and ``manifest.csv`` (the columns of
    ``calcscore synth``: ``kernel`` is soft/sharp/unknown from the image's kernel name, if the
    file has one; then ``source_image``, ``source_reference``). Scans that fail go to
    ``import_errors.csv``.

    Args:
        root: the folder of the orCaScore data.
        out_dir: the output folder (created).
        fmt: the output format, ``"nii.gz"`` or ``"mha"``.
        keep_going: record a scan that fails and go on; False raises at the first instead.

    Returns:
        An :class:`~calcscore.datasets._common.ImportResult`.
    """
    check_format(fmt)
    src = Path(root)
    if not src.is_dir():
        raise InputError(src, "is not a folder", "pass the folder of the orCaScore data")
    pairs = find_pairs(src)
    if not pairs:
        raise InputError(
            src,
            "holds no <id>CTI.mhd images and no images/ folder",
            "pass the folder of the orCaScore data",
        )
    out = prepare_out(out_dir)
    result = ImportResult(out_dir=out, manifest=None)

    def one(scan_id: str, image: Path, reference: Path | None):
        def make_row() -> dict:
            volume, labels = load_pair(image, reference)
            paths = write_scan(out, scan_id, volume, labels, fmt)
            meta = volume.meta
            return {
                "scan_id": scan_id,
                "participant_id": _participant_of(scan_id),
                **paths,
                "kernel": classify_kernel(meta.kernel, meta.manufacturer).kernel_class,
                "scanner": " ".join(x for x in (meta.manufacturer, meta.model) if x) or "unknown",
                "kernel_name": meta.kernel or "",
                "slice_spacing_mm": volume.spacing_mm[0],
                "source_image": str(image.resolve()),
                "source_reference": "" if reference is None else str(reference.resolve()),
                "n_calcium_voxels": int((labels.array > 0).sum()),
            }

        return scan_id, image, make_row

    rows = run_scans(
        (one(i, im, ref) for i, (im, ref) in pairs.items()), result, keep_going=keep_going
    )
    return finish(out, rows, result)
