"""Figure of the decoding analysis: sampled fractions vs first-pass P, and the mixture per generated token."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def _err(frame: pd.DataFrame, prefix: str) -> list[list[float]]:
    """Asymmetric error bars (below, above) from ``{prefix}_low``/``{prefix}_high``."""
    mean = frame[prefix]
    return [list((mean - frame[f"{prefix}_low"]).clip(lower=0)), list((frame[f"{prefix}_high"] - mean).clip(lower=0))]


def plot_decoding(summary: pd.DataFrame, position_summary: pd.DataFrame, conditional_summary: pd.DataFrame,
                  title: str = "") -> Figure:
    """Left: per task, the fraction of sampled continuations that give its answer beside the
    teacher-forced first-pass P(answer) and P(answer + delimiter), the in-context share and how
    often the greedy continuation gives it (bars: 95 % intervals over prompts). Middle: per
    generated position t, the mean entropy (bits) over the tasks still consistent with the
    generated tokens, and the fraction of samples with at least two tasks left (the mixture is
    alive). Right: P(task's first token), P(answer) and P(answer | its own first token fixed):
    how much of a first token's probability reaches the full answer."""
    fig, (ax, px, cx) = subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    x = list(range(len(summary)))
    bars = (("share", "in-context share", "#e0e0e0", None), ("freq", "sampled fraction", "#3b75af", "freq"),
            ("p_task", "P(answer), first pass", "#ef8636", "p_task"),
            ("p_task_delimited", "P(answer + delimiter)", "#fdd0a2", "p_task_delimited"),
            ("greedy_rate", "greedy gives it", "#519e3e", "greedy_rate"))
    width = 0.8 / len(bars)
    for j, (col, label, color, err) in enumerate(bars):
        if col not in summary.columns:
            continue
        ax.bar([i - 0.4 + width * (j + 0.5) for i in x], summary[col], width=width, color=color, label=label,
               yerr=_err(summary, err) if err else None, capsize=2)
    ax.set_xticks(x, list(summary["task"]), rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction / probability")
    ax.legend(fontsize=6, frameon=False)
    ax.set_title("sampled vs teacher-forced", fontsize=9)
    if len(position_summary):
        p = position_summary.sort_values("position")
        px.errorbar(p["position"], p["entropy_bits"], yerr=_err(p, "entropy_bits"), marker="o", capsize=2,
                    color="#3b75af", label="entropy over consistent tasks (bits)")
        px.plot(p["position"], p["mixed_fraction"], marker="s", color="#c53a32", label="samples with >= 2 tasks left")
        px.set_xlabel("generated tokens t")
        px.set_xticks(list(p["position"]))
        px.legend(fontsize=6, frameon=False)
    px.set_title("when does the mixture collapse?", fontsize=9)
    own = conditional_summary[conditional_summary["fixed"] == "first:" + conditional_summary["task"]] \
        if len(conditional_summary) else conditional_summary
    if len(own):
        xs = list(range(len(own)))
        cx.bar([i - 0.27 for i in xs], own["p_fixed_token"], width=0.27, color="#bdbdbd", capsize=2,
               yerr=_err(own, "p_fixed_token"), label="P(its first token)")
        cx.bar(xs, own["p_task"], width=0.27, color="#ef8636", yerr=_err(own, "p_task"), capsize=2, label="P(answer)")
        cx.bar([i + 0.27 for i in xs], own["p_conditional"], width=0.27, color="#8d69b8", capsize=2,
               yerr=_err(own, "p_conditional"), label="P(answer | its first token)")
        cx.set_xticks(xs, list(own["task"]), rotation=20)
        cx.set_ylim(0, 1)
        cx.legend(fontsize=6, frameon=False)
    cx.set_title("mass that survives the first token", fontsize=9)
    fig.suptitle(title + "  (bars: 95% CI over prompts)", fontsize=9)
    fig.tight_layout()
    return fig
