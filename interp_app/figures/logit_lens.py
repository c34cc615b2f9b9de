"""Figure of the logit lens: answer probability per layer and the median-rank heatmap."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analyses.logit_lens import SUPERPOSED
from interp_app.figures import subplots


def plot_logit_lens(table: pd.DataFrame, title: str = "") -> Figure:
    """Left: mean P per layer, one line per task with its 95 % band (solid: the whole answer,
    teacher-forced through the lens, when read; dotted: the first token only, marked "shared" when
    it is another task's first token too in some prompt; dashed: the whole answer in the task's own
    single-task control). Right: heatmap of log10 median rank of the first token, layer × task
    (superposed)."""
    sup = table[table["condition"] == SUPERPOSED]
    tasks = list(dict.fromkeys(sup["task"]))
    layers = sorted(sup["layer"].unique())
    n_layers = max(layers)
    fig, (ax, hx) = subplots(1, 2, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.1, 1]})
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, task in enumerate(tasks):
        c = colors[i % len(colors)]
        g = sup[sup["task"] == task].sort_values("layer")
        full = "answer_prob" in g.columns
        col = "answer_prob" if full else "prob"
        ax.plot(g["layer"], g[col], color=c, lw=1.8, label=f"{task}" + (" (full answer)" if full else ""))
        if f"{col}_ci_low" in g.columns:
            ax.fill_between(g["layer"], g[f"{col}_ci_low"], g[f"{col}_ci_high"], color=c, alpha=0.15, lw=0)
        if full:
            shared = "shared_first_token" in g.columns and bool(g["shared_first_token"].max() > 0)
            ax.plot(g["layer"], g["prob"], color=c, lw=1.0, ls=":",
                    label=f"{task} first token" + (" (shared: inconclusive)" if shared else ""))
        ctrl = table[(table["condition"] == f"single:{task}") & (table["task"] == task)].sort_values("layer")
        if len(ctrl):
            ax.plot(ctrl["layer"], ctrl[col], color=c, lw=1.2, ls="--", label=f"{task} (single-task)")
    ax.set_xlabel(f"layer (resid_pre; {n_layers} = final)")
    ax.set_ylabel("mean P(answer), 95% band" if "answer_prob" in sup.columns else "mean P(first answer token)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    grid = np.array([[float(sup[(sup["task"] == t) & (sup["layer"] == layer)]["median_rank"].iloc[0])
                      for layer in layers] for t in tasks])
    im = hx.imshow(np.log10(grid), aspect="auto", cmap="viridis_r", interpolation="nearest")
    hx.set_yticks(range(len(tasks)), tasks)
    step = max(1, len(layers) // 10)
    hx.set_xticks(range(0, len(layers), step), [str(layers[j]) for j in range(0, len(layers), step)])
    hx.set_xlabel("layer")
    fig.colorbar(im, ax=hx, label="log10 median rank (superposed)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

