"""``interp run heads``: direct logit attribution, overlap, ablation and attention, written to a run directory."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from analyses.head_attribution import HeadsOptions, HeadsResult, analyse, check_options, format_heads
from interp.prompts import save_prompts
from interp_app.command import Command
from interp_app.figures.heads import plot_head_attribution, plot_overlap_and_ablation
from interp_app.options import (
    CacheOptions,
    ExperimentConfig,
    add_dataclass_args,
    from_args,
    make_model,
    make_prompts,
    open_run,
)
from interp_app.render import standalone_attention_html


@dataclass
class HeadAttributionConfig(ExperimentConfig, CacheOptions, HeadsOptions):
    """``interp run heads``: model, prompts, cache, output and the analysis's options."""

    n_prompts: int = field(default=10, metadata={"help": "number of prompts"})


@dataclass
class HeadsRun(HeadsResult):
    out: Path | None = None


def run_heads(config: HeadAttributionConfig, show_progress: bool = True) -> HeadsRun:
    """DLA, top heads, overlap, ablation and attention views, written to the run directory."""
    check_options(config, config.n_prompts)  # before loading anything
    prompts = make_prompts(config)
    model = make_model(config)
    run = open_run(config, "heads", model)
    save_prompts(prompts, run.file("prompts.jsonl"))
    r = analyse(model, prompts, config, config.seed, show_progress, use_cache=config.cache,
                cache_dir=config.cache_path())
    run.write_csv("attributions.csv", r.attribution.attributions)
    run.write_csv("closure.csv", r.attribution.closure)
    run.write_csv("heads.csv", r.attribution.heads)
    run.write_csv("components.csv", r.attribution.components)
    run.write_csv("head_ranking.csv", r.ranking)
    run.write_csv("jaccard.csv", r.jaccard.reset_index(names="task"))
    run.write_csv("head_membership.csv", r.membership)
    run.write_csv(f"jaccard_by_{r.other_by}.csv", r.jaccard_other.reset_index(names="task"))
    run.write_csv(f"head_membership_by_{r.other_by}.csv", r.membership_other)
    title = f"{model.name} · {config.task_set} · {len(prompts)} prompts"
    run.save_figure("head_attribution", plot_head_attribution(r.attribution, config.rank_by,
                                                              f"direct logit attribution per head · {title}"))
    if r.ablation is not None and r.ablation_scores is not None:
        run.write_csv("ablation.csv", r.ablation)
        run.write_csv("ablation_scores.csv", r.ablation_scores)
    run.save_figure("overlap_ablation", plot_overlap_and_ablation(
        r.jaccard, r.ablation, f"top-{config.top_n} heads by {config.rank_by} · {title}"))
    # Attention of every task's top heads on one real prompt (offline circuitsvis HTML).
    run.write_csv("query_attention.csv", r.query_attention)
    run.write_text("attention_top_heads.html", standalone_attention_html(*r.attention))
    return HeadsRun(**vars(r), out=run.path)


def _cli_run(args: argparse.Namespace) -> int:
    config = from_args(HeadAttributionConfig, args)
    result = run_heads(config)
    print(format_heads(result, config.top_n))
    print(f"results: {result.out}")
    return 0


COMMANDS = [
    Command(("run", "heads"), "direct logit attribution per head/MLP, top heads per task, overlap, ablation",
            lambda p: add_dataclass_args(p, HeadAttributionConfig), _cli_run),
]
