"""``interp report --sweep DIR``: an offline HTML page comparing a sweep's models and mixtures.

Everything is drawn from the sweep's merged table (``results.parquet``) and its cell states — no
model is loaded, so the page can be rebuilt at any time, also while the sweep is still running
(it then shows the cells finished so far and says how many are missing).

Intervals: a cell's own interval is a bootstrap over its prompts. Where a sweep has several seeds,
the page averages the seeds' means and its interval is a bootstrap over seeds (the seeds are
independent prompt samples), which the page says beside every such table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from interp.errors import InterpError
from interp.stats import bootstrap_mean, format_ci
from interp_app.figures.from_scratch import plot_curves
from interp_app.figures.scale import plot_scale
from interp_app.figures.scale_study import plot_scale_study
from interp_app.render import Page, esc, failure_box, figure_img, note, table_html
from interp_app.runs import RunDir, write_table
from interp_app.sweep.engine import sweep_status
from interp_app.sweep.figures import CURVE_COLUMNS

# Per-cell columns of the superposition rows that describe the whole cell (repeated on each task row).
CELL_MEASURES = ("other", "kl_raw", "kl_renormalised", "r")


@dataclass
class SweepReport:
    index: Path
    tables: list[Path]
    missing_cells: int


def _over_seeds(values: pd.Series) -> tuple[float, float, float]:
    """Mean of one value per seed, with a bootstrap interval over seeds (the value itself for one seed)."""
    return bootstrap_mean(values.to_numpy(dtype=float))


def superposition_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × task set × mixture × task: P(answer) as ``mean [lo, hi]``.

    One seed: the cell's bootstrap interval over prompts. Several: mean of the seed means, interval
    over seeds.
    """
    out = []
    keys = ["model", "n_params", "task_set", "mixture", "task"]
    for key, g in rows.groupby(keys, sort=False):
        if g["seed"].nunique() == 1:
            mean, lo, hi = float(g["mean"].iloc[0]), float(g["ci_low"].iloc[0]), float(g["ci_high"].iloc[0])
        else:
            mean, lo, hi = _over_seeds(g["mean"])
        out.append({**dict(zip(keys, key)), "share": float(g["share"].iloc[0]), "seeds": g["seed"].nunique(),
                    "n_prompts": int(g["n_prompts"].sum()), "mean": mean, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(out)


def cell_measures(rows: pd.DataFrame) -> pd.DataFrame:
    """Per model × task set × mixture: other mass, KL raw / renormalised and r, mean over seeds with
    intervals over seeds (no interval with one seed: the cell stores these as point values)."""
    cells = rows.drop_duplicates("cell_id")
    out = []
    keys = ["model", "n_params", "task_set", "mixture"]
    for key, g in cells.groupby(keys, sort=False):
        record = {**dict(zip(keys, key)), "K": int(g["n_tasks"].iloc[0]), "seeds": g["seed"].nunique()}
        for col in CELL_MEASURES:
            mean, lo, hi = _over_seeds(g[col])
            record.update({col: mean, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        out.append(record)
    return pd.DataFrame(out)


def _text_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    shown.insert(list(shown.columns).index("mean"), "P [95% CI]",
                 [format_ci(m, lo, hi, 3) for m, lo, hi in zip(shown["mean"], shown["ci_low"], shown["ci_high"])])
    return shown.drop(columns=["mean", "ci_low", "ci_high"])


def _measures_text(measures: pd.DataFrame) -> pd.DataFrame:
    shown = measures[["model", "n_params", "task_set", "mixture", "K", "seeds"]].copy()
    for col in CELL_MEASURES:
        shown[col] = [format_ci(m, lo, hi, 3) if s > 1 else f"{m:.3f}"
                      for m, lo, hi, s in zip(measures[col], measures[f"{col}_ci_low"],
                                              measures[f"{col}_ci_high"], measures["seeds"])]
    return shown


def _interval_note(rows: pd.DataFrame) -> str:
    seeds = rows["seed"].nunique()
    if seeds == 1:
        return note("One seed: P's interval is the cell's 95 % bootstrap over its prompts; other, KL and r are "
                    "point values.")
    return note(f"{seeds} seeds: each value is the mean of the seed means, its 95 % interval a bootstrap over seeds.")


def _grid_section(sweep_dir: Path, status: pd.DataFrame) -> str:
    counts = status["state"].value_counts()
    spec = {}
    try:
        spec = json.loads((sweep_dir / "sweep.json").read_text())
    except (OSError, ValueError):
        pass
    summary = pd.DataFrame([{"what": k, "values": ", ".join(map(str, v)) if isinstance(v, list) else str(v)}
                            for k, v in spec.items() if k in ("models", "task_sets", "seeds", "device", "dtype")])
    line = ", ".join(f"{int(counts.get(k, 0))} {label}" for k, label in
                     (("complete", "done"), ("running", "running"), ("failed", "failed"), ("todo", "to do")))
    body = f"<p>{esc(str(len(status)))} cells: {esc(line)}. Source: <code>{esc(sweep_dir.resolve())}</code></p>"
    if len(summary):
        body += table_html(summary)
    failed = status[status["state"] == "failed"]
    if len(failed):
        body += "<h3>Failed cells</h3>" + table_html(failed[["cell_id", "attempts", "error"]], max_rows=100)
    return body


def build_sweep_report(sweep_dir: str | Path, out: str | Path | None = None, overwrite: bool = False) -> SweepReport:
    """Write ``out/index.html`` (default ``DIR/report``) and its CSV tables from a sweep directory."""
    sweep_dir = Path(sweep_dir)
    status, _ = sweep_status(sweep_dir)  # refuses a directory that is not a sweep, in one line
    results_file = sweep_dir / "results.parquet"
    if not results_file.is_file():
        raise InterpError(f"{sweep_dir} has no results.parquet yet: run `interp sweep run … --out {sweep_dir}` "
                          "until at least one cell is done")
    try:
        results = pd.read_parquet(results_file)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same fix
        raise InterpError(f"{results_file} cannot be read ({type(exc).__name__}): rerun `interp sweep run` on "
                          f"{sweep_dir} to rebuild it") from None
    out = Path(out) if out is not None else sweep_dir / "report"
    run = RunDir(out, {"analysis": "sweep-report", "sweep": str(sweep_dir.resolve())}, overwrite=overwrite)
    page = Page(f"Sweep report · {sweep_dir.name}",
                intro=note("Drawn from the sweep's merged table; no model was loaded. Tables link their full CSV."))
    page.add("Grid", _grid_section(sweep_dir, status))
    tables: list[Path] = []

    def add_table(name: str, frame: pd.DataFrame, shown: pd.DataFrame | None = None) -> str:
        """Write the numeric ``frame`` as ``name.csv`` (+ Parquet); show ``shown`` (default: the same) on the page."""
        tables.extend(write_table(run.file(f"{name}.csv"), frame))
        return table_html(frame if shown is None else shown, max_rows=60, csv_name=f"{name}.csv")

    sup = results[results["analysis"] == "superposition"]
    if len(sup):
        per_task, measures = superposition_table(sup), cell_measures(sup)
        body = _interval_note(sup) + add_table("superposition", per_task, _text_table(per_task))
        body += "<h3>Per cell: other mass, KL, r</h3>" + add_table("superposition_cells", measures,
                                                                    _measures_text(measures))
        uniform = measures[measures["mixture"] == "uniform"]
        if uniform["model"].nunique() > 1:
            fig = plot_scale_study(uniform, "uniform mix: r / K and KL against parameters, one line per task set")
            body += figure_img(fig, "Across models at the uniform mix (the paper's scale view); error bars only "
                                    "with several seeds.")
        page.add("Superposition across models", body)

    scale = results[results["analysis"] == "scale"]
    if len(scale):
        body = note("r / K and KL as the number of mixed tasks K grows; mean over seeds.")
        summary = scale.groupby(["model", "n_params", "task_set", "K"], as_index=False)[
            ["r_over_K", "kl_raw", "kl_renormalised", "other"]].mean()
        summary["K"] = summary["K"].astype(int)
        body += add_table("scale", summary)
        for task_set, g in summary.groupby("task_set", sort=False):
            body += figure_img(plot_scale(g, f"{task_set}: r / K and KL against parameters, one line per K"),
                               f"{task_set}")
        page.add("Tasks in parallel (K)", body)

    curves = results[results["analysis"] == "mixture_curve"]
    if len(curves):
        body = note("P(task A), P(task B) and other as A's in-context share d goes 0 → 1; one panel per model; "
                    "mean over seeds (interval band only with one seed).")
        per_d = curves.drop_duplicates(["cell_id", "d"])
        body += add_table("mixture_curves", per_d.groupby(["model", "task_set", "d"], as_index=False)[
            list(CURVE_COLUMNS)].mean())
        for task_set, rows in curves.groupby("task_set", sort=False):
            one_seed = rows["seed"].nunique() == 1
            columns = [*CURVE_COLUMNS, *(("p_a_ci_low", "p_a_ci_high") if one_seed else ())]
            panels = {Path(str(model)).name: g.drop_duplicates(["seed", "d"]).groupby("d", as_index=False)[
                columns].mean() for model, g in rows.groupby("model", sort=False)}
            body += figure_img(plot_curves(panels, f"{task_set}: mixture curves", str(task_set)), str(task_set))
        page.add("Mixture curves per model", body)

    lens = results[results["analysis"] == "logit_lens"]
    if len(lens):
        cols = [c for c in ("first_layer_top10", "final_median_rank", "final_prob") if c in lens.columns]
        summary = lens.groupby(["model", "task_set", "mixture", "condition", "task"], as_index=False, sort=False)[
            cols].mean()
        page.add("Logit lens across models", note("Mean over seeds: the first layer where the answer is in the "
                                                  "top 10, its final median rank and probability.")
                 + add_table("logit_lens", summary))

    if not (len(sup) or len(scale) or len(curves) or len(lens)):
        page.add("Results", failure_box("no finished cell of an analysis this page draws (superposition, scale, "
                                        "mixture_curve, logit_lens)"), failed=True)
    missing = int((status["state"] != "complete").sum())
    index = page.write(run.file("index.html"))
    run.set_status("complete")
    return SweepReport(index, tables, missing)
