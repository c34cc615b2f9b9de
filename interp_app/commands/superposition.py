"""``interp run superposition``: the superposition analysis written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from analyses.superposition import SuperpositionOptions, SuperpositionResult, analyse, format_result
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.superposition import plot_summary
from interp_app.options import ExperimentConfig, add_dataclass_args, from_args, make_model, make_prompts, open_run


@dataclass
class SuperpositionConfig(ExperimentConfig, SuperpositionOptions):
    """``interp run superposition``: model, prompts, output and the analysis's options."""


@dataclass
class SuperpositionRun(SuperpositionResult):
    out: Path | None = None


def run_superposition(config: SuperpositionConfig, show_progress: bool = True) -> SuperpositionRun:
    """Build prompts, score them, and write the run directory."""
    prompts = make_prompts(config)
    model = make_model(config)
    run = open_run(config, "superposition", model)
    save_prompts(prompts, run.file("prompts.jsonl"))
    result = analyse(model, prompts, config, show_progress=show_progress)
    run.write_csv("scores.csv", result.scores)
    run.write_csv("summary.csv", result.summary)
    if result.topk is not None:
        run.write_csv("topk.csv", result.topk)
    run.write_json("metrics.json", result.metrics)
    run.save_figure("superposition", plot_summary(result.summary, f"{model.name} · {config.task_set} · {len(prompts)} prompts"))
    return SuperpositionRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_superposition(from_args(SuperpositionConfig, args))
    print(format_result(result))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "superposition"), "probability of every task's answer on superposed prompts (paper Fig. 2)",
            lambda p: add_dataclass_args(p, SuperpositionConfig), _cli_run),
]
