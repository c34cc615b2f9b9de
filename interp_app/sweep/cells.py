"""One sweep cell: run the analysis's ``run_*`` function on an already-loaded model, return its tidy rows.

Each cell writes the usual run directory (the same function as ``interp run …``, so the run loop
exists once) and returns a small table — one row per task (per d point for a mixture curve, per K
for scale) with the cell's grid coordinates as leading columns. Activations never leave the worker.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from interp.errors import InterpError
from interp.models import LoadedModel, load_model
from interp_app.commands.logit_lens import run_logit_lens
from interp_app.commands.mixture_curve import run_mixture_curve
from interp_app.commands.scale import run_scale
from interp_app.commands.superposition import run_superposition
from interp_app.runs import finish_open_runs
from interp_app.sweep.spec import Cell

# Cell-level metrics of a superposition run, repeated on each of its task rows.
SUPERPOSITION_METRICS = ("other", "kl_raw", "kl_renormalised", "r", "n_tasks", "excluded_prompts")


def cell_dir(root: Path, cell: Cell) -> Path:
    return Path(root) / "cells" / cell.cell_id


def load_cell_model(cell: Cell) -> LoadedModel:
    kwargs = cell.kwargs
    return load_model(cell.model, device=kwargs["device"], dtype=kwargs["dtype"])


def _superposition_rows(cell: Cell, root: Path, model: LoadedModel) -> pd.DataFrame:
    result = run_superposition(cell.config(cell_dir(root, cell)), show_progress=False, model=model)
    rows = result.summary.copy()
    for key in SUPERPOSITION_METRICS:
        if key in result.metrics:
            rows[key] = result.metrics[key]
    return rows


def _logit_lens_rows(cell: Cell, root: Path, model: LoadedModel) -> pd.DataFrame:
    result = run_logit_lens(cell.config(cell_dir(root, cell)), show_progress=False, model=model)
    return result.entry.copy()


def _mixture_curve_rows(cell: Cell, root: Path, model: LoadedModel) -> pd.DataFrame:
    result = run_mixture_curve(cell.config(cell_dir(root, cell)), show_progress=False, loaded={cell.model: model})
    curve = result.curve.drop(columns=["model"], errors="ignore")
    # Tidy: one row per d × task (A with share d, B with share 1 - d); P as `mean`, like superposition.
    a = curve.assign(task=result.task_a, share=curve["d"], mean=curve["p_a"])
    b = curve.assign(task=result.task_b, share=1 - curve["d"], mean=curve["p_b"])
    rows = pd.concat([a, b]).sort_values(["d", "share"], ascending=[True, False], kind="stable")
    return rows.reset_index(drop=True)


def _scale_rows(cell: Cell, root: Path, model: LoadedModel) -> pd.DataFrame:
    result = run_scale(cell.config(cell_dir(root, cell)), show_progress=False, loaded={cell.model: model})
    return result.summary.drop(columns=["model"], errors="ignore").assign(task="")


RUNNERS = {"superposition": _superposition_rows, "logit_lens": _logit_lens_rows,
           "mixture_curve": _mixture_curve_rows, "scale": _scale_rows}


def run_cell(cell: Cell, root: Path, model: LoadedModel) -> pd.DataFrame:
    """Run ``cell`` into ``root/cells/<id>`` (marked complete or failed there) and return its rows."""
    try:
        rows = RUNNERS[cell.analysis](cell, Path(root), model)
    except BaseException as exc:
        finish_open_runs("failed", one_line(exc))
        raise
    finish_open_runs("complete")
    rows = rows.reset_index(drop=True)
    if "n_params" not in rows.columns:
        rows.insert(0, "n_params", model.n_params)
    for i, (key, value) in enumerate(cell.params.items()):
        rows.insert(i, key, value)
    if "task" in rows.columns:  # the task right after the grid coordinates
        rows.insert(len(cell.params), "task", rows.pop("task"))
    return rows


def one_line(exc: BaseException) -> str:
    """The one-line reason a cell failed (InterpError messages as they are; others with their type)."""
    text = " ".join(str(exc).split())[:300]
    if isinstance(exc, InterpError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
