"""Figures of the superposition analysis: per-task bars and stacked per-prompt bars."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def plot_summary(summary: pd.DataFrame, title: str) -> Figure:
    """Bars of mean P(answer) per task beside the in-context share, plus the 'other' mass."""
    fig, ax = subplots(figsize=(1.2 + 1.1 * (len(summary) + 1), 3.2))
    x = range(len(summary))
    ax.bar([i - 0.2 for i in x], summary["share"], width=0.4, color="#cccccc", label="in-context share")
    ax.bar([i + 0.2 for i in x], summary["mean"], width=0.4, color="#3b75af",
           yerr=summary["var"] ** 0.5, capsize=3, label="mean P(answer)")
    other = max(0.0, 1 - summary["mean"].sum())
    ax.bar([len(summary) + 0.2], [other], width=0.4, color="#d62728", label="other")
    ax.set_xticks(list(x) + [len(summary)], list(summary["task"]) + ["other"], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


TASK_COLORS = ("#3b75af", "#ef8636", "#519e3e", "#c53a32", "#8d69b8", "#84584e", "#d57dbe", "#bcbc21", "#17becf", "#7f7f7f")


OTHER_COLOR = "#d9d9d9"


def plot_stacked(scores: pd.DataFrame, summary: pd.DataFrame, title: str, max_prompts: int = 12) -> Figure:
    """Stacked per-task probability bars (paper Figure 2 style): per prompt, the mean, and the in-context mix."""
    tasks = list(summary["task"])
    wide = scores.pivot(index="prompt_id", columns="task", values="prob")[tasks].head(max_prompts)
    labels = [f"p{i}" for i in wide.index] + ["mean", "in-context"]
    rows = [wide.loc[i].to_numpy() for i in wide.index] + [summary["mean"].to_numpy(), summary["share"].to_numpy()]
    fig, ax = subplots(figsize=(1.6 + 0.38 * len(labels), 3.0))
    for x, values in enumerate(rows):
        bottom = 0.0
        for k, v in enumerate(values):
            ax.bar(x, v, bottom=bottom, color=TASK_COLORS[k % len(TASK_COLORS)], width=0.8,
                   label=tasks[k] if x == 0 else None)
            bottom += float(v)
        ax.bar(x, max(0.0, 1 - bottom), bottom=bottom, color=OTHER_COLOR, width=0.8, label="other" if x == 0 else None)
    ax.axvline(len(labels) - 2.5, color="#333", lw=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(answer)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, frameon=False, bbox_to_anchor=(1.0, 1.0), loc="upper left")
    fig.tight_layout()
    return fig

