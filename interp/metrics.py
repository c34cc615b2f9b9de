"""Superposition metrics over a table of answer scores.

Input is the tidy table from :func:`interp.scoring.score_prompts` (one row per prompt × task).

* per task: mean, variance, and the *sorted mean* (row i: mean over prompts of the i-th
  largest task probability, which shows whether single prompts split their mass);
* ``other``: 1 − Σ_k mean P(answer_k);
* ``kl_raw``: mean over prompts of Σ_k D_k log(D_k / p_k), D = in-context shares, p the raw
  answer probabilities (the paper's code: not renormalised, so mass elsewhere raises it);
* ``kl_renormalised``: the same with p renormalised over the K scored answers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

EPS = 1e-30  # floor for log(p) when an answer has probability 0 in float arithmetic


def summarize_tasks(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per task: ``task, share, mean, var, sorted_mean, rank`` (task order as scored)."""
    tasks = list(dict.fromkeys(scores["task"]))
    wide = scores.pivot(index="prompt_id", columns="task", values="prob")[tasks]
    sorted_probs = -np.sort(-wide.to_numpy(), axis=1)
    shares = scores.groupby("task", sort=False)["share"].mean()
    rows = []
    for i, task in enumerate(tasks):
        rows.append({
            "task": task,
            "share": float(shares[task]),
            "mean": float(wide[task].mean()),
            "var": float(wide[task].var(ddof=0)),
            "rank": i + 1,
            "sorted_mean": float(sorted_probs[:, i].mean()),
            "boundary_mismatch": int(scores.loc[scores["task"] == task, "boundary_mismatch"].sum()),
        })
    return pd.DataFrame(rows)


def kl_per_prompt(scores: pd.DataFrame, renormalise: bool) -> pd.Series:
    """KL(shares ‖ answer probabilities) per prompt over tasks with a positive share."""

    def one(group: pd.DataFrame) -> float:
        p = group["prob"].to_numpy(dtype=float)
        d = group["share"].to_numpy(dtype=float)
        if renormalise:
            total = p.sum()
            p = p / total if total > 0 else np.full_like(p, 1.0 / len(p))
        keep = d > 0
        return float(np.sum(d[keep] * (np.log(d[keep]) - np.log(np.maximum(p[keep], EPS)))))

    return scores.groupby("prompt_id").apply(one, include_groups=False)


def superposition_metrics(scores: pd.DataFrame) -> dict[str, float]:
    """Run-level metrics: ``kl_raw``, ``kl_renormalised``, ``other``, counts."""
    means = scores.groupby("task")["prob"].mean()
    return {
        "kl_raw": float(kl_per_prompt(scores, renormalise=False).mean()),
        "kl_renormalised": float(kl_per_prompt(scores, renormalise=True).mean()),
        "other": float(1.0 - means.sum()),
        "n_prompts": int(scores["prompt_id"].nunique()),
        "n_tasks": int(scores["task"].nunique()),
        "boundary_mismatches": int(scores["boundary_mismatch"].sum()),
    }


def entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum()) if len(p) else math.nan
