"""Figures of the task-vector analysis: layer sweep, weights, residuals, 2-D maps, interpolation."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def plot_layer_sweep(summary: pd.DataFrame, title: str = "") -> Figure:
    """Mean P(answer) vs patched layer, one panel per mode, one line per task (dashed: baseline)."""
    modes = [(m, a) for m, a in summary[["mode", "alpha"]].drop_duplicates().itertuples(index=False) if m != "none"]
    fig, axes = subplots(1, len(modes), figsize=(3.6 * len(modes), 3.0), sharey=True, squeeze=False)
    colors = dict(zip(summary["vector_task"].unique(), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, (mode, alpha) in zip(axes[0], modes):
        for t, c in colors.items():
            s = summary[(summary["vector_task"] == t) & (summary["mode"] == mode) & (summary["alpha"] == alpha)]
            ax.plot(s["layer"], s["mean_prob"], color=c, label=t)
            if "ci_low" in s.columns:  # 95 % bootstrap interval over queries
                ax.fill_between(s["layer"], s["ci_low"], s["ci_high"], color=c, alpha=0.2)
            else:
                ax.fill_between(s["layer"], s["mean_prob"] - s["sem"], s["mean_prob"] + s["sem"], color=c, alpha=0.2)
            base = summary[(summary["vector_task"] == t) & (summary["mode"] == "none")]["mean_prob"]
            if len(base):
                ax.axhline(float(base.iloc[0]), color=c, ls="--", lw=0.8)
        ax.set_title(mode if mode == "replace" else f"{mode} α={alpha:g}", fontsize=9)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("mean P(answer), zero-shot + patch")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_weights(table: pd.DataFrame, tasks: Sequence[str], title: str = "") -> Figure:
    """Fitted weights (bars) vs in-context shares (ticks) per target at one layer."""
    fig, ax = subplots(figsize=(1.0 + 0.9 * len(table), 3.2))
    width = 0.8 / len(tasks)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, t in enumerate(tasks):
        x = np.arange(len(table)) + (k - (len(tasks) - 1) / 2) * width
        err = None
        if f"lo_w_{t}" in table.columns:  # 95 % interval from refits on prompt resamples
            err = [(table[f"w_{t}"] - table[f"lo_w_{t}"]).clip(lower=0), (table[f"hi_w_{t}"] - table[f"w_{t}"]).clip(lower=0)]
        ax.bar(x, table[f"w_{t}"], width=width, color=colors[k % len(colors)], label=f"w({t})", yerr=err, capsize=2)
        ax.scatter(x, table[f"share_{t}"], marker="_", s=200, color="black", zorder=3)
    ax.set_xticks(np.arange(len(table)), table["target"], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("weight (bars) / share (—)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_residuals(fits: pd.DataFrame, method: str = "simplex", candidates: str = "mix",
                   best: Sequence[int] = (), title: str = "", column: str = "rel_residual_spread") -> Figure:
    """Relative residual vs layer: mixes against controls; vertical lines at best layers."""
    s = fits[(fits["method"] == method) & (fits["level"] == "mean")]
    s = s[(s["candidates"] == candidates) | ((s["kind"] == "pure") & (s["candidates"] == "all"))]
    s = s.groupby(["kind", "target", "layer"])[column].first().reset_index()
    fig, ax = subplots(figsize=(5.5, 3.2))
    styles = {"pure": ("#7f7f7f", ":"), "mix": ("#1f77b4", "-"), "random_answers": ("#d62728", "--"),
              "other_task": ("#2ca02c", "-.")}
    for kind, g in s.groupby("kind"):
        color, ls = styles.get(str(kind), ("black", "-"))
        mean = g.groupby("layer")[column].mean()
        ax.plot(mean.index, mean.values, color=color, ls=ls, label=f"{kind} ({g['target'].nunique()})")
    for b in best:
        ax.axvline(b, color="black", lw=0.5, alpha=0.4)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{column} ({method})")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_projection_2d(proj: pd.DataFrame, method: str = "lda", title: str = "") -> Figure:
    """Scatter of the 2-D map per layer: fitted pure prompts (small) and mixed prompts."""
    s = proj[proj["method"] == method]
    layers = sorted(s["layer"].unique())
    fig, axes = subplots(1, len(layers), figsize=(3.0 * len(layers), 3.0), squeeze=False)
    labels = [lab for lab in s["label"].unique() if s[s["label"] == lab]["kind"].iloc[0] != "pure"]
    colors = dict(zip(labels, itertools.cycle(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])))
    for ax, layer in zip(axes[0], layers):
        for lab in labels:
            g = s[(s["layer"] == layer) & (s["label"] == lab)]
            fit = lab.startswith("fit:")
            marker = "o" if fit else ("x" if g["kind"].iloc[0] == "random_answers" else "^")
            ax.scatter(g["x"], g["y"], s=6 if fit else 12, marker=marker, color=colors[lab], alpha=0.6,
                       label=lab.removeprefix("fit:"))
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title or method.upper(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_interpolation(tv: pd.DataFrame, icl: pd.DataFrame, task_a: str, task_b: str, title: str = "") -> Figure:
    """The paper's two panels: task-vector interpolation (top) and real ICL mixing (bottom)."""
    fig, axes = subplots(2, 1, figsize=(4.6, 5.0), sharex=True)
    for ax, curve, name in ((axes[0], tv, "task-vector interpolation"), (axes[1], icl, "ICL mixture")):
        ax.stackplot(curve["lam"], curve["p_a"], curve["p_b"], curve["other"].clip(lower=0),
                     labels=[f"P({task_a})", f"P({task_b})", "other"], colors=["#1f77b4", "#ff7f0e", "#dddddd"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(name, fontsize=9)
    axes[1].set_xlabel(f"λ  ({task_a} → {task_b})")
    axes[0].legend(fontsize=7, frameon=False, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig

