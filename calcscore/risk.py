"""Risk categories I-IV of a total CAC Agatston score (0-10, 11-100, 101-1000, > 1000).

Used by :mod:`calcscore.scoring` (which re-exports these names).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Risk categories from the total CAC Agatston score: name -> inclusive upper bound.
RISK_CATEGORY_UPPER_BOUNDS: dict[str, float] = {
    "I": 10.0,
    "II": 100.0,
    "III": 1000.0,
    "IV": math.inf,
}
RISK_CATEGORIES: tuple[str, ...] = tuple(RISK_CATEGORY_UPPER_BOUNDS)


def risk_category(cac_agatston: float) -> str:
    """Risk category of a total CAC Agatston score: I 0-10, II 11-100, III 101-1000, IV > 1000.

    Upper bounds are inclusive (10 is I, 10.5 is II).
    """
    score = float(cac_agatston)
    if not math.isfinite(score) or score < 0:
        raise ValueError(f"`cac_agatston` must be a finite score >= 0, got {cac_agatston!r}")
    return next(name for name, upper in RISK_CATEGORY_UPPER_BOUNDS.items() if score <= upper)


def risk_categories(cac_agatston: np.ndarray | pd.Series | list[float]) -> np.ndarray:
    """:func:`risk_category` of each score, as an array of strings."""
    return np.array(
        [risk_category(s) for s in np.asarray(cac_agatston, float).ravel()], dtype=object
    )
