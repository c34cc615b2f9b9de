"""``interp run logit-lens``: the logit lens written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from analyses.logit_lens import LogitLensOptions, LogitLensResult, analyse
from interp.models import LoadedModel
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.logit_lens import plot_logit_lens
from interp_app.options import (
    CacheOptions,
    ExperimentConfig,
    add_dataclass_args,
    from_args,
    make_model,
    make_prompts,
    open_run,
)


@dataclass
class LogitLensConfig(ExperimentConfig, CacheOptions, LogitLensOptions):
    """``interp run logit-lens``: model, prompts, cache, output and the analysis's options."""

    n_prompts: int = field(default=10, metadata={"help": "number of prompts (each costs 1 + K hooked forwards with controls)"})


@dataclass
class LogitLensRun(LogitLensResult):
    out: Path | None = None


def run_logit_lens(config: LogitLensConfig, show_progress: bool = True, model: LoadedModel | None = None) -> LogitLensRun:
    """Build prompts, run the logit lens (with controls), write tables and the figure (``model``: already loaded)."""
    prompts = make_prompts(config)
    model = model if model is not None else make_model(config)
    run = open_run(config, "logit-lens", model)
    save_prompts(prompts, run.file("prompts.jsonl"))
    result = analyse(model, prompts, config, task_set=config.task_set, show_progress=show_progress,
                     use_cache=config.cache, cache_dir=config.cache_path())
    run.write_csv("logit_lens.csv", result.table)
    run.write_csv("logit_lens_per_prompt.csv", result.rows)
    run.write_csv("entry_layers.csv", result.entry)
    run.save_figure("logit_lens", plot_logit_lens(
        result.table, f"logit lens · {model.name} · {config.task_set} · {len(prompts)} prompts"))
    return LogitLensRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_logit_lens(from_args(LogitLensConfig, args))
    print(result.entry.to_string(index=False, float_format="%.4f"))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "logit-lens"), "logit lens of every task's answer at the query position, per layer",
            lambda p: add_dataclass_args(p, LogitLensConfig), _cli_run),
]
