"""Scale: do larger models solve more tasks at once and calibrate better? (paper §7)

For every model in a list and every K = 2 … max_tasks, prompts mix K tasks of one task set
uniformly (a seeded random K-subset of the set's tasks per prompt, the same prompts for every
model). Per prompt:

* ``r``: how many of the K in-context tasks' answers are among the model's K most likely complete
  outputs (beam search, :mod:`interp.topk`);
* ``kl_raw``: Σ_k D_k log(D_k / p_k), D the realised in-context shares and p the raw answer
  probabilities (the authors' ``kl_div_mean``; mass outside the K answers raises it);
* ``kl_renormalised``: the same with p renormalised over the K answers (calibration only).

The figure plots mean r / K and mean KL against parameter count, one line per K.

Python::

    from analyses.scale import ScaleOptions, model_loaders, scale
    result = scale(model_loaders(["checkpoints/from-scratch/scale/bias-add-L2-d32-h4", ...]), "bias-add",
                   n_prompts=20, seed=0, options=ScaleOptions(max_tasks=6))

CLI (:mod:`interp_app.commands.scale`)::

    interp run scale --models checkpoints/from-scratch/scale/bias-add-L2-d32-h4,...,smollm2-135m \\
        --task-set bias-add --max-tasks 6 --n-prompts 20

The paper's Qwen1.5 family (0.5B … 72B) is a list of hub ids or local HF dirs, e.g.
``--models Qwen/Qwen1.5-0.5B,Qwen/Qwen1.5-1.8B,Qwen/Qwen1.5-4B --task-set country --device cuda``
(the hub must be reachable, or pass local directories).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from interp.errors import InterpError
from interp.metrics import kl_per_prompt
from interp.models import LoadedModel, load_model
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts
from interp.tasks import get_task_set
from interp.topk import BeamConfig, topk_counts
from interp.validate import Validated, check_int


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ScaleOptions(Validated):
    """scale options"""

    tasks: list[str] = field(default_factory=list, metadata=_help("candidate tasks (default: all of the set)"))
    min_tasks: int = field(default=2, metadata=_help("smallest K"))
    max_tasks: int = field(default=0, metadata=_help("largest K (0 = number of candidate tasks)"))
    n_examples: int = field(default=20, metadata=_help("in-context examples per prompt, split evenly over the K tasks"))
    end_of_answer: str = field(default="\n", metadata=_help("text scored after every answer (the paper: newline)"))
    num_beams: int = field(default=10, metadata=_help("beams for the top-K search"))
    max_new_tokens: int = field(default=6, metadata=_help("longest output (tokens) the top-K search enumerates"))
    batch_size: int = field(default=4, metadata=_help("prompts per forward pass"))

    def _validate(self) -> None:
        check_int(self.min_tasks, "min_tasks", min=1)
        check_int(self.max_tasks, "max_tasks", min=0)
        if self.max_tasks and self.max_tasks < self.min_tasks:
            raise InterpError(f"--max-tasks {self.max_tasks} is below --min-tasks {self.min_tasks}: raise it or pass 0 (all)")
        for name in ("n_examples", "num_beams", "max_new_tokens", "batch_size"):
            check_int(getattr(self, name), name, min=1)


@dataclass
class ScaleResult:
    per_prompt: pd.DataFrame   # model, n_params, K, prompt_id, r, kl_raw, kl_renormalised, other
    summary: pd.DataFrame      # model, n_params, K, r, r_over_K, kl_raw, kl_renormalised, other
    prompts: list[Prompt] = field(default_factory=list)
    design: pd.DataFrame | None = None  # prompt_id, K, tasks
    models: dict[str, Any] = field(default_factory=dict)  # label -> model.describe()


def build_scale_prompts(task_set: str, ks: list[int], n_prompts: int, n_examples: int, tasks: list[str] | None = None,
                        seed: int = 0) -> tuple[list[Prompt], pd.DataFrame]:
    """For each K, ``n_prompts`` prompts mixing a random K-subset of ``tasks`` uniformly."""
    ts = get_task_set(task_set)
    pool = tasks or ts.task_names
    for t in pool:
        ts.task(t)
    prompts: list[Prompt] = []
    rows = []
    for k in ks:
        if k > len(pool):
            raise InterpError(f"K={k} exceeds the {len(pool)} candidate tasks: lower --max-tasks")
        if n_examples < k:
            raise InterpError(f"{n_examples} examples cannot show {k} tasks: raise --n-examples")
        for i in range(n_prompts):
            rng = random.Random(f"scale:{seed}:{k}:{i}")
            chosen = rng.sample(pool, k)
            (prompt,) = build_prompts(ts, mixture={t: 1.0 / k for t in chosen}, n_prompts=1, n_examples=n_examples,
                                      seed=rng.randrange(2**31))
            prompt.prompt_id = len(prompts)
            prompts.append(prompt)
            rows.append({"prompt_id": prompt.prompt_id, "K": k, "tasks": ",".join(chosen)})
    return prompts, pd.DataFrame(rows)


def analyse_model(model: LoadedModel, prompts: list[Prompt], design: pd.DataFrame, config: ScaleOptions,
                  show_progress: bool = True) -> pd.DataFrame:
    """Per prompt r, KL and other mass for one model."""
    scores = score_prompts(model, prompts, batch_size=config.batch_size, end_of_answer=config.end_of_answer or None,
                           show_progress=show_progress)
    beam = BeamConfig(num_beams=config.num_beams, max_new_tokens=config.max_new_tokens,
                      terminator=config.end_of_answer or "\n")
    topk = topk_counts(model, prompts, scores, beam, show_progress=show_progress)
    table = design.merge(topk[["prompt_id", "r", "p_K", "top_outputs"]], on="prompt_id")
    table["kl_raw"] = table["prompt_id"].map(kl_per_prompt(scores, renormalise=False))
    table["kl_renormalised"] = table["prompt_id"].map(kl_per_prompt(scores, renormalise=True))
    in_context = scores[scores["share"] > 0]
    table["other"] = table["prompt_id"].map(1.0 - in_context.groupby("prompt_id")["prob"].sum())
    return table


def summarize(per_prompt: pd.DataFrame) -> pd.DataFrame:
    g = per_prompt.groupby(["model", "n_params", "K"], sort=False)
    summary = g[["r", "kl_raw", "kl_renormalised", "other"]].mean().reset_index()
    summary["r_over_K"] = summary["r"] / summary["K"]
    summary["r_std"] = g["r"].std(ddof=0).to_numpy()
    return summary


def model_loaders(specs: Sequence[str], labels: Sequence[str] = (), device: str = "cpu", dtype: str = "float32"
                  ) -> dict[str, Callable[[], LoadedModel]]:
    """``{label: loader}`` for model specs (labels default to the specs' directory names)."""
    if labels and len(labels) != len(specs):
        raise InterpError(f"--labels gives {len(labels)} labels for {len(specs)} models: give one per model")
    names = list(labels) or [Path(m).name for m in specs]
    return {label: (lambda spec=spec: load_model(spec, device=device, dtype=dtype)) for label, spec in zip(names, specs)}


def scale(models: Mapping[str, Callable[[], LoadedModel]], task_set: str, n_prompts: int, seed: int,
          options: ScaleOptions, show_progress: bool = True) -> ScaleResult:
    """Evaluate every model on the same K-task prompts (one model in memory at a time).

    ``models`` maps a label to a function loading that model, so a family larger than memory
    can be evaluated; see :func:`model_loaders`.
    """
    if not models:
        raise InterpError("pass --models (comma-separated model specs or HF dirs)")
    pool = options.tasks or get_task_set(task_set).task_names
    max_k = options.max_tasks or len(pool)  # more than the pool: build_scale_prompts names the problem
    if options.min_tasks < 1 or max_k < options.min_tasks:
        raise InterpError("need 1 <= --min-tasks <= --max-tasks")
    ks = list(range(options.min_tasks, max_k + 1))
    prompts, design = build_scale_prompts(task_set, ks, n_prompts, options.n_examples, options.tasks or None, seed)
    tables = []
    described: dict[str, Any] = {}
    for label, load in models.items():
        model = load()
        described[label] = model.describe()
        table = analyse_model(model, prompts, design, options, show_progress)
        table.insert(0, "n_params", model.n_params)
        table.insert(0, "model", label)
        tables.append(table)
        del model
    per_prompt = pd.concat(tables, ignore_index=True)
    return ScaleResult(per_prompt, summarize(per_prompt), prompts, design, described)


def format_summary(summary: pd.DataFrame) -> str:
    cols = ["model", "n_params", "K", "r", "r_over_K", "kl_raw", "kl_renormalised", "other"]
    return summary[cols].to_string(index=False, float_format="%.3f")
