"""Does one forward pass put probability on every in-context task's answer? (paper, Figure 2)

For superposed prompts of one task set: the exact probability of each task's answer, its
mean / variance / sorted mean, the mass on anything else, the KL between the in-context mix
and the answer probabilities, and the top-K count ``r``.

Python::

    from analyses.superposition import SuperpositionOptions, analyse
    result = analyse(model, prompts, SuperpositionOptions(num_beams=5))

CLI (:mod:`interp_app.commands.superposition`):
``interp run superposition --model smollm2-135m --task-set country --n-prompts 100``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from interp.metrics import summarize_tasks, superposition_metrics
from interp.models import LoadedModel
from interp.prompts import Prompt
from interp.scoring import PromptState, score_prompts
from interp.topk import BeamConfig, enumerate_outputs, topk_counts

PAPER_TASK_SETS = ("add-translate", "country", "ab", "word")


@dataclass
class SuperpositionOptions:
    """superposition options"""

    topk: bool = field(default=True, metadata={"help": "compute the top-K count r by beam search"})
    num_beams: int = field(default=10, metadata={"help": "beams for the top-K search"})
    max_new_tokens: int = field(default=8, metadata={"help": "longest output (tokens) the top-K search enumerates"})
    end_of_answer: str = field(default="", metadata={"help": "text scored after every answer (e.g. a newline)"})
    batch_size: int = field(default=1, metadata={"help": "prompts per forward pass (1 is fastest on CPU)"})


@dataclass
class SuperpositionResult:
    scores: pd.DataFrame
    summary: pd.DataFrame
    metrics: dict[str, Any]
    topk: pd.DataFrame | None


def analyse(model: LoadedModel, prompts: list[Prompt], options: SuperpositionOptions,
            show_progress: bool = True) -> SuperpositionResult:
    """Score prompts and compute every superposition metric (no files written)."""
    beam = BeamConfig(num_beams=options.num_beams, max_new_tokens=options.max_new_tokens)
    enumerated: dict[int, dict[str, float]] = {}

    def search(prompt: Prompt, state: PromptState) -> None:
        # The top-K search reuses the scoring pass's KV cache instead of re-running the prompt.
        enumerated[prompt.prompt_id] = enumerate_outputs(model, prompt.text, beam, state=state)

    scores = score_prompts(model, prompts, batch_size=options.batch_size, end_of_answer=options.end_of_answer or None,
                           show_progress=show_progress, on_prompt=search if options.topk else None)
    summary = summarize_tasks(scores)
    metrics: dict[str, Any] = superposition_metrics(scores)
    topk = None
    if options.topk:
        topk = topk_counts(model, prompts, scores, beam, show_progress=show_progress, enumerated=enumerated)
        metrics["r"] = float(topk["r"].mean())
        metrics["K"] = int(topk["K"].max())
        metrics["beam"] = asdict(beam)
    return SuperpositionResult(scores, summary, metrics, topk)


def format_result(result: SuperpositionResult) -> str:
    """The summary table and the metrics line, as text."""
    table = result.summary[["task", "share", "mean", "var", "sorted_mean"]].to_string(index=False, float_format="%.4f")
    m = result.metrics
    tail = f"other={m['other']:.4f}  kl_raw={m['kl_raw']:.3f}  kl_renormalised={m['kl_renormalised']:.3f}"
    if "r" in m:
        tail += f"  r={m['r']:.2f}/{m['K']}"
    if m["boundary_mismatches"]:
        tail += f"  boundary_mismatches={m['boundary_mismatches']}"
    return f"{table}\n{tail}"
