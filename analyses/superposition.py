"""Does one forward pass put probability on every in-context task's answer? (paper, Figure 2)

For superposed prompts of one task set: the exact probability of each task's answer, its
mean / variance / sorted mean, the mass on anything else, the KL between the in-context mix
and the answer probabilities, and the top-K count ``r``.

Python::

    from analyses.superposition import SuperpositionConfig, run_superposition
    result = run_superposition(SuperpositionConfig(model="tiny-llama", task_set="ab", n_prompts=4))

CLI: ``interp run superposition --model smollm2-135m --task-set country --n-prompts 100``.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from interp.cli import Command  # noqa: E402
from interp.config import add_dataclass_args, from_args  # noqa: E402
from interp.experiment import ExperimentConfig, make_model, make_prompts, open_run  # noqa: E402
from interp.metrics import summarize_tasks, superposition_metrics  # noqa: E402
from interp.models import LoadedModel  # noqa: E402
from interp.prompts import Prompt, save_prompts  # noqa: E402
from interp.scoring import PromptState, score_prompts  # noqa: E402
from interp.topk import BeamConfig, enumerate_outputs, topk_counts  # noqa: E402

PAPER_TASK_SETS = ("add-translate", "country", "ab", "word")


@dataclass
class SuperpositionConfig(ExperimentConfig):
    topk: bool = field(default=True, metadata={"help": "compute the top-K count r by beam search"})
    num_beams: int = field(default=10, metadata={"help": "beams for the top-K search"})
    max_new_tokens: int = field(default=8, metadata={"help": "longest output (tokens) the top-K search enumerates"})
    end_of_answer: str = field(default="", metadata={"help": "text scored after every answer (e.g. a newline)"})


@dataclass
class SuperpositionResult:
    scores: pd.DataFrame
    summary: pd.DataFrame
    metrics: dict[str, Any]
    topk: pd.DataFrame | None
    out: Path | None = None


def analyse(model: LoadedModel, prompts: list, config: SuperpositionConfig, show_progress: bool = True) -> SuperpositionResult:
    """Score prompts and compute every superposition metric (no files written)."""
    beam = BeamConfig(num_beams=config.num_beams, max_new_tokens=config.max_new_tokens)
    enumerated: dict[int, dict[str, float]] = {}

    def search(prompt: Prompt, state: PromptState) -> None:
        # The top-K search reuses the scoring pass's KV cache instead of re-running the prompt.
        enumerated[prompt.prompt_id] = enumerate_outputs(model, prompt.text, beam, state=state)

    scores = score_prompts(model, prompts, batch_size=config.batch_size, end_of_answer=config.end_of_answer or None,
                           show_progress=show_progress, on_prompt=search if config.topk else None)
    summary = summarize_tasks(scores)
    metrics: dict[str, Any] = superposition_metrics(scores)
    topk = None
    if config.topk:
        topk = topk_counts(model, prompts, scores, beam, show_progress=show_progress, enumerated=enumerated)
        metrics["r"] = float(topk["r"].mean())
        metrics["K"] = int(topk["K"].max())
        metrics["beam"] = asdict(beam)
    return SuperpositionResult(scores, summary, metrics, topk)


def plot_summary(summary: pd.DataFrame, title: str) -> plt.Figure:
    """Bars of mean P(answer) per task beside the in-context share, plus the 'other' mass."""
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * (len(summary) + 1), 3.2))
    x = range(len(summary))
    ax.bar([i - 0.2 for i in x], summary["share"], width=0.4, color="#cccccc", label="in-context share")
    ax.bar([i + 0.2 for i in x], summary["mean"], width=0.4, color="#3b75af",
           yerr=summary["var"] ** 0.5, capsize=3, label="mean P(answer)")
    other = max(0.0, 1 - summary["mean"].sum())
    ax.bar([len(summary) + 0.2], [other], width=0.4, color="#d62728", label="other")
    ax.set_xticks(list(x) + [len(summary)], list(summary["task"]) + ["other"], rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def run_superposition(config: SuperpositionConfig, show_progress: bool = True) -> SuperpositionResult:
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
    fig = plot_summary(result.summary, f"{model.name} · {config.task_set} · {len(prompts)} prompts")
    run.save_figure("superposition", fig)
    plt.close(fig)
    result.out = run.path
    return result


def format_result(result: SuperpositionResult) -> str:
    table = result.summary[["task", "share", "mean", "var", "sorted_mean"]].to_string(index=False, float_format="%.4f")
    m = result.metrics
    tail = f"other={m['other']:.4f}  kl_raw={m['kl_raw']:.3f}  kl_renormalised={m['kl_renormalised']:.3f}"
    if "r" in m:
        tail += f"  r={m['r']:.2f}/{m['K']}"
    if m["boundary_mismatches"]:
        tail += f"  boundary_mismatches={m['boundary_mismatches']}"
    return f"{table}\n{tail}"


def _cli_run(args: argparse.Namespace) -> int:
    config = from_args(SuperpositionConfig, args)
    result = run_superposition(config)
    print(format_result(result))
    print(f"results: {result.out}")
    return 0


CLI_COMMANDS = [
    Command(("run", "superposition"), "probability of every task's answer on superposed prompts (paper Fig. 2)",
            lambda p: add_dataclass_args(p, SuperpositionConfig), _cli_run),
]
