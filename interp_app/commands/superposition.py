"""``interp run superposition``: the superposition analysis written to a run directory."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pandas as pd

from analyses.superposition import (
    SuperpositionOptions,
    SuperpositionResult,
    analyse,
    analyse_api,
    format_result,
    seed_spread,
)
from interp.api_scoring import ApiSettings
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.superposition import plot_summary
from interp_app.options import (
    ExperimentConfig,
    add_dataclass_args,
    from_args,
    make_model,
    make_prompts,
    open_run,
    out_dir,
)
from interp_app.runs import RunDir

# How the endpoint is reached, not what it computes: a rerun may change these and still resume.
API_TRANSPORT = ("api_base", "api_key_env", "api_concurrency", "api_timeout", "api_retries", "api_backoff")
API_STORE = "api_scores.jsonl"


@dataclass
class SuperpositionConfig(ExperimentConfig, SuperpositionOptions, ApiSettings):
    """``interp run superposition``: model, prompts, output and the analysis's options."""

    seeds: list[int] = field(default_factory=list, metadata={"help": "replicate the run with these prompt seeds "
                                                                     "(e.g. 0,1,2) and report the spread between them"})


@dataclass
class SuperpositionRun(SuperpositionResult):
    out: Path | None = None
    seed_spread: pd.DataFrame | None = None


def run_superposition(config: SuperpositionConfig, show_progress: bool = True,
                      model: LoadedModel | None = None) -> SuperpositionRun:
    """Build prompts, score them, and write the run directory (``model``: already loaded from ``config``'s spec)."""
    seeds = list(dict.fromkeys(config.seeds))
    if config.seeds and len(seeds) != len(config.seeds):
        raise InterpError("--seeds names a seed twice: give each seed once, e.g. 0,1,2")
    base_seed = seeds[0] if seeds else config.seed
    prompts = make_prompts(replace(config, seed=base_seed))
    if config.api_base:
        return _run_api(config, prompts, seeds, show_progress)
    model = model if model is not None else make_model(config)
    run = open_run(config, "superposition", model)
    save_prompts(prompts, run.file("prompts.jsonl"))
    result = analyse(model, prompts, config, show_progress=show_progress)
    run.write_csv("scores.csv", result.scores)
    run.write_csv("summary.csv", result.summary)
    run.write_csv("sorted_means.csv", result.sorted_means)
    run.write_csv("conditions.csv", result.conditions)
    run.write_csv("metric_intervals.csv", result.metric_intervals)
    run.write_csv("drivers.csv", result.drivers)
    if len(result.baseline_scores):
        run.write_csv("baseline_scores.csv", result.baseline_scores)
    if result.topk is not None:
        run.write_csv("topk.csv", result.topk)
    # Replicates: new prompts per seed (the top-K search is skipped there: it only feeds r).
    spread = _seed_replicates(run, result, seeds, lambda seed: analyse(
        model, make_prompts(replace(config, seed=seed)), replace(config, topk=False), show_progress=show_progress))
    run.write_json("metrics.json", result.metrics)
    run.save_figure("superposition", plot_summary(result.summary, f"{model.name} · {config.task_set} · {len(prompts)} prompts"))
    return SuperpositionRun(**vars(result), out=run.path, seed_spread=spread)


def _seed_replicates(run: RunDir, result: SuperpositionResult, seeds: list[int],
                     score_seed: Callable[[int], SuperpositionResult]) -> pd.DataFrame | None:
    """Score each further seed's prompts; write per-seed summaries and their spread (None for one seed)."""
    if len(seeds) <= 1:
        return None
    summaries = {seeds[0]: result.summary}
    frames = [result.summary.assign(seed=seeds[0])]
    for seed in seeds[1:]:
        extra = score_seed(seed)
        summaries[seed] = extra.summary
        frames.append(extra.summary.assign(seed=seed))
    spread = seed_spread(summaries)
    run.write_csv("seed_summaries.csv", pd.concat(frames, ignore_index=True))
    run.write_csv("seed_spread.csv", spread)
    result.metrics["seeds"] = seeds
    return spread


def api_settings(config: ApiSettings) -> ApiSettings:
    """The :class:`ApiSettings` part of a command's config."""
    return ApiSettings(**{f.name: getattr(config, f.name) for f in fields(ApiSettings)})


def open_api_run(config: SuperpositionConfig, analysis: str) -> RunDir:
    """A run directory for an API-scored run: the endpoint's model instead of a loaded model, no key."""
    settings = asdict(api_settings(config))
    recorded = {k: v for k, v in asdict(config).items() if k not in API_TRANSPORT}
    return RunDir(out_dir(config, analysis, config.api_model, config.task_set),
                  {"analysis": analysis, "config": recorded,
                   "model": {"name": config.api_model, "served_by": "OpenAI-compatible /v1/completions",
                             "scoring": f"api-{config.api_method}"},
                   "api_transport": {k: settings[k] for k in API_TRANSPORT}},
                  overwrite=config.overwrite)


def _run_api(config: SuperpositionConfig, prompts: list, seeds: list[int], show_progress: bool) -> SuperpositionRun:
    """Score through the endpoint: answers already in the run's store are not asked again."""
    settings = api_settings(config)
    run = open_api_run(config, "superposition")
    save_prompts(prompts, run.file("prompts.jsonl"))
    store = run.file(API_STORE)
    result = analyse_api(prompts, config, settings, store, show_progress=show_progress)
    for name in ("scores", "summary", "sorted_means", "conditions", "metric_intervals", "drivers"):
        run.write_csv(f"{name}.csv", getattr(result, name))
    if len(result.baseline_scores):
        run.write_csv("baseline_scores.csv", result.baseline_scores)
    spread = _seed_replicates(run, result, seeds, lambda seed: analyse_api(
        make_prompts(replace(config, seed=seed)), config, settings, store, show_progress=show_progress))
    run.write_json("metrics.json", result.metrics)
    title = f"{config.api_model} (API, {config.api_method}) · {config.task_set} · {len(prompts)} prompts"
    run.save_figure("superposition", plot_summary(result.summary, title))
    return SuperpositionRun(**vars(result), out=run.path, seed_spread=spread)


def _cli_run(args: argparse.Namespace) -> int:
    result = run_superposition(from_args(SuperpositionConfig, args))
    print(format_result(result))
    if result.seed_spread is not None:
        cols = ["task", "n_seeds", "mean_over_seeds", "std_between_seeds", "min", "max"]
        print("between seeds (mean P per seed):")
        print(result.seed_spread[cols].to_string(index=False, float_format="%.4f"))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "superposition"), "probability of every task's answer on superposed prompts (paper Fig. 2)",
            lambda p: add_dataclass_args(p, SuperpositionConfig), _cli_run),
]
