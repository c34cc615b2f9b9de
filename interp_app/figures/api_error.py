"""Figure of the api-error analysis: how far API scoring is from exact in-process probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from interp_app.figures import subplots


def plot_api_error(errors: pd.DataFrame, title: str) -> Figure:
    """Left: mean |Δp| against in-process per task set (api-exact, and every beam setting).
    Middle: the beam's mean |Δp| against in-process by beam width, one line per task set × threshold.
    Right: the fraction of answers the beam never reaches, same lines."""
    ref = errors[errors["reference"] == "in-process"]
    fig, axes = subplots(1, 3, figsize=(12, 3.4))
    labels = [("api-exact" if m == "api-exact" else f"beam w={int(w)} t={t:g}")
              for m, w, t in zip(ref["method"], ref["beam_width"].fillna(0), ref["threshold"].fillna(0))]
    frame = ref.assign(label=labels)
    sets = list(dict.fromkeys(frame["task_set"]))
    kinds = list(dict.fromkeys(frame["label"]))
    width = 0.8 / max(1, len(kinds))
    for j, kind in enumerate(kinds):
        sub = frame[frame["label"] == kind].set_index("task_set").reindex(sets)
        axes[0].bar(np.arange(len(sets)) - 0.4 + width * (j + 0.5), sub["mean_abs_dp"], width=width, label=kind)
    axes[0].set_xticks(range(len(sets)), sets)
    axes[0].set_ylabel("mean |Δp| vs in-process")
    axes[0].legend(fontsize=6, frameon=False)
    beam = frame[frame["method"] == "api-beam"]
    for (task_set, threshold), sub in beam.groupby(["task_set", "threshold"], sort=False):
        sub = sub.sort_values("beam_width")
        axes[1].plot(sub["beam_width"], sub["mean_abs_dp"], marker="o", label=f"{task_set} t={threshold:g}")
        axes[2].plot(sub["beam_width"], sub["unreached_frac"], marker="o", label=f"{task_set} t={threshold:g}")
    axes[1].set_xlabel("beam width")
    axes[1].set_ylabel("beam: mean |Δp| vs in-process")
    axes[2].set_xlabel("beam width")
    axes[2].set_ylabel("answers never reached (fraction)")
    axes[2].set_ylim(0, 1)
    axes[1].legend(fontsize=6, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
