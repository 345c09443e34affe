"""Agreement statistics against hand-computed and published values."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest

from calcscore.stats import (
    bland_altman,
    bootstrap_ci,
    confusion_matrix,
    icc_2_1,
    paired_test,
    plot_bland_altman,
    risk_category_agreement,
    weighted_kappa,
)

matplotlib.use("Agg")


def test_linear_kappa_by_hand():
    # weights 1 - |i-j|/3. Observed weighted agreement (4 + 2 x 2/3) / 6 = 8/9; marginals ref
    # (2, 2, 1, 1), pred (1, 2, 2, 1) give expected 22/36 = 11/18; kappa = (8/9 - 11/18) / (7/18) = 5/7.
    ref = ["I", "I", "II", "II", "III", "IV"]
    pred = ["I", "II", "II", "III", "III", "IV"]
    k = weighted_kappa(ref, pred)
    assert k.kappa == pytest.approx(5 / 7)
    assert k.n == 6 and k.agreement == pytest.approx(4 / 6)
    assert k.ci_low == pytest.approx(k.kappa - 1.959964 * k.std_error, rel=1e-6)
    assert k.ci_high == 1.0  # the Wald interval (5/7 + 1.96 x 0.185 > 1) is clipped at 1


def test_kappa_counts_unused_categories_in_the_weights():
    # categories I-IV, only I and II used: po = (1 + 2/3 + 1)/3 = 8/9, pe = 22/27, kappa = 2/5
    assert weighted_kappa(["I", "I", "II"], ["I", "II", "II"]).kappa == pytest.approx(0.4)


def test_kappa_perfect_and_undefined():
    assert weighted_kappa(["I", "II", "IV"], ["I", "II", "IV"]).kappa == pytest.approx(1.0)
    k = weighted_kappa(["II", "II", "II"], ["II", "II", "II"])  # no expected disagreement
    assert math.isnan(k.kappa) and math.isnan(k.ci_low) and k.agreement == 1.0
    one = weighted_kappa(["I"], ["II"])  # a single disagreeing pair: kappa 0, SE 0, no warning
    assert (one.kappa, one.ci_low, one.ci_high) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="not among the categories"):
        weighted_kappa(["I", "V"], ["I", "I"])
    with pytest.raises(ValueError, match="paired"):
        weighted_kappa(["I"], ["I", "II"])


def test_confusion_matrix_reference_rows():
    cm = confusion_matrix(["I", "I", "III"], ["II", "I", "IV"])
    assert list(cm.index) == ["I", "II", "III", "IV"] and cm.index.name == "reference"
    assert cm.loc["I", "II"] == 1 and cm.loc["I", "I"] == 1 and cm.loc["III", "IV"] == 1
    assert cm.to_numpy().sum() == 3


def test_risk_category_agreement_from_scores():
    table, k = risk_category_agreement([0, 10, 11, 150, 2000], [5, 12, 11, 1000, 1001])
    # categories ref I I II III IV, pred I II II III IV
    assert table.loc["I", "I"] == 1 and table.loc["I", "II"] == 1 and table.loc["IV", "IV"] == 1
    assert k.agreement == pytest.approx(4 / 5)


def test_icc_shrout_fleiss_example():
    # Shrout & Fleiss (1979), Table 2: 6 targets, 4 judges; published ICC(2,1) = 0.29.
    ratings = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    )
    r = icc_2_1(ratings)
    assert r.icc == pytest.approx(0.29, abs=0.005)
    assert r.ci_low < r.icc < r.ci_high
    assert (r.n_targets, r.n_raters) == (6, 4)


def test_icc_penalises_a_constant_bias():
    # b = a + 1: MSR 5, MSC 2.5, MSE 0 -> ICC(A,1) = 5 / (5 + 2 x 2.5 / 5) = 5/6 (consistency would be 1)
    a = np.arange(1.0, 6.0)
    assert icc_2_1(np.column_stack([a, a + 1])).icc == pytest.approx(5 / 6)
    assert icc_2_1(np.column_stack([a, a])).icc == pytest.approx(1.0)
    assert math.isnan(icc_2_1(np.array([[1.0, 2.0]])).icc)  # one target: undefined


def test_bootstrap_ci_of_a_mean():
    data = np.random.default_rng(0).normal(10.0, 2.0, 200)
    r = bootstrap_ci(np.mean, data, n_resamples=1000, rng=1)
    assert r.estimate == pytest.approx(data.mean())
    half = 1.96 * data.std(ddof=1) / math.sqrt(data.size)
    assert r.ci_low < r.estimate < r.ci_high
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_ci(np.mean, data, n_resamples=200, rng=5) == bootstrap_ci(
        np.mean, data, n_resamples=200, rng=5
    )


def test_bootstrap_keeps_pairs_together():
    a = np.arange(50.0)
    r = bootstrap_ci(lambda x, y: float(np.mean(y - x)), a, a + 3.0, n_resamples=100, rng=0)
    assert (r.estimate, r.ci_low, r.ci_high) == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="one value per scan"):
        bootstrap_ci(np.mean, a, a[:10])


def test_wilcoxon_exact_p_value_by_hand():
    # all six differences positive and distinct: P(W- = 0) = 1/64, two-sided 2/64
    a = np.arange(1.0, 7.0)
    r = paired_test(a + np.array([0.5, 1, 1.5, 2, 2.5, 3]), a)
    assert r.test == "wilcoxon" and r.n == 6
    assert r.p_value == pytest.approx(2 / 64)
    assert math.isnan(paired_test(a, a).p_value)  # no differences: undefined


def test_mcnemar_exact_p_value_by_hand():
    # A right and B wrong on 6 scans, the reverse on none, 4 concordant: p = 2 x 0.5^6
    a = [True] * 10
    b = [False] * 6 + [True] * 4
    r = paired_test(a, b, test="mcnemar")
    assert r.p_value == pytest.approx(2 * 0.5**6)
    assert paired_test(a, a, test="mcnemar").p_value == 1.0
    with pytest.raises(ValueError, match="booleans"):
        paired_test([0.5, 2.0], [1.0, 1.0], test="mcnemar")


def test_bland_altman_by_hand():
    # d = b - a = (1, 2, 0, 2): mean 1.25, SD sqrt(2.75 / 3)
    ba = bland_altman([1, 2, 3, 4, math.nan], [2, 4, 3, 6, 1])
    sd = math.sqrt(2.75 / 3)
    assert (
        ba.n == 4
        and ba.mean_difference == pytest.approx(1.25)
        and ba.sd_difference == pytest.approx(sd)
    )
    assert (ba.loa_low, ba.loa_high) == (
        pytest.approx(1.25 - 1.96 * sd),
        pytest.approx(1.25 + 1.96 * sd),
    )


def test_plot_bland_altman_draws_mean_and_limits():
    import matplotlib.pyplot as plt

    ax = plot_bland_altman([1, 2, 3, 4], [2, 4, 3, 6], unit="mm3", title="volume")
    ys = sorted(round(line.get_ydata()[0], 6) for line in ax.get_lines() if len(line.get_ydata()))
    sd = math.sqrt(2.75 / 3)
    assert ys == [round(1.25 - 1.96 * sd, 6), 1.25, round(1.25 + 1.96 * sd, 6)]
    assert ax.get_title() == "volume"
    plt.close(ax.figure)
