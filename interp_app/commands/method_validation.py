"""``interp run validate-methods``: every method checked against the constructed model's known mechanism."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from analyses.method_validation import MethodValidationOptions, MethodValidationResult, analyse, format_table
from interp.constructed import SPEC, model_task_set
from interp.errors import InterpError
from interp.models import LoadedModel
from interp_app.command import Command
from interp_app.options import (
    CacheOptions,
    ModelOptions,
    OutputOptions,
    add_dataclass_args,
    from_args,
    make_model,
    out_dir,
)
from interp_app.runs import RunDir


@dataclass
class MethodValidationConfig(ModelOptions, CacheOptions, OutputOptions, MethodValidationOptions):
    """``interp run validate-methods``: the constructed model, output and the validation's options."""

    model: str = field(default=SPEC, metadata={"help": f"a constructed model: {SPEC}[:k=K,alphabet=LETTERS,examples=N]"})
    cache: bool = field(default=False, metadata={"help": "read/write activations through the on-disk cache (off: the "
                                                         "model is tiny, recomputing is cheaper than storing)"})

    def _validate(self) -> None:
        if model_task_set(self.model) is None:
            raise InterpError(f"validate-methods needs a model whose mechanism is known, not {self.model!r}: "
                              f"use --model {SPEC} (options: k, alphabet, examples)")


@dataclass
class MethodValidationRun(MethodValidationResult):
    out: Path | None = None


def run_validate_methods(config: MethodValidationConfig, show_progress: bool = True,
                         model: LoadedModel | None = None) -> MethodValidationRun:
    """Run every method on the constructed model; write the method × known-truth table and each method's output."""
    model = model if model is not None else make_model(config)
    run = RunDir(out_dir(config, "validate-methods", config.model), {"analysis": "validate-methods",
                                                                     "config": asdict(config),
                                                                     "model": model.describe()},
                 overwrite=config.overwrite)
    result = analyse(model, config, show_progress=show_progress, use_cache=config.cache, cache_dir=config.cache_path())
    run.write_csv("validation.csv", result.table)
    run.write_csv("superposition_scores.csv", result.superposition)
    run.write_csv("head_ranking.csv", result.head_ranking)
    run.write_csv("ablation.csv", result.ablation)
    run.write_csv("ablation_others.csv", result.ablation_others)
    run.write_csv("lens_entry.csv", result.lens_entry)
    run.write_csv("projection.csv", result.projection)
    run.write_csv("injection.csv", result.injection)
    run.write_json("known_truth.json", asdict(result.truth))
    run.write_text("validation.txt", format_table(result.table) + "\n")
    return MethodValidationRun(**vars(result), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_validate_methods(from_args(MethodValidationConfig, args))
    print(format_table(result.table))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "validate-methods"), "run every method on the constructed superposition model and compare "
            "each finding with the known mechanism (pass/fail table)",
            lambda p: add_dataclass_args(p, MethodValidationConfig), _cli_run),
]
