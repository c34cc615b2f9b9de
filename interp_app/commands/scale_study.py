"""``interp run scale-study``: the real-model ladder × the paper's task sets, with intervals."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

from analyses.scale import model_loaders
from analyses.scale_study import ScaleStudyOptions, ScaleStudyResult, scale_study, study_prompts
from interp.prompts import save_prompts
from interp.stats import format_ci
from interp_app.command import Command
from interp_app.commands.scale import ModelsOptions
from interp_app.figures.scale_study import plot_k_sweep, plot_scale_study
from interp_app.options import OutputOptions, TasksFileOptions, add_dataclass_args, from_args, load_tasks_files, out_dir
from interp_app.runs import RunDir


@dataclass
class ScaleStudyConfig(ModelsOptions, TasksFileOptions, OutputOptions, ScaleStudyOptions):
    """``interp run scale-study``: models, task sets (built-in or from ``--tasks-file``), prompts, output."""


@dataclass
class ScaleStudyRun(ScaleStudyResult):
    out: Path | None = None


def run_scale_study(config: ScaleStudyConfig, show_progress: bool = True) -> ScaleStudyRun:
    """Every model on the same prompts of every task set; tables, figures and per-model timing."""
    load_tasks_files(config.tasks_file)
    loaders = model_loaders(config.models, config.labels, config.device, config.dtype)
    run = RunDir(out_dir(config, "scale-study"), {"analysis": "scale-study", "config": asdict(config)},
                 overwrite=config.overwrite)
    def write(result: ScaleStudyResult) -> None:
        run.write_csv("per_task.csv", result.per_task)
        run.write_csv("per_set.csv", result.per_set)
        if len(result.k_sweep):
            run.write_csv("k_sweep.csv", result.k_sweep)
            run.save_figure("k_sweep", plot_k_sweep(result.k_sweep, "r / K as the number of mixed tasks grows"))
        run.write_json("models.json", result.models)
        run.save_figure("scale_study", plot_scale_study(
            result.per_set, f"{config.n_prompts} prompts per task set, {config.examples_per_task} examples per task"))

    prompts = study_prompts(config)
    for name, (superposed, _, _) in prompts.items():
        save_prompts(superposed, run.file(f"prompts-{name}.jsonl"))
    # Tables and figures are rewritten after every model: a stopped study keeps the finished ones.
    result = scale_study(loaders, config, show_progress, on_model=write, prompts=prompts)
    return ScaleStudyRun(**vars(result), out=run.path)


def format_study(result: ScaleStudyResult) -> str:
    lines = []
    for r in result.per_set.to_dict("records"):
        tasks = result.per_task[(result.per_task["model"] == r["model"]) & (result.per_task["task_set"] == r["task_set"])]
        per_task = ", ".join(f"{t.task} {format_ci(t.mean, t.ci_low, t.ci_high)}" for t in tasks.itertuples())
        r_text = format_ci(r["r"], r["r_ci_low"], r["r_ci_high"]) if "r" in r else "-"
        lines.append(f"{r['model']:>14} {r['task_set']:>13}: {per_task}; other "
                     f"{format_ci(r['other'], r['other_ci_low'], r['other_ci_high'])}, KL "
                     f"{format_ci(r['kl_raw'], r['kl_raw_ci_low'], r['kl_raw_ci_high'])} / "
                     f"{format_ci(r['kl_renormalised'], r['kl_renormalised_ci_low'], r['kl_renormalised_ci_high'])}, "
                     f"r {r_text}/{r['K']}")
    timing = "; ".join(f"{k}: load {v['load_s']} s, {v['wall_s']} s wall, {v['cpu_s']} s CPU"
                       for k, v in result.models.items())
    return "\n".join([*lines, f"time: {timing}"])


def _cli_run(args: argparse.Namespace) -> int:
    result = run_scale_study(from_args(ScaleStudyConfig, args))
    print(format_study(result))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "scale-study"), "models × the paper's task sets: per-task P, single-task accuracy, KL, r, "
            "r/K against K — with intervals (the real-model ladder)",
            lambda p: add_dataclass_args(p, ScaleStudyConfig), _cli_run),
]
