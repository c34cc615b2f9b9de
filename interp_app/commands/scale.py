"""``interp run scale``: top-K count r and KL against model size, written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyses.scale import ScaleOptions, ScaleResult, format_summary, model_loaders, scale
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.scale import plot_scale
from interp_app.options import (
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
class ModelsOptions:
    """models"""

    models: list[str] = field(default_factory=list, metadata={"help": "model specs / local HF dirs, any number"})
    labels: list[str] = field(default_factory=list, metadata={"help": "one label per model (default: dir names)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda, cuda:N or auto"})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16"})


@dataclass
class ScaleConfig(ModelsOptions, TaskSetOptions, SampleOptions, OutputOptions, ScaleOptions):
    """``interp run scale``: models, task set, prompts per K, output and the analysis's options."""

    task_set: str = field(default="bias-add", metadata={"help": "task set mixed in every prompt"})
    n_prompts: int = field(default=20, metadata={"help": "prompts per K"})


@dataclass
class ScaleRun(ScaleResult):
    out: Path | None = None


def run_scale(config: ScaleConfig, show_progress: bool = True, loaded: dict[str, LoadedModel] | None = None) -> ScaleRun:
    """Evaluate every model on the same K-task prompts; write tables and the figure
    (``loaded``: spec -> model already loaded, used instead of loading that spec again)."""
    if not config.models:
        raise InterpError("pass --models (comma-separated model specs or HF dirs)")
    load_tasks_files(config.tasks_file)
    loaders = model_loaders(config.models, config.labels, config.device, config.dtype)
    for (label, _), spec in zip(list(loaders.items()), config.models):
        if loaded and spec in loaded:
            loaders[label] = lambda m=loaded[spec]: m
    run = RunDir(out_dir(config, "scale", task_set=config.task_set), {"analysis": "scale", "config": asdict(config)},
                 overwrite=config.overwrite)
    result = scale(loaders, config.task_set, config.n_prompts, config.seed, config, show_progress)
    save_prompts(result.prompts, run.file("prompts.jsonl"))
    run.write_csv("per_prompt.csv", result.per_prompt)
    run.write_csv("summary.csv", result.summary)
    run.write_json("models.json", result.models)
    run.save_figure("scale", plot_scale(result.summary, f"{config.task_set}: {config.n_prompts} prompts per K, "
                                                        f"{config.n_examples} examples"))
    return ScaleRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_scale(from_args(ScaleConfig, args))
    print(format_summary(result.summary))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "scale"), "top-K count r and KL vs model size for K = 2..max tasks (paper §7)",
            lambda p: add_dataclass_args(p, ScaleConfig), _cli_run),
]
