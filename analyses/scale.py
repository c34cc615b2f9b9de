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

    from analyses.scale import ScaleConfig, run_scale
    run_scale(ScaleConfig(models=["checkpoints/from-scratch/bias-add-L2-d32-h4", ...], task_set="bias-add"))

CLI::

    interp run scale --models checkpoints/from-scratch/scale/bias-add-L2-d32-h4,...,smollm2-135m \\
        --task-set bias-add --max-tasks 6 --n-prompts 20

The paper's Qwen1.5 family (0.5B … 72B) is a list of hub ids or local HF dirs, e.g.
``--models Qwen/Qwen1.5-0.5B,Qwen/Qwen1.5-1.8B,Qwen/Qwen1.5-4B --task-set country --device cuda``
(the hub must be reachable, or pass local directories).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from interp.cli import Command  # noqa: E402
from interp.config import add_dataclass_args, from_args  # noqa: E402
from interp.errors import InterpError  # noqa: E402
from interp.metrics import kl_per_prompt  # noqa: E402
from interp.models import LoadedModel, load_model  # noqa: E402
from interp.prompts import Prompt, build_prompts, save_prompts  # noqa: E402
from interp.runs import RunDir  # noqa: E402
from interp.scoring import score_prompts  # noqa: E402
from interp.tasks import get_task_set  # noqa: E402
from interp.topk import BeamConfig, topk_counts  # noqa: E402


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class ScaleConfig:
    models: list[str] = field(default_factory=list, metadata=_help("model specs / local HF dirs, any number"))
    labels: list[str] = field(default_factory=list, metadata=_help("one label per model (default: dir names)"))
    task_set: str = field(default="bias-add", metadata=_help("task set mixed in every prompt"))
    tasks: list[str] = field(default_factory=list, metadata=_help("candidate tasks (default: all of the set)"))
    min_tasks: int = field(default=2, metadata=_help("smallest K"))
    max_tasks: int = field(default=0, metadata=_help("largest K (0 = number of candidate tasks)"))
    n_prompts: int = field(default=20, metadata=_help("prompts per K"))
    n_examples: int = field(default=20, metadata=_help("in-context examples per prompt, split evenly over the K tasks"))
    end_of_answer: str = field(default="\n", metadata=_help("text scored after every answer (the paper: newline)"))
    num_beams: int = field(default=10, metadata=_help("beams for the top-K search"))
    max_new_tokens: int = field(default=6, metadata=_help("longest output (tokens) the top-K search enumerates"))
    seed: int = field(default=0, metadata=_help("random seed (same seed, same prompts)"))
    device: str = field(default="cpu", metadata=_help("cpu, cuda, cuda:N or auto"))
    dtype: str = field(default="float32", metadata=_help("float32, bfloat16 or float16"))
    batch_size: int = field(default=4, metadata=_help("prompts per forward pass"))
    out: str = field(default="", metadata=_help("run directory (default: runs/scale-<task set>)"))
    overwrite: bool = field(default=False, metadata=_help("replace a run directory that holds a different run"))


@dataclass
class ScaleResult:
    per_prompt: pd.DataFrame   # model, n_params, K, prompt_id, r, kl_raw, kl_renormalised, other
    summary: pd.DataFrame      # model, n_params, K, r, r_over_K, kl_raw, kl_renormalised, other
    out: Path | None = None


def build_scale_prompts(task_set: str, ks: list[int], n_prompts: int, n_examples: int, tasks: list[str] | None = None,
                        seed: int = 0) -> tuple[list[Prompt], pd.DataFrame]:
    """For each K, ``n_prompts`` prompts mixing a random K-subset of ``tasks`` uniformly."""
    ts = get_task_set(task_set)
    pool = tasks or ts.task_names
    for t in pool:
        ts.task(t)
    small_inputs = task_set == "bias-add"
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
                                      seed=rng.randrange(2**31), with_replacement=small_inputs,
                                      allow_query_in_examples=small_inputs)
            prompt.prompt_id = len(prompts)
            prompts.append(prompt)
            rows.append({"prompt_id": prompt.prompt_id, "K": k, "tasks": ",".join(chosen)})
    return prompts, pd.DataFrame(rows)


def analyse_model(model: LoadedModel, prompts: list[Prompt], design: pd.DataFrame, config: ScaleConfig,
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


def plot_scale(summary: pd.DataFrame, title: str) -> plt.Figure:
    """r / K and KL (raw) against parameter count, one line per K."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.3))
    for k, g in summary.groupby("K"):
        g = g.sort_values("n_params")
        axes[0].plot(g["n_params"], g["r_over_K"], marker="o", ms=3, label=f"K={k}")
        axes[1].plot(g["n_params"], g["kl_raw"], marker="o", ms=3, label=f"K={k}")
    for ax, ylabel in zip(axes, ["r / K (task answers in top-K)", "KL(in-context mix ‖ P(answers))"]):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(ylabel)
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=6, frameon=False, ncol=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run_scale(config: ScaleConfig, show_progress: bool = True) -> ScaleResult:
    """Evaluate every model on the same K-task prompts; write tables and the figure."""
    if not config.models:
        raise InterpError("pass --models (comma-separated model specs or HF dirs)")
    if config.labels and len(config.labels) != len(config.models):
        raise InterpError(f"--labels gives {len(config.labels)} labels for {len(config.models)} models: give one per model")
    labels = config.labels or [Path(m).name for m in config.models]
    pool = config.tasks or get_task_set(config.task_set).task_names
    max_k = config.max_tasks or len(pool)
    if config.min_tasks < 1 or max_k < config.min_tasks:
        raise InterpError("need 1 <= --min-tasks <= --max-tasks")
    ks = list(range(config.min_tasks, max_k + 1))
    prompts, design = build_scale_prompts(config.task_set, ks, config.n_prompts, config.n_examples, config.tasks or None,
                                          config.seed)
    out = Path(config.out) if config.out else Path("runs") / f"scale-{config.task_set}"
    run = RunDir(out, {"analysis": "scale", "config": asdict(config)}, overwrite=config.overwrite)
    save_prompts(prompts, run.file("prompts.jsonl"))
    tables = []
    described: dict[str, Any] = {}
    for label, spec in zip(labels, config.models):
        model = load_model(spec, device=config.device, dtype=config.dtype)
        described[label] = model.describe()
        table = analyse_model(model, prompts, design, config, show_progress)
        table.insert(0, "n_params", model.n_params)
        table.insert(0, "model", label)
        tables.append(table)
        del model
    per_prompt = pd.concat(tables, ignore_index=True)
    summary = summarize(per_prompt)
    run.write_csv("per_prompt.csv", per_prompt)
    run.write_csv("summary.csv", summary)
    run.write_json("models.json", described)
    fig = plot_scale(summary, f"{config.task_set}: {config.n_prompts} prompts per K, {config.n_examples} examples")
    run.save_figure("scale", fig)
    plt.close(fig)
    return ScaleResult(per_prompt, summary, run.path)


def _cli_run(args: argparse.Namespace) -> int:
    config = from_args(ScaleConfig, args)
    result = run_scale(config)
    cols = ["model", "n_params", "K", "r", "r_over_K", "kl_raw", "kl_renormalised", "other"]
    print(result.summary[cols].to_string(index=False, float_format="%.3f"))
    print(f"results: {result.out}")
    return 0


CLI_COMMANDS = [
    Command(("run", "scale"), "top-K count r and KL vs model size for K = 2..max tasks (paper §7)",
            lambda p: add_dataclass_args(p, ScaleConfig), _cli_run),
]
