"""``interp run task-vectors``: extraction, layer sweep, projection and interpolation, written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from analyses.task_vectors import TaskVectorOptions, TaskVectorResult, analyse, format_result, save_vectors
from interp_app.command import Command
from interp_app.figures.task_vectors import (
    plot_interpolation,
    plot_layer_sweep,
    plot_projection_2d,
    plot_residuals,
    plot_weights,
)
from interp_app.options import (
    CacheOptions,
    ModelOptions,
    OutputOptions,
    SampleOptions,
    SeparatorOptions,
    TaskSetOptions,
    add_dataclass_args,
    from_args,
    make_model,
    open_run,
    resolve_task_set,
)


@dataclass
class TaskVectorConfig(ModelOptions, TaskSetOptions, SampleOptions, SeparatorOptions, CacheOptions, OutputOptions,
                       TaskVectorOptions):
    """``interp run task-vectors``. ``--n-prompts`` is prompts per task / mixture / λ and ``--n-examples``
    the in-context examples of *every* prompt (there is no ``--mixture``: the analysis builds its own mixes)."""


@dataclass
class TaskVectorRun(TaskVectorResult):
    out: Path | None = None


def task_vector_figures(r: TaskVectorResult, title: str) -> dict:
    """Every figure of the analysis, by file name."""
    tasks = r.vectors.tasks
    tv = r.interp_curves[r.interp_curves["kind"] == "task_vector"]
    icl = r.interp_curves[r.interp_curves["kind"] == "icl"]
    return {
        "layer_sweep": plot_layer_sweep(r.sweep_summary, title),
        "weights": plot_weights(r.weights, tasks, f"{title} · simplex weights at layer {r.layer}"),
        "residuals": plot_residuals(r.fits, best=sorted(set(r.best["best_layer"].astype(int))), title=title),
        "projection_lda": plot_projection_2d(r.proj2d, "lda", f"{title} · LDA on pure-task prompts"),
        "projection_pca": plot_projection_2d(r.proj2d, "pca", f"{title} · PCA on pure-task prompts"),
        "interpolation": plot_interpolation(tv, icl, r.interp_summary["task_a"], r.interp_summary["task_b"],
                                            f"{title} · layer {r.interp_summary['layer']}"),
    }


def run_task_vectors(config: TaskVectorConfig, show_progress: bool = True) -> TaskVectorRun:
    """Run the whole analysis and write the run directory (tables stage by stage, figures, vectors)."""
    task_set = resolve_task_set(config)
    model = make_model(config)
    run = open_run(config, "task-vectors", model)
    r = analyse(model, task_set, config.n_prompts, config.seed, config, config.separator, show_progress,
                use_cache=config.cache, cache_dir=config.cache_path(), on_table=run.write_csv)
    save_vectors(r.vectors, run.file("task_vectors.safetensors"), {"model": model.name, "task_set": config.task_set})
    run.write_csv("interpolation.csv", r.interp_curves)
    run.write_csv("interpolation_scores.csv", r.interp_scores)
    run.write_json("metrics.json", {"analysis_layer": r.layer, "interpolation": r.interp_summary,
                                    "best_layers": r.best.to_dict(orient="records")})
    for name, fig in task_vector_figures(r, f"{model.name} · {config.task_set}").items():
        run.save_figure(name, fig)
    return TaskVectorRun(**vars(r), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_task_vectors(from_args(TaskVectorConfig, args))
    print(format_result(result))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "task-vectors"), "task vectors: layer sweep, projection of mixes, interpolation (paper §6)",
            lambda p: add_dataclass_args(p, TaskVectorConfig), _cli_run),
]
