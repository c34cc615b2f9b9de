"""Figures of head attribution: per-head heatmaps, overlap and ablation, and the circuitsvis attention view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analyses.head_attribution import METRICS, Head, HeadAttributionResult, head_attention
from interp.models import LoadedModel
from interp.prompts import Prompt
from interp_app.figures import subplots
from interp_app.render import attention_heads_rendered


def plot_head_attribution(result: HeadAttributionResult | pd.DataFrame, by: str = "logit", title: str = "") -> Figure:
    """One layer × head heatmap per task of the mean attribution (red raises the answer)."""
    table = result.heads if isinstance(result, HeadAttributionResult) else result
    tasks = list(dict.fromkeys(table["task"]))
    L, H = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
    col = METRICS[by]
    vmax = float(table[col].abs().max()) or 1.0
    fig, axes = subplots(1, len(tasks), figsize=(1.2 + 0.45 * H * len(tasks) + 0.8, 0.8 + 0.16 * L + 0.8),
                             squeeze=False)
    im = None
    for ax, task in zip(axes[0], tasks):
        grid = np.zeros((L, H))
        sel = table[table["task"] == task]
        grid[sel["layer"].to_numpy(), sel["head"].to_numpy()] = sel[col].to_numpy()
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("head")
        ax.set_xticks(range(H))
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("layer")
    fig.colorbar(im, ax=list(axes[0]), label=f"mean {'centred logit' if by == 'logit' else 'logit-diff'} attribution")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_overlap_and_ablation(jaccard: pd.DataFrame, ablation: pd.DataFrame | None, title: str = "") -> Figure:
    """Left: Jaccard overlap of the tasks' top heads. Right (per mode): mean change of each task's
    answer log-probability (columns; nats, per prompt then averaged) when a set of heads is ablated (rows)."""
    modes = [] if ablation is None or ablation.empty else list(dict.fromkeys(ablation["mode"]))
    fig, axes = subplots(1, 1 + len(modes), figsize=(3.6 + 3.9 * len(modes), 3.3), squeeze=False)
    ax = axes[0][0]
    ax.imshow(jaccard.to_numpy(), vmin=0, vmax=1, cmap="Blues")
    tasks = list(jaccard.columns)
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, fontsize=7)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=7)
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            ax.text(j, i, f"{jaccard.iat[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("Jaccard of top-n heads", fontsize=9)
    for ax, mode in zip(axes[0][1:], modes):
        sel = ablation[ablation["mode"] == mode]
        rows = list(dict.fromkeys(sel["ablated"]))
        grid = np.array([[float(sel[(sel["ablated"] == r) & (sel["task"] == t)]["delta_logprob"].iloc[0])
                          for t in tasks] for r in rows])
        lim = max(1.0, float(np.nanmax(np.abs(grid))))
        ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(tasks)), tasks, rotation=30, fontsize=7)
        ax.set_yticks(range(len(rows)), [f"ablate {r}" for r in rows], fontsize=7)
        has_ci = "delta_logprob_ci_low" in sel.columns
        for i in range(len(rows)):
            for j in range(len(tasks)):
                text = f"{grid[i, j]:+.2f}"
                if has_ci:  # the 95 % bootstrap interval over prompts under the mean
                    rec = sel[(sel["ablated"] == rows[i]) & (sel["task"] == tasks[j])].iloc[0]
                    text += f"\n[{rec['delta_logprob_ci_low']:+.2f}, {rec['delta_logprob_ci_high']:+.2f}]"
                ax.text(j, i, text, ha="center", va="center", fontsize=6)
        ax.set_title(f"{mode}-ablation: mean Δ log P(answer) [95% CI]", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig



def attention_view(model: LoadedModel, prompt: Prompt, heads: Sequence[Head], window: int | None = None) -> Any:
    """A ``circuitsvis.attention.attention_heads`` view of ``heads`` on ``prompt`` (the pattern from
    :func:`analyses.head_attribution.head_attention`); show it with :func:`interp_app.render.show_circuitsvis`
    or write its ``.local_src`` (offline)."""
    return attention_heads_rendered(*head_attention(model, prompt, heads, window))
