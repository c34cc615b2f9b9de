"""``interp run decoding``: greedy and sampled continuations of superposed prompts, written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from analyses.decoding import DecodingOptions, DecodingResult, analyse, format_result
from interp.models import LoadedModel
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.decoding import plot_decoding
from interp_app.options import ExperimentConfig, add_dataclass_args, from_args, make_model, make_prompts, open_run


@dataclass
class DecodingConfig(ExperimentConfig, DecodingOptions):
    """``interp run decoding``: model, prompts, output and the analysis's options."""

    n_prompts: int = field(default=10, metadata={"help": "number of prompts (each decodes --n-samples continuations)"})


@dataclass
class DecodingRun(DecodingResult):
    out: Path | None = None


def run_decoding(config: DecodingConfig, show_progress: bool = True, model: LoadedModel | None = None) -> DecodingRun:
    """Build prompts, decode and score them, write tables and the figure (``model``: already loaded)."""
    prompts = make_prompts(config)
    model = model if model is not None else make_model(config)
    run = open_run(config, "decoding", model)
    save_prompts(prompts, run.file("prompts.jsonl"))
    result = analyse(model, prompts, config, show_progress=show_progress)
    run.write_csv("continuations.csv", result.continuations)
    run.write_csv("scores.csv", result.scores)
    run.write_csv("summary.csv", result.summary)
    run.write_csv("categories.csv", result.categories)
    run.write_csv("positions.csv", result.positions)
    run.write_csv("position_summary.csv", result.position_summary)
    run.write_csv("conditional.csv", result.conditional)
    run.write_csv("conditional_summary.csv", result.conditional_summary)
    run.write_json("metrics.json", result.metrics)
    run.save_figure("decoding", plot_decoding(
        result.summary, result.position_summary, result.conditional_summary,
        f"decoding · {model.name} · {config.task_set} · {len(prompts)} prompts × {config.n_samples} samples"))
    return DecodingRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_decoding(from_args(DecodingConfig, args))
    print(format_result(result))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "decoding"), "greedy and sampled continuations of superposed prompts: does the mixture survive "
            "decoding, and at which token does it collapse?", lambda p: add_dataclass_args(p, DecodingConfig), _cli_run),
]
