"""Figures of the superposition analysis: per-task bars and stacked per-prompt bars."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def _err(summary: pd.DataFrame, prefix: str) -> list[list[float]]:
    """Asymmetric error bars (below, above) from ``{prefix}_low``/``_high`` (or ``ci_low``/``ci_high``)."""
    mean = summary[prefix if prefix != "mean" else "mean"]
    low = summary["ci_low" if prefix == "mean" else f"{prefix}_low"]
    high = summary["ci_high" if prefix == "mean" else f"{prefix}_high"]
    return [list((mean - low).clip(lower=0)), list((high - mean).clip(lower=0))]


BASELINES = (("share0", "share-0 (task absent)", "#9ecae1"), ("zero_shot", "zero-shot", "#bdbdbd"),
             ("single_task", "single-task", "#74c476"))


def plot_summary(summary: pd.DataFrame, title: str) -> Figure:
    """Per task: the in-context share, mean P(answer) with its 95 % interval and, when scored, the
    baselines on the same queries (share-0, zero-shot, single-task) with theirs; plus the 'other' mass."""
    has_ci = {"ci_low", "ci_high"} <= set(summary.columns)
    baselines = [b for b in BASELINES if b[0] in summary.columns]
    bars = 2 + len(baselines)
    width = 0.8 / bars
    fig, ax = subplots(figsize=(1.2 + (0.6 + 0.3 * bars) * (len(summary) + 1), 3.4))
    x = list(range(len(summary)))

    def at(j: int) -> list[float]:
        return [i - 0.4 + width * (j + 0.5) for i in x]

    ax.bar(at(0), summary["share"], width=width, color="#e0e0e0", label="in-context share")
    ax.bar(at(1), summary["mean"], width=width, color="#3b75af", yerr=_err(summary, "mean") if has_ci else None,
           capsize=2, label="P(answer), superposed")
    for j, (prefix, label, color) in enumerate(baselines, start=2):
        ax.bar(at(j), summary[prefix], width=width, color=color, yerr=_err(summary, prefix), capsize=2, label=label)
    other = max(0.0, 1 - summary["mean"].sum())
    ax.bar([len(summary)], [other], width=width, color="#d62728", label="other")
    ax.set_xticks(x + [len(summary)], list(summary["task"]) + ["other"], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title + ("  (bars: 95% CI over prompts)" if has_ci else ""), fontsize=9)
    ax.legend(fontsize=6, frameon=False)
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

