"""``interp run mixture-curve``: P(task A), P(task B), other as the share d of task A varies, written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from analyses.from_scratch import (
    MixtureCurveOptions,
    MixtureCurveResult,
    curve_pair,
    format_curve,
    mixture_curve,
    resolve_task_set,
)
from interp.errors import InterpError
from interp.models import LoadedModel, load_model
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.from_scratch import plot_curves
from interp_app.options import (
    ModelOptions,
    OutputOptions,
    SampleOptions,
    TaskSetOptions,
    add_dataclass_args,
    from_args,
    load_tasks_files,
    out_dir,
)
from interp_app.runs import RunDir


@dataclass
class MixtureCurveConfig(ModelOptions, TaskSetOptions, SampleOptions, OutputOptions, MixtureCurveOptions):
    """``interp run mixture-curve``: one or more models, the two-task mix, output."""

    fallback_task_set: ClassVar[str] = ""  # "": the model's training task set (resolved when the model is read)

    model: str = field(default="", metadata={"help": "model spec or local HF dir (e.g. a checkpoints/from-scratch/... dir)"})
    compare: list[str] = field(default_factory=list, metadata={"help": "more models evaluated on the same prompts and overlaid"})
    labels: list[str] = field(default_factory=list, metadata={"help": "legend labels for --model and --compare models"})
    task_set: str = field(default="", metadata={"help": "any task set, e.g. retrieval, bias-add, country, or one from "
                                                        "--tasks-file (default: the model's training task set)"})
    n_prompts: int = field(default=50, metadata={"help": "prompts per share d"})


@dataclass
class MixtureCurveRun(MixtureCurveResult):
    out: Path | None = None


def _labels(config: MixtureCurveConfig) -> list[str]:
    specs = [config.model, *config.compare]
    if config.labels and len(config.labels) != len(specs):
        raise InterpError(f"--labels gives {len(config.labels)} labels for {len(specs)} models: give one per model")
    return config.labels or [Path(s).name for s in specs]


def curve_figure_title(result: MixtureCurveResult, n_prompts: int, sampling: str) -> str:
    return (f"{result.task_set}: task A={result.task_a}, B={result.task_b}, {result.n_examples} examples, "
            f"{n_prompts} prompts/d ({sampling})")


def curves_by_model(result: MixtureCurveResult) -> dict:
    return {label: g.drop(columns="model") for label, g in result.curve.groupby("model", sort=False)}


def run_mixture_curve(config: MixtureCurveConfig, show_progress: bool = True,
                      loaded: dict[str, LoadedModel] | None = None) -> MixtureCurveRun:
    """Build the mixed prompts, score every model, write tables, acceptance and the figure
    (``loaded``: spec -> model already loaded, used instead of loading that spec again)."""
    if not config.model:
        raise InterpError("pass --model (e.g. checkpoints/from-scratch/retrieval-L4-d128-h8)")
    load_tasks_files(config.tasks_file)
    task_set, n_examples = resolve_task_set(config.model, config.task_set, config.n_examples)
    labels = _labels(config)
    loaded = loaded or {}
    models = {label: loaded[spec] if spec in loaded else load_model(spec, device=config.device, dtype=config.dtype)
              for label, spec in zip(labels, [config.model, *config.compare])}
    task_a, task_b = curve_pair(task_set, config)
    run = RunDir(out_dir(config, "mixture-curve", labels[0]), {
        "analysis": "mixture-curve", "config": asdict(config), "task_set": task_set,
        "task_a": task_a, "task_b": task_b, "n_examples": n_examples,
        "models": {k: m.describe() for k, m in models.items()}}, overwrite=config.overwrite)
    result = mixture_curve(models, task_set, config.n_prompts, n_examples, config.seed, config, show_progress)
    save_prompts(result.prompts, run.file("prompts.jsonl"))
    run.write_csv("curve.csv", result.curve)
    run.write_csv("per_prompt.csv", result.per_prompt)
    run.write_json("acceptance.json", result.acceptance)
    run.save_figure("mixture_curve", plot_curves(curves_by_model(result),
                                                 curve_figure_title(result, config.n_prompts, config.sampling),
                                                 task_set))
    return MixtureCurveRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_mixture_curve(from_args(MixtureCurveConfig, args))
    print(format_curve(result.curve))
    for label, checks in result.acceptance.items():
        print(f"{label}: acceptance {'PASSED' if checks['passed'] else 'FAILED'} {checks}")
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "mixture-curve"), "P(task A), P(task B), other as the share d of task A varies (paper §4)",
            lambda p: add_dataclass_args(p, MixtureCurveConfig), _cli_run),
]
