"""Intervals: coverage on synthetic data with a known mean, exact binomial intervals, summaries, OLS."""

import math

import numpy as np
import pandas as pd
import pytest

from interp.errors import InterpError
from interp.stats import (
    bootstrap_diff,
    bootstrap_mean,
    bootstrap_statistic,
    clopper_pearson,
    format_ci,
    ols_with_ci,
    summarise,
    with_ci_text,
)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent() -> None:
    # Skewed per-prompt values (like answer probabilities), true mean 0.3: 400 independent draws of 60 prompts.
    rng = np.random.default_rng(123)
    hits = 0
    draws = 400
    for i in range(draws):
        x = rng.beta(0.6, 1.4, size=60)  # mean 0.6 / 2.0 = 0.3
        _, lo, hi = bootstrap_mean(x, n_boot=1000, seed=i)
        hits += lo <= 0.3 <= hi
    coverage = hits / draws
    # Percentile bootstrap is slightly anti-conservative at n = 60; binomial noise at 400 draws is ±2 %.
    assert 0.89 <= coverage <= 0.99, coverage


def test_paired_difference_interval_covers_the_true_difference() -> None:
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(200):
        base = rng.uniform(0, 1, size=50)
        a = base + 0.1 + rng.normal(0, 0.05, size=50)  # true paired difference 0.1
        _, lo, hi = bootstrap_diff(a, base, paired=True, n_boot=800, seed=i)
        hits += lo <= 0.1 <= hi
    assert 0.88 <= hits / 200 <= 0.995
    # Pairing is what keeps the interval tight: the unpaired one is much wider.
    _, plo, phi = bootstrap_diff(a, base, paired=True)
    _, ulo, uhi = bootstrap_diff(a, base, paired=False)
    assert (phi - plo) < (uhi - ulo) / 3


def test_clopper_pearson_is_exact_and_conservative() -> None:
    p, lo, hi = clopper_pearson(3, 10)
    # Reference values of the exact interval (e.g. R's binom.test(3, 10)).
    assert p == pytest.approx(0.3)
    assert lo == pytest.approx(0.06673951, abs=1e-6)
    assert hi == pytest.approx(0.65245285, abs=1e-6)
    assert clopper_pearson(0, 10)[1] == 0.0 and clopper_pearson(10, 10)[2] == 1.0
    rng = np.random.default_rng(0)
    ks = rng.binomial(40, 0.2, size=500)
    coverage = np.mean([lo <= 0.2 <= hi for _, lo, hi in (clopper_pearson(int(k), 40) for k in ks)])
    assert coverage >= 0.94
    with pytest.raises(InterpError):
        clopper_pearson(11, 10)


def test_same_seed_same_interval_and_degenerate_inputs() -> None:
    x = np.linspace(0, 1, 30)
    assert bootstrap_mean(x, seed=3) == bootstrap_mean(x, seed=3)
    assert bootstrap_mean([0.4]) == (0.4, 0.4, 0.4)
    assert all(math.isnan(v) for v in bootstrap_mean([]))
    with pytest.raises(InterpError, match="level"):
        bootstrap_mean(x, level=1.5)


def test_summarise_counts_each_prompt_once() -> None:
    frame = pd.DataFrame({"prompt_id": [0, 0, 1, 2, 0, 1, 2], "task": ["a", "a", "a", "a", "b", "b", "b"],
                          "prob": [0.2, 0.4, 0.5, 0.6, 0.1, 0.1, 0.1]})
    s = summarise(frame, "prob", by=["task"]).set_index("task")
    assert list(s.columns) == ["mean", "ci_low", "ci_high", "n_prompts"]
    assert s.loc["a", "mean"] == pytest.approx((0.3 + 0.5 + 0.6) / 3)
    assert s.loc["a", "n_prompts"] == 3
    assert s.loc["b", "ci_low"] == s.loc["b", "ci_high"] == pytest.approx(0.1)
    hits = pd.DataFrame({"prompt_id": range(10), "hit": [1] * 3 + [0] * 7})
    prop = summarise(hits, "hit", proportion=True).iloc[0]
    assert (prop["mean"], prop["ci_low"]) == pytest.approx(clopper_pearson(3, 10)[:2])


def test_statistic_of_resampled_prompts() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    point, lo, hi = bootstrap_statistic(np.arange(4), lambda idx: float(np.median(values[idx])), n_boot=500)
    assert point == 2.5 and lo <= point <= hi


def test_format_ci() -> None:
    assert format_ci(0.3, 0.21, 0.39) == ".30 [.21, .39]"
    assert format_ci(-0.05, -0.1, 0.0, digits=3) == "-.050 [-.100, .000]"
    table = pd.DataFrame({"task": ["a"], "mean": [0.3], "ci_low": [0.21], "ci_high": [0.39], "n_prompts": [5]})
    assert list(with_ci_text(table)["mean [95% CI]"]) == [".30 [.21, .39]"]


def test_ols_recovers_known_coefficients_with_intervals() -> None:
    rng = np.random.default_rng(1)
    rows = []
    for pid in range(80):
        for _ in range(3):
            share, last = rng.uniform(), float(rng.uniform() < 0.5)
            rows.append({"prompt_id": pid, "share": share, "last": last, "constant": 1.0,
                         "y": 0.1 + 0.5 * share + 0.2 * last + rng.normal(0, 0.05)})
    fit = ols_with_ci(pd.DataFrame(rows), "y", ["share", "last", "constant"], n_boot=300).set_index("term")
    for term, true in (("intercept", 0.1), ("share", 0.5), ("last", 0.2)):
        assert fit.loc[term, "ci_low"] <= true <= fit.loc[term, "ci_high"]
    assert math.isnan(fit.loc["constant", "coef"])  # a predictor that never varies has no coefficient
    assert fit["n_prompts"].iloc[0] == 80
