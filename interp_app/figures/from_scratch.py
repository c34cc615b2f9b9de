"""Figure of the from-scratch mixture curves, with the authors' logged curve beside ours."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from analyses.from_scratch import PAPER_BIAS_ADD_CURVE, PAPER_COPY_CURVE
from interp_app.figures import subplots


def plot_curves(curves: dict[str, pd.DataFrame], title: str, task_set: str) -> Figure:
    """Stack plot (P(A), P(B), other) per model, with the authors' logged curve beside it."""
    n = len(curves)
    fig, axes = subplots(1, n + (1 if n > 1 else 0), figsize=(3.6 * (n + (1 if n > 1 else 0)), 3.3), squeeze=False)
    # The authors' logged curve exists only for their from-scratch task sets.
    paper = {"retrieval": PAPER_COPY_CURVE, "bias-add": PAPER_BIAS_ADD_CURVE}.get(task_set)
    paper_label = "authors' copy run (h=2,6)" if task_set == "retrieval" else "authors' bias_add_simple run"
    for ax, (label, curve) in zip(axes[0], curves.items()):
        ax.stackplot(curve["d"], curve["p_a"], curve["p_b"], curve["other"].clip(lower=0),
                     labels=["P(task A)", "P(task B)", "other"], colors=["#3b75af", "#ef8636", "#cccccc"], alpha=0.85)
        if {"p_a_ci_low", "p_a_ci_high"} <= set(curve.columns):
            # 95 % interval of mean P(task A) over prompts: a band around the A/B boundary.
            ax.fill_between(curve["d"], curve["p_a_ci_low"], curve["p_a_ci_high"], color="k", alpha=0.18, lw=0,
                            label="95% CI of P(task A)")
        if paper is not None:
            ax.plot(paper["d"], paper["p_a"], "k--", lw=1.2, label=paper_label)
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("share d of task A in context")
        ax.set_ylabel("model probability")
        ax.set_title(label, fontsize=9)
    axes[0][0].legend(fontsize=6, frameon=False, loc="upper left")
    if n > 1:
        ax = axes[0][-1]
        for label, curve in curves.items():
            ax.plot(curve["d"], curve["p_a"], marker="o", ms=3, label=label)
            if {"p_a_ci_low", "p_a_ci_high"} <= set(curve.columns):
                ax.fill_between(curve["d"], curve["p_a_ci_low"], curve["p_a_ci_high"], alpha=0.2, lw=0)
        if paper is not None:
            ax.plot(paper["d"], paper["p_a"], "k--", lw=1.2, label=paper_label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("share d of task A")
        ax.set_ylabel("P(task A)")
        ax.set_title("P(task A), all models", fontsize=9)
        ax.legend(fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

