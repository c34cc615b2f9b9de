"""``interp run api-error``: the paper's API method (and exact API scoring) against in-process probabilities."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields

from analyses.api_error import ApiErrorOptions, ApiErrorResult, analyse, headline
from interp.api_scoring import ApiSettings
from interp.prompts import save_prompts
from interp.tasks import get_task_set
from interp_app.command import Command
from interp_app.commands.superposition import API_STORE, API_TRANSPORT
from interp_app.figures.api_error import plot_api_error
from interp_app.options import (
    MixtureOptions,
    ModelOptions,
    OutputOptions,
    SampleOptions,
    SeparatorOptions,
    TasksFileOptions,
    add_dataclass_args,
    from_args,
    load_tasks_files,
    make_model,
    make_prompts,
    out_dir,
)
from interp_app.runs import RunDir


@dataclass
class ApiErrorConfig(ModelOptions, TasksFileOptions, SampleOptions, MixtureOptions, SeparatorOptions, OutputOptions,
                     ApiErrorOptions, ApiSettings):
    """``interp run api-error``: the in-process model, the server serving the same weights, the grid."""

    n_prompts: int = field(default=8, metadata={"help": "prompts per task set", "min": 1})


@dataclass
class ApiErrorRun(ApiErrorResult):
    out: object = None


def run_api_error(config: ApiErrorConfig, show_progress: bool = True) -> ApiErrorRun:
    load_tasks_files(config.tasks_file)
    prompts = {name: make_prompts(config, task_set=get_task_set(name)) for name in config.task_sets}
    settings = ApiSettings(**{f.name: getattr(config, f.name) for f in fields(ApiSettings)})
    if not settings.api_base:
        from interp.errors import InterpError

        raise InterpError("api-error compares against a server: pass --api-base URL and --api-model NAME")
    model = make_model(config)
    recorded = {k: v for k, v in asdict(config).items() if k not in API_TRANSPORT}
    run = RunDir(out_dir(config, "api-error", config.model, "-".join(config.task_sets)),
                 {"analysis": "api-error", "config": recorded, "model": model.describe(),
                  "api_transport": {k: getattr(config, k) for k in API_TRANSPORT}}, overwrite=config.overwrite)
    for name, group in prompts.items():
        save_prompts(group, run.file(f"prompts-{name}.jsonl"))
    result = analyse(model, prompts, settings, config, store_path=run.file(API_STORE), show_progress=show_progress)
    run.write_csv("scores.csv", result.scores)
    run.write_csv("errors.csv", result.errors)
    run.write_csv("headline.csv", headline(result.errors))
    run.write_json("metrics.json", result.metrics)
    title = f"{model.name} in-process vs {config.api_model} served · {config.n_prompts} prompts per task set"
    run.save_figure("api_error", plot_api_error(result.errors, title))
    return ApiErrorRun(**vars(result), out=run.path)


def format_errors(result: ApiErrorResult) -> str:
    cols = ["task_set", "method", "reference", "beam_width", "threshold", "mean_abs_dp", "max_abs_dp", "mean_abs_dkl",
            "mean_abs_dkl_reached", "unreached_frac", "n_rows"]
    return result.errors[cols].to_string(index=False, float_format="%.4g")


def _cli_run(args: argparse.Namespace) -> int:
    result = run_api_error(from_args(ApiErrorConfig, args))
    print(format_errors(result))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "api-error"), "error of API scoring (the paper's top-k beam, exact echo) against in-process "
            "probabilities on the same weights", lambda p: add_dataclass_args(p, ApiErrorConfig), _cli_run),
]
