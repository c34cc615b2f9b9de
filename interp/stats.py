"""Intervals for every mean the toolkit reports.

The unit of resampling is the *prompt*: prompts are drawn independently, while the numbers measured
on one prompt (several tasks, layers, heads) are not. So every interval here resamples prompts with
replacement (a seeded percentile bootstrap, the same resample for every row of a prompt) unless the
quantity is a proportion of independent prompts, which gets the exact Clopper–Pearson interval.

* :func:`bootstrap_mean` — mean and 95 % interval of one value per prompt.
* :func:`bootstrap_diff` — mean and interval of a difference, paired by prompt when it can be
  (same queries) and resampled within each side otherwise.
* :func:`clopper_pearson` — exact binomial interval for ``k`` successes in ``n`` trials.
* :func:`summarise` — a tidy frame (one row per prompt × group) into ``group…, mean, ci_low,
  ci_high, n_prompts``.
* :func:`bootstrap_statistic` — any statistic of a per-prompt table (KL, r, rank stability…)
  recomputed on prompt resamples.
* :func:`format_ci` — ``.30 [.21, .39]`` for summaries.

Every function takes a ``seed``; the same data and seed give the same interval, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta

from interp.errors import InterpError

LEVEL = 0.95
N_BOOT = 2000
SEED = 0
INTERVAL_COLUMNS = ("mean", "ci_low", "ci_high", "n_prompts")


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise InterpError(f"interval level {level} is outside (0, 1): use e.g. 0.95")
    return (1 - level) / 2


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = SEED) -> np.ndarray:
    """``n_boot`` bootstrap resamples of ``n`` prompts: an ``[n_boot, n]`` array of row indices."""
    if n_boot < 1:
        raise InterpError("n_boot must be at least 1")
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mean(values: Sequence[float] | np.ndarray, level: float = LEVEL, n_boot: int = N_BOOT,
                   seed: int = SEED) -> tuple[float, float, float]:
    """``(mean, ci_low, ci_high)``: the mean of one value per prompt and its percentile-bootstrap interval.

    One value: the interval is the value itself. No values: NaNs.
    """
    alpha = _check_level(level)
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1 or np.all(x == x[0]):
        return mean, mean, mean
    means = x[resample_indices(len(x), n_boot, seed)].mean(axis=1)
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return mean, float(lo), float(hi)


def bootstrap_diff(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, paired: bool = True,
                   level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), ci_low, ci_high)``.

    ``paired``: ``a[i]`` and ``b[i]`` come from the same prompt (same query, e.g. superposed vs.
    share-0), so the difference per prompt is bootstrapped, which keeps the pairing's precision.
    Unpaired: each side is resampled on its own.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if paired:
        if len(a) != len(b):
            raise InterpError(f"a paired difference needs as many values on each side ({len(a)} vs {len(b)})")
        return bootstrap_mean(a - b, level, n_boot, seed)
    alpha = _check_level(level)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan, math.nan
    diff = float(a.mean() - b.mean())
    da = a[resample_indices(len(a), n_boot, seed)].mean(axis=1)
    db = b[resample_indices(len(b), n_boot, seed + 1)].mean(axis=1)
    lo, hi = np.quantile(da - db, [alpha, 1 - alpha])
    return diff, float(lo), float(hi)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float, float]:
    """``(k/n, ci_low, ci_high)``: the exact (Clopper–Pearson) binomial interval.

    Conservative: its coverage is at least ``level`` for every true proportion.
    """
    alpha = _check_level(level)
    if n <= 0:
        return math.nan, math.nan, math.nan
    if not 0 <= k <= n:
        raise InterpError(f"{k} successes in {n} trials: k must lie in [0, n]")
    lo = 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))
    return k / n, lo, hi


def summarise(frame: pd.DataFrame, value: str, by: Sequence[str] = (), unit: str = "prompt_id",
              proportion: bool = False, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Tidy ``frame`` (one row per prompt × group) → ``by…, mean, ci_low, ci_high, n_prompts``.

    Rows of one prompt within a group are averaged first, so a prompt counts once.
    ``proportion``: ``value`` is 0/1 per prompt, and the interval is Clopper–Pearson on the count.
    Groups keep their order of first appearance.
    """
    by = list(by)
    missing = [c for c in [value, unit, *by] if c not in frame.columns]
    if missing:
        raise InterpError(f"cannot summarise: the table has no column(s) {', '.join(missing)}")
    rows = []
    groups = frame.groupby(by, sort=False) if by else [((), frame)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        per_prompt = g.groupby(unit, sort=False)[value].mean().astype(float)
        if proportion:
            ok = per_prompt.dropna()
            mean, lo, hi = clopper_pearson(int(round(ok.sum())), len(ok), level)
        else:
            mean, lo, hi = bootstrap_mean(per_prompt.to_numpy(), level, n_boot, seed)
        rows.append({**dict(zip(by, key)), "mean": mean, "ci_low": lo, "ci_high": hi,
                     "n_prompts": int(per_prompt.notna().sum())})
    return pd.DataFrame(rows, columns=[*by, *INTERVAL_COLUMNS])


def bootstrap_statistic(units: Sequence, statistic: Callable[[np.ndarray], float], level: float = LEVEL,
                        n_boot: int = N_BOOT, seed: int = SEED) -> tuple[float, float, float]:
    """``statistic(units)`` and its interval over prompt resamples.

    ``statistic`` receives an array of prompt units (ids or row indices; repeats allowed) and
    returns one number; it is evaluated on the full set and on ``n_boot`` resamples.
    """
    alpha = _check_level(level)
    units = np.asarray(units)
    if len(units) == 0:
        return math.nan, math.nan, math.nan
    point = float(statistic(units))
    boots = np.array([statistic(units[idx]) for idx in resample_indices(len(units), n_boot, seed)], dtype=float)
    lo, hi = np.nanquantile(boots, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


def _short(x: float, digits: int) -> str:
    if math.isnan(x):
        return "nan"
    text = f"{x:.{digits}f}"
    if abs(x) < 1:
        text = text.replace("0.", ".", 1)
    return text


def format_ci(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``.30 [.21, .39]`` (leading zeros dropped for |x| < 1)."""
    return f"{_short(mean, digits)} [{_short(low, digits)}, {_short(high, digits)}]"


def with_ci_text(table: pd.DataFrame, digits: int = 2, column: str = "mean [95% CI]") -> pd.DataFrame:
    """``table`` with its ``mean, ci_low, ci_high`` replaced by one text column (for printing)."""
    out = table.drop(columns=["mean", "ci_low", "ci_high"])
    text = [format_ci(m, lo, hi, digits) for m, lo, hi in zip(table["mean"], table["ci_low"], table["ci_high"])]
    position = list(table.columns).index("mean")
    out.insert(position, column, text)
    return out


def ols_with_ci(frame: pd.DataFrame, y: str, xs: Sequence[str], unit: str = "prompt_id", level: float = LEVEL,
                n_boot: int = N_BOOT, seed: int = SEED) -> pd.DataFrame:
    """Least-squares ``y ~ 1 + xs`` with intervals from a bootstrap over ``unit`` (rows of one prompt
    are resampled together, so repeated measures of one query do not narrow the interval).

    Returns ``term, coef, ci_low, ci_high, n_prompts, n_rows``; a predictor that does not vary gets NaN.
    """
    alpha = _check_level(level)
    xs = list(xs)
    data = frame[[unit, y, *xs]].dropna()
    varying = [x for x in xs if data[x].nunique() > 1]
    terms = ["intercept", *xs]
    units = data[unit].to_numpy()
    ids, inverse = np.unique(units, return_inverse=True)
    X = np.column_stack([np.ones(len(data)), *[data[x].to_numpy(float) for x in varying]])
    Y = data[y].to_numpy(float)

    def fit(rows: np.ndarray) -> np.ndarray:
        coef, *_ = np.linalg.lstsq(X[rows], Y[rows], rcond=None)
        return coef

    if len(data) == 0:
        point = np.full(len(varying) + 1, np.nan)
        lo = hi = point
    else:
        point = fit(np.arange(len(data)))
        members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
        boots = []
        for idx in resample_indices(len(ids), n_boot, seed):
            boots.append(fit(np.concatenate([members[i] for i in idx])))
        lo, hi = np.nanquantile(np.array(boots), [alpha, 1 - alpha], axis=0)
    values = dict(zip(["intercept", *varying], zip(point, lo, hi)))
    rows = []
    for term in terms:
        c, low, high = values.get(term, (math.nan, math.nan, math.nan))
        rows.append({"term": term, "coef": float(c), "ci_low": float(low), "ci_high": float(high),
                     "n_prompts": len(ids), "n_rows": len(data)})
    return pd.DataFrame(rows)
