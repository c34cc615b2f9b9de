"""Cross-model figures drawn from a sweep's merged table (offline, no model loaded).

* ``figures/scale-<task set>``: r / K and KL against parameter count, one line per K, models of
  the sweep as the points (mean over seeds) — the paper's scale figure;
* ``figures/mixture_curve-<task set>``: P(task A), P(task B), other against the share d, one
  panel per model (mean over seeds; the interval band only when there is a single seed).

The plotting functions are the ones ``interp run scale`` / ``interp run mixture-curve`` use.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interp.io import atomic_write
from interp_app.figures.from_scratch import plot_curves
from interp_app.figures.scale import plot_scale

CURVE_COLUMNS = ("p_a", "p_b", "other")


def _save(figure, target: Path) -> list[Path]:  # noqa: ANN001 - a matplotlib Figure
    target.parent.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write(target.with_suffix(f".{ext}"), lambda tmp: figure.savefig(tmp, dpi=120, bbox_inches="tight"),
                          suffix=f".{ext}") for ext in ("png", "svg")]
    figure.clf()
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def write_figures(results: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write every cross-model figure the merged table supports under ``out/figures``; returns the files."""
    out = Path(out) / "figures"
    written: list[Path] = []
    if results.empty or "analysis" not in results.columns:
        return written
    scale = results[results["analysis"] == "scale"]
    for task_set, rows in scale.groupby("task_set", sort=False):
        summary = rows.groupby(["model", "n_params", "K"], as_index=False)[["r_over_K", "kl_raw"]].mean()
        summary["K"] = summary["K"].astype(int)  # float in the merged table (empty for other analyses)
        n_seeds = rows["seed"].nunique()
        written += _save(plot_scale(summary, f"sweep · {task_set} · {summary['model'].nunique()} models · "
                                             f"mean of {n_seeds} seed(s)"), out / f"scale-{_slug(task_set)}")
    curve_rows = results[results["analysis"] == "mixture_curve"]
    for task_set, rows in curve_rows.groupby("task_set", sort=False):
        one_seed = rows["seed"].nunique() == 1
        columns = [*CURVE_COLUMNS, *(("p_a_ci_low", "p_a_ci_high") if one_seed else ())]
        curves = {}
        for model, g in rows.groupby("model", sort=False):
            per_d = g.drop_duplicates(["seed", "d"])  # each d has one row per task, the curve repeated
            curves[Path(str(model)).name] = per_d.groupby("d", as_index=False)[columns].mean()
        title = f"sweep · {task_set} · mean of {rows['seed'].nunique()} seed(s)"
        written += _save(plot_curves(curves, title, str(task_set)), out / f"mixture_curve-{_slug(task_set)}")
    return written
