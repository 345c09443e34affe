"""Agreement statistics: weighted kappa, confusion matrices, ICC, bootstrap CIs, paired tests,
Bland-Altman.

- Risk-category reliability (paper Table III): linearly weighted kappa, weights
  1 - |i - j| / (k - 1), computed with ``statsmodels.stats.inter_rater.cohens_kappa``; its
  Wald 95 % CI is clipped to [-1, 1]. Confusion matrices have the reference as rows.
- Score agreement: ICC(2,1), two-way random effects, absolute agreement, single measurement
  (Shrout & Fleiss 1979; CI of McGraw & Wong 1996).
- Bootstrap CIs resample scans with replacement (percentile intervals); they take an ``rng``.
- Paired comparison of two methods on the same scans: Wilcoxon signed-rank for continuous
  per-scan values (e.g. F1), exact McNemar for paired correct/incorrect outcomes (e.g. risk
  category right or wrong).

Undefined statistics are ``nan`` (a kappa when every scan is in one category, for example).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from calcscore.scoring import RISK_CATEGORIES, risk_categories


# ---------------------------------------------------------------------------------- kappa
@dataclass(frozen=True)
class KappaResult:
    """Weighted kappa with its confidence interval and the raw agreement."""

    kappa: float
    ci_low: float
    ci_high: float
    std_error: float
    n: int
    agreement: float  # fraction of exact agreement
    confidence: float = 0.95


def confusion_matrix(
    reference: Sequence[Any] | np.ndarray,
    prediction: Sequence[Any] | np.ndarray,
    *,
    categories: Sequence[Any] = RISK_CATEGORIES,
) -> pd.DataFrame:
    """Counts with the reference as rows and the prediction as columns, every category shown.

    Args:
        reference: one category per item (e.g. per scan).
        prediction: the other rating of the same items, paired with ``reference``.
        categories: every category, in order (default: risk categories I-IV); a value not
            among them is an error.

    Returns:
        a (categories x categories) DataFrame of counts, index "reference", columns "prediction".
    """
    ref, pred = _paired(reference, prediction, "reference", "prediction", dtype=object)
    cats = list(categories)
    unknown = (set(ref) | set(pred)) - set(cats)
    if unknown:
        raise ValueError(f"values {sorted(map(str, unknown))} are not among the categories {cats}")
    pos = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)), int)
    np.add.at(table, ([pos[r] for r in ref], [pos[p] for p in pred]), 1)
    return pd.DataFrame(
        table, index=pd.Index(cats, name="reference"), columns=pd.Index(cats, name="prediction")
    )


def weighted_kappa(
    reference: Sequence[Any] | np.ndarray,
    prediction: Sequence[Any] | np.ndarray,
    *,
    categories: Sequence[Any] = RISK_CATEGORIES,
    weights: Literal["linear", "quadratic", "none"] = "linear",
    confidence: float = 0.95,
) -> KappaResult:
    """Cohen's kappa of two ratings of the same items, linearly weighted by default.

    ``categories`` fixes the order (and the distance between categories); categories that no
    item falls in still count for the weights. ``nan`` when the expected disagreement is 0
    (every rating in one category).

    Args:
        reference, prediction: paired ratings of the same items.
        categories: every category, in order (default: risk categories I-IV).
        weights: "linear" (1 - |i - j| / (k - 1)), "quadratic", or "none" (unweighted kappa).
        confidence: the coverage of the Wald CI, e.g. 0.95.

    Returns:
        a :class:`KappaResult`: kappa, its CI clipped to [-1, 1], standard error, the number of
        items and the fraction of exact agreement.
    """
    table = confusion_matrix(reference, prediction, categories=categories).to_numpy().astype(float)
    n = int(table.sum())
    if n == 0:
        raise ValueError("weighted_kappa needs at least one pair of ratings")
    agreement = float(np.trace(table) / n)
    k = table.shape[0]
    i, j = np.indices((k, k))
    dist = {"linear": np.abs(i - j), "quadratic": (i - j) ** 2, "none": (i != j).astype(float)}[
        weights
    ]
    expected = np.outer(table.sum(1), table.sum(0)) / n
    if (dist * expected).sum() == 0:
        return KappaResult(math.nan, math.nan, math.nan, math.nan, n, agreement, confidence)
    from statsmodels.stats.inter_rater import cohens_kappa

    with np.errstate(divide="ignore", invalid="ignore"):  # tiny tables: the null SE can be 0
        res = cohens_kappa(
            table, wt={"linear": "linear", "quadratic": "quadratic", "none": None}[weights]
        )
    kappa, se = float(res["kappa"]), float(res["std_kappa"])
    if not math.isfinite(se):
        return KappaResult(kappa, math.nan, math.nan, se, n, agreement, confidence)
    z = sps.norm.ppf(0.5 + confidence / 2)
    low, high = max(-1.0, kappa - z * se), min(1.0, kappa + z * se)
    return KappaResult(kappa, low, high, se, n, agreement, confidence)


def risk_category_agreement(
    reference_agatston: Sequence[float],
    predicted_agatston: Sequence[float],
    *,
    confidence: float = 0.95,
) -> tuple[pd.DataFrame, KappaResult]:
    """Table III: the risk-category confusion matrix (reference rows) and the linear kappa.

    Args:
        reference_agatston: the reference CAC Agatston score of each scan.
        predicted_agatston: the automatic score of the same scans.
        confidence: the coverage of the kappa's CI.

    Returns:
        (the 4 x 4 confusion matrix of risk categories I-IV, the linearly weighted kappa).
    """
    ref = risk_categories(reference_agatston)
    pred = risk_categories(predicted_agatston)
    return confusion_matrix(ref, pred), weighted_kappa(ref, pred, confidence=confidence)


# ---------------------------------------------------------------------------------- ICC
@dataclass(frozen=True)
class ICCResult:
    icc: float
    ci_low: float
    ci_high: float
    n_targets: int
    n_raters: int
    confidence: float = 0.95


def icc_2_1(ratings: np.ndarray | pd.DataFrame, *, confidence: float = 0.95) -> ICCResult:
    """ICC(2,1): two-way random effects, absolute agreement, single rater.

    ``ratings`` is (n_targets, n_raters), e.g. ``np.column_stack([reference, automatic])`` of
    per-scan Agatston scores. Rows with a missing value are dropped.
    """
    x = np.asarray(ratings, float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"`ratings` must be (n_targets, n_raters >= 2), got shape {x.shape}")
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape
    if n < 2:
        return ICCResult(math.nan, math.nan, math.nan, n, k, confidence)
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_err = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    msr, msc = ss_rows / (n - 1), ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    if den <= 0:
        return ICCResult(math.nan, math.nan, math.nan, n, k, confidence)
    icc = (msr - mse) / den
    low, high = _icc_a1_ci(icc, msr, msc, mse, n, k, confidence)
    return ICCResult(float(icc), low, high, n, k, confidence)


def _icc_a1_ci(
    icc: float, msr: float, msc: float, mse: float, n: int, k: int, confidence: float
) -> tuple[float, float]:
    """McGraw & Wong (1996) CI of ICC(A,1) with Satterthwaite degrees of freedom."""
    alpha = 1 - confidence
    if not (0 < icc < 1) or mse <= 0:
        return math.nan, math.nan
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    f_low = sps.f.ppf(1 - alpha / 2, n - 1, v)
    f_high = sps.f.ppf(1 - alpha / 2, v, n - 1)
    c = k * msc + (k * n - k - n) * mse
    low = n * (msr - f_low * mse) / (f_low * c + n * msr)
    high = n * (f_high * msr - mse) / (c + n * f_high * msr)
    return float(low), float(high)


# ---------------------------------------------------------------------------------- bootstrap
@dataclass(frozen=True)
class BootstrapResult:
    estimate: float
    ci_low: float
    ci_high: float
    n_resamples: int
    confidence: float = 0.95


def bootstrap_ci(
    statistic: Callable[..., float],
    *samples: Sequence[Any],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    rng: np.random.Generator | int | None = None,
) -> BootstrapResult:
    """Percentile bootstrap CI of ``statistic(*samples)``, resampling scans with replacement.

    All ``samples`` are indexed by scan (same length) and resampled together, so paired data
    stay paired. Resamples where the statistic is ``nan`` are left out of the percentiles.

    Args:
        statistic: a function of the samples (one array each) returning a number.
        samples: one or more per-scan sequences of the same length.
        n_resamples: bootstrap resamples.
        confidence: the interval's coverage, e.g. 0.95.
        rng: a generator or seed.

    Returns:
        a :class:`BootstrapResult`: the statistic on the data and the percentile CI (``nan``
        when no resample gives a finite value).
    """
    if not samples:
        raise ValueError("bootstrap_ci needs at least one sample")
    arrays = [np.asarray(s) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(
            f"all samples must have one value per scan; got lengths {[len(a) for a in arrays]}"
        )
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one scan")
    if n_resamples < 1:
        raise ValueError(f"`n_resamples` must be >= 1, got {n_resamples=}")
    gen = np.random.default_rng(rng)
    estimate = float(statistic(*arrays))
    idx = gen.integers(0, n, size=(n_resamples, n))
    values = np.array([float(statistic(*(a[i] for a in arrays))) for i in idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return BootstrapResult(estimate, math.nan, math.nan, n_resamples, confidence)
    alpha = 1 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return BootstrapResult(estimate, float(low), float(high), n_resamples, confidence)


# ---------------------------------------------------------------------------------- paired tests
@dataclass(frozen=True)
class PairedTest:
    test: str
    statistic: float
    p_value: float
    n: int


def paired_test(
    a: Sequence[Any], b: Sequence[Any], *, test: Literal["wilcoxon", "mcnemar"] = "wilcoxon"
) -> PairedTest:
    """Compare two methods on the same scans.

    ``"wilcoxon"``: two-sided Wilcoxon signed-rank test of continuous per-scan values (pairs
    with a ``nan`` are dropped; exact p-value for small samples without ties). ``"mcnemar"``:
    exact McNemar test of paired booleans (method A right?, method B right?).

    Args:
        a: method A's per-scan values (numbers, or booleans for McNemar).
        b: method B's, paired with ``a``.
        test: "wilcoxon" or "mcnemar".

    Returns:
        a :class:`PairedTest`: the test's name, statistic, two-sided p-value and the number of
        pairs (``nan`` statistic and p-value when the Wilcoxon pairs are all equal or none).
    """
    if test == "wilcoxon":
        x, y = _paired(a, b, "a", "b", dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        d = x - y
        if x.size == 0 or not np.any(d != 0):
            return PairedTest("wilcoxon", math.nan, math.nan, int(x.size))
        res = sps.wilcoxon(x, y)
        return PairedTest("wilcoxon", float(res.statistic), float(res.pvalue), int(x.size))
    if test == "mcnemar":
        x, y = _paired(a, b, "a", "b", dtype=object)
        values = set(x) | set(y)
        if not values <= {False, True}:  # 0 and 1 compare equal to them
            raise ValueError("the McNemar test needs paired booleans (was each method right?)")
        x, y = x.astype(bool), y.astype(bool)
        from statsmodels.stats.contingency_tables import mcnemar

        table = [
            [int(np.sum(x & y)), int(np.sum(x & ~y))],
            [int(np.sum(~x & y)), int(np.sum(~x & ~y))],
        ]
        if table[0][1] + table[1][0] == 0:
            return PairedTest("mcnemar", 0.0, 1.0, int(x.size))
        res = mcnemar(table, exact=True)
        return PairedTest("mcnemar", float(res.statistic), float(res.pvalue), int(x.size))
    raise ValueError(f"`test` must be 'wilcoxon' or 'mcnemar', got {test=}")


def _paired(
    a: Sequence[Any] | np.ndarray,
    b: Sequence[Any] | np.ndarray,
    name_a: str,
    name_b: str,
    *,
    dtype,
) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=dtype).ravel(), np.asarray(b, dtype=dtype).ravel()
    if x.shape != y.shape:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must be paired (same length), got {x.size} and {y.size}"
        )
    return x, y


# ---------------------------------------------------------------------------------- Bland-Altman
@dataclass(frozen=True)
class BlandAltman:
    """Mean difference (b - a) and limits of agreement (mean +- 1.96 SD)."""

    mean_difference: float
    sd_difference: float
    loa_low: float
    loa_high: float
    n: int


def bland_altman(a: Sequence[float], b: Sequence[float], *, loa_sd: float = 1.96) -> BlandAltman:
    """Bland-Altman statistics of ``b - a`` (pairs with a ``nan`` dropped; SD with ddof=1).

    Args:
        a: the first method's values (e.g. reference Agatston scores).
        b: the second method's, paired with ``a``.
        loa_sd: the limits of agreement lie this many SDs from the mean difference.

    Returns:
        a :class:`BlandAltman` (``nan`` SD and limits with fewer than two pairs).
    """
    x, y = _paired(a, b, "a", "b", dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    d = y[keep] - x[keep]
    if d.size < 2:
        m = float(d.mean()) if d.size else math.nan
        return BlandAltman(m, math.nan, math.nan, math.nan, int(d.size))
    m, sd = float(d.mean()), float(d.std(ddof=1))
    return BlandAltman(m, sd, m - loa_sd * sd, m + loa_sd * sd, int(d.size))


def plot_bland_altman(
    a: Sequence[float],
    b: Sequence[float],
    *,
    ax=None,
    loa_sd: float = 1.96,
    unit: str = "",
    title: str | None = None,
):
    """Bland-Altman plot of ``b - a`` against the pair mean.

    Args:
        a, b, loa_sd: as for :func:`bland_altman`.
        ax: the matplotlib Axes to draw in (None: a new 5 x 4 inch figure).
        unit: the values' unit for the axis labels, e.g. "mm³" ("" for none).
        title: the Axes' title (None: none).

    Returns:
        the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    x, y = _paired(a, b, "a", "b", dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    ba = bland_altman(x, y, loa_sd=loa_sd)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    ax.scatter((x + y) / 2, y - x, s=12, alpha=0.7, color="0.2")
    suffix = f" ({unit})" if unit else ""
    ax.axhline(ba.mean_difference, color="tab:blue", label=f"mean {ba.mean_difference:.3g}")
    if math.isfinite(ba.loa_low):
        for v in (ba.loa_low, ba.loa_high):
            ax.axhline(v, color="tab:red", linestyle="--")
        ax.plot(
            [],
            [],
            color="tab:red",
            linestyle="--",
            label=f"mean ± {loa_sd:g} SD [{ba.loa_low:.3g}, {ba.loa_high:.3g}]",
        )
    ax.set_xlabel(f"mean of the two methods{suffix}")
    ax.set_ylabel(f"difference (b − a){suffix}")
    if title:
        ax.set_title(title)
    ax.legend(loc="best", fontsize="small")
    return ax
