"""Figure of the scale analysis: r / K and KL against parameter count."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def plot_scale(summary: pd.DataFrame, title: str) -> Figure:
    """r / K and KL (raw) against parameter count, one line per K."""
    fig, axes = subplots(1, 2, figsize=(8.4, 3.3))
    for k, g in summary.groupby("K"):
        g = g.sort_values("n_params")
        axes[0].plot(g["n_params"], g["r_over_K"], marker="o", ms=3, label=f"K={k}")
        axes[1].plot(g["n_params"], g["kl_raw"], marker="o", ms=3, label=f"K={k}")
    for ax, ylabel in zip(axes, ["r / K (task answers in top-K)", "KL(in-context mix ‖ P(answers))"]):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(ylabel)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=6, frameon=False, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

