"""Importers of public calcium scoring data sets into calcscore cohorts, and two small real
scans that ship with calcscore (:mod:`calcscore.datasets.examples`: ``qrm_phantom()``, a real
QRM phantom scan, and ``chest_ct()``, a real non-contrast chest CT; licences in ``data/``).

Each importer reads a data set as it is downloaded and writes, under an output folder,
``images/<scan_id>.nii.gz``, ``labels/<scan_id>.nii.gz`` (values of
:class:`calcscore.labels.Label`) and ``manifest.csv`` with the columns of ``calcscore synth``
(``scan_id, participant_id, image, labels, kernel, scanner``, then facts of the acquisition).

- :func:`calcscore.datasets.coca.import_coca`: Stanford AIMI "Coronary Calcium and chest CT"
  (COCA): gated DICOM series with OsiriX ROI annotations, and per-vessel reference scores of the
  non-gated scans.
- :func:`calcscore.datasets.orcascore.import_orcascore`: orCaScore-style MHD images with
  reference label images (1 LAD incl. left main, 2 LCX, 3 RCA).

A scan whose input is malformed does not stop the import: it is named in
``import_errors.csv`` (scan id, file, problem) and the other scans are imported (pass
``keep_going=False`` to stop at the first). Inputs are only read; outputs are written
atomically, so an interrupted import leaves no half-written file.
"""

from __future__ import annotations

from calcscore.datasets._common import ImportResult

__all__ = ["ImportResult"]
