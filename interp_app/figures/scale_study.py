"""Figures of the scale study: KL and r against parameter count, one line per task set; r / K against K."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def _errorbars(ax: object, x: np.ndarray, frame: pd.DataFrame, col: str, label: str) -> None:
    y = frame[col].to_numpy()
    err = np.vstack([y - frame[f"{col}_ci_low"].to_numpy(), frame[f"{col}_ci_high"].to_numpy() - y])
    ax.errorbar(x, y, yerr=np.clip(err, 0, None), marker="o", ms=4, capsize=3, label=label)  # type: ignore[attr-defined]


def plot_scale_study(per_set: pd.DataFrame, title: str = "") -> Figure:
    """r / K and KL (raw and renormalised) at the full default mix against parameter count (log x),
    one line per task set, 95 % intervals as error bars (the paper's Figure 7 view)."""
    fig, axes = subplots(1, 3, figsize=(13, 3.6))
    data = per_set.copy()
    data["r_over_K"] = data["r"] / data["K"]
    for suffix in ("ci_low", "ci_high"):
        data[f"r_over_K_{suffix}"] = data[f"r_{suffix}"] / data["K"]
    for task_set, g in data.groupby("task_set", sort=False):
        g = g.sort_values("n_params")
        x = g["n_params"].to_numpy(dtype=float)
        for ax, col in zip(axes, ("r_over_K", "kl_raw", "kl_renormalised")):
            _errorbars(ax, x, g, col, str(task_set))
    for ax, ylabel in zip(axes, ("r / K (answers among the K most likely outputs)", "KL raw (mass elsewhere counts)",
                                 "KL renormalised over the K answers")):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_k_sweep(k_sweep: pd.DataFrame, title: str = "") -> Figure:
    """r / K against the number of mixed tasks K, one panel per task set, one line per model."""
    sets = list(dict.fromkeys(k_sweep["task_set"]))
    fig, axes = subplots(1, max(1, len(sets)), figsize=(3.4 * max(1, len(sets)), 3.2), squeeze=False)
    for ax, task_set in zip(axes[0], sets):
        g = k_sweep[k_sweep["task_set"] == task_set]
        for model, m in g.groupby("model", sort=False):
            m = m.sort_values("K")
            _errorbars(ax, m["K"].to_numpy(dtype=float), m, "r_over_K", str(model))
        ax.set_title(task_set, fontsize=9)
        ax.set_xlabel("K tasks mixed")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("r / K")
    axes[0][0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
