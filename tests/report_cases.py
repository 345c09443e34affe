"""Hand-made scans and cohort summaries for the report page tests (test_report_pages.py and
test_report_browser.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calcscore.labels import Label
from calcscore.volume import CTMeta, CTVolume, LabelVolume

SPACING = (3.0, 0.8, 0.8)


def scan(meta: CTMeta | None = None) -> tuple[CTVolume, LabelVolume]:
    """Soft tissue at 40 HU with four lesions in one slice each: LAD (red in Fig. 6), LCX, RCA
    and aorta (TAC), 3 x 4 pixels of 300 HU (density factor 3)."""
    hu = np.full((6, 60, 60), 40.0, np.float32)
    lab = np.zeros(hu.shape, np.uint8)
    for z, (r, c), label in [
        (1, (10, 10), Label.LAD),
        (2, (10, 40), Label.LCX),
        (3, (40, 10), Label.RCA),
        (4, (40, 40), Label.TAC),
    ]:
        hu[z, r : r + 3, c : c + 4] = 300.0
        lab[z, r : r + 3, c : c + 4] = int(label)
    volume = CTVolume(hu, SPACING, meta=meta or CTMeta())
    return volume, LabelVolume.like(volume, lab)


class FakeModel:
    """What the report reads of a loaded model: ``info`` (model.json) and ``source``."""

    def __init__(self, trained_on: str | None):
        self.info = {} if trained_on is None else {"trained_on": trained_on}
        self.source = "/models/default"


def cohort_summary() -> pd.DataFrame:
    """Four scored scans with references (risk I, II, III, IV vs I, II, III, III) and a failed
    one; linearly weighted kappa of the risk categories worked out by hand: observed weighted
    agreement (3 + 2/3) / 4, expected 10 / 16, kappa (0.91667 - 0.625) / 0.375 = 0.778."""
    rows = [
        ("a", "ok", 5.0, "A1/N1", "I", 1, 4.0, "I", "A1/N1"),
        ("b", "ok", 50.0, "A1/N2", "II", 2, 60.0, "II", "A1/N2"),
        ("c", "ok", 500.0, "A3/N3", "III", 5, 450.0, "III", "A3/N3"),
        ("d", "ok", 900.0, "A3/N3", "III", 7, 1500.0, "IV", "A3/N3"),
    ]
    cols = [
        "scan_id",
        "status",
        "CAC_agatston",
        "cac_drs",
        "risk_category",
        "ordinal_score",
        "ref_CAC_agatston",
        "ref_risk_category",
        "ref_cac_drs",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["TAC_agatston"] = 0.0
    df["check_warnings"] = None
    df["error"] = None
    failed = {c: None for c in df.columns} | {
        "scan_id": "e",
        "status": "failed",
        "error": "e.nii.gz: refused: contrast-enhanced scan",
        "ref_CAC_agatston": np.nan,
    }
    return pd.concat([df, pd.DataFrame([failed])], ignore_index=True)
