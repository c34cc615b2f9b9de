"""The scale study on real models: models × task sets, with intervals (paper §3, Figures 2 and 7).

For every model (loaded one at a time) and every task set, on the *same* prompts for every model:

* **superposition** at the set's default mix (every task 1/K): each task's mean P(full answer)
  with a 95 % bootstrap interval over prompts, the other mass, KL raw and renormalised and the
  top-K count ``r`` (each with its interval) — :func:`analyses.superposition.analyse`;
* **single-task accuracy** on the same queries (only that task's examples shown): mean P(full
  answer) with its interval, and the share of prompts whose answer has P > 1/2 (so greedy
  decoding outputs it) with an exact binomial interval;
* **how many tasks in parallel**: r / K and KL as the number of mixed tasks K grows from 2 to the
  set's size — :func:`analyses.scale.scale`.

Python::

    from analyses.scale import model_loaders
    from analyses.scale_study import ScaleStudyOptions, scale_study
    result = scale_study(model_loaders(["smollm2-135m", "qwen2.5-0.5b"]), ScaleStudyOptions(n_prompts=20))

CLI (:mod:`interp_app.commands.scale_study`)::

    interp run scale-study --models smollm2-135m,gemma3-270m,qwen2.5-0.5b,qwen2.5-1.5b
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analyses.scale import ScaleOptions, build_scale_prompts
from analyses.scale import analyse_model as k_sweep_model
from analyses.superposition import PAPER_TASK_SETS, SuperpositionOptions
from analyses.superposition import analyse as superposition
from interp.baselines import baseline_prompts
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts
from interp.stats import bootstrap_mean, clopper_pearson
from interp.tasks import get_task_set
from interp.validate import Validated, check_int


@dataclass
class ScaleStudyOptions(Validated):
    """scale-study options"""

    task_sets: list[str] = field(default_factory=lambda: list(PAPER_TASK_SETS),
                                 metadata={"help": "task sets to study (default: the paper's four)"})
    n_prompts: int = field(default=20, metadata={"help": "superposed prompts per task set"})
    examples_per_task: int = field(default=20, metadata={"help": "in-context examples per task (the paper: 20)"})
    k_prompts: int = field(default=10, metadata={"help": "prompts per K in the K sweep (0: no sweep)"})
    k_examples: int = field(default=40, metadata={"help": "examples per prompt in the K sweep, split over the K tasks"})
    num_beams: int = field(default=10, metadata={"help": "beams for the top-K search"})
    max_new_tokens: int = field(default=8, metadata={"help": "longest output (tokens) the top-K search enumerates"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples for every interval"})
    seed: int = field(default=0, metadata={"help": "prompt seed (the same prompts for every model)"})

    def _validate(self) -> None:
        if not self.task_sets:
            raise InterpError("--task-sets is empty: name at least one task set")
        for name in self.task_sets:
            get_task_set(name)  # unknown names fail here, before any model is loaded
        for name in ("n_prompts", "examples_per_task", "num_beams", "max_new_tokens", "n_boot", "k_examples"):
            check_int(getattr(self, name), name, min=1)
        check_int(self.k_prompts, "k_prompts", min=0)


@dataclass
class ScaleStudyResult:
    """``per_task``: model × task set × task — P superposed and single-task with intervals;
    ``per_set``: model × task set — other, KL raw/renormalised, r with intervals;
    ``k_sweep``: model × task set × K — r / K and KL (means with intervals);
    ``models``: label → description and timing (load, wall and CPU seconds)."""

    per_task: pd.DataFrame
    per_set: pd.DataFrame
    k_sweep: pd.DataFrame
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    prompts: dict[str, list[Prompt]] = field(default_factory=dict)


def study_prompts(options: ScaleStudyOptions) -> dict[str, tuple[list[Prompt], list[Prompt], pd.DataFrame]]:
    """Per task set: the superposed prompts, the K-sweep prompts and their design (fixed by the seed)."""
    out = {}
    for name in options.task_sets:
        ts = get_task_set(name)
        prompts = build_prompts(ts, n_prompts=options.n_prompts, examples_per_task=options.examples_per_task,
                                seed=options.seed)
        sweep, design = [], pd.DataFrame()
        tasks = list(ts.default_tasks or ts.task_names)
        if options.k_prompts and len(tasks) >= 2:
            sweep, design = build_scale_prompts(name, list(range(2, len(tasks) + 1)), options.k_prompts,
                                                options.k_examples, tasks, options.seed)
        out[name] = (prompts, sweep, design)
    return out


def _single_task(model: LoadedModel, prompts: list[Prompt], options: ScaleStudyOptions) -> pd.DataFrame:
    rows = []
    for condition, group in baseline_prompts(prompts, zero_shot=False, share0=False, single=True).items():
        task = condition.split(":", 1)[1]
        scores = score_prompts(model, group, show_progress=False)
        probs = scores.loc[scores["task"] == task, "prob"].to_numpy()
        mean, lo, hi = bootstrap_mean(probs, n_boot=options.n_boot, seed=options.seed)
        hits = int((probs > 0.5).sum())
        acc, alo, ahi = clopper_pearson(hits, len(probs))
        rows.append({"task": task, "single_mean": mean, "single_ci_low": lo, "single_ci_high": hi,
                     "single_p_gt_half": acc, "single_p_gt_half_ci_low": alo, "single_p_gt_half_ci_high": ahi})
    return pd.DataFrame(rows)


def _study_model(model: LoadedModel, label: str, prompts: dict[str, tuple[list[Prompt], list[Prompt], pd.DataFrame]],
                 options: ScaleStudyOptions, show_progress: bool) -> tuple[list[pd.DataFrame], list[dict], list[pd.DataFrame]]:
    sp_options = SuperpositionOptions(num_beams=options.num_beams, max_new_tokens=options.max_new_tokens,
                                      baselines=False, n_boot=options.n_boot)
    per_task, per_set, sweeps = [], [], []
    for name, (superposed, sweep, design) in prompts.items():
        result = superposition(model, superposed, sp_options, show_progress=show_progress)
        conditions = result.conditions
        sup = conditions[conditions["condition"] == "superposed"][["task", "mean", "ci_low", "ci_high", "n_prompts"]]
        table = sup.merge(_single_task(model, superposed, options), on="task", how="left")
        table.insert(0, "task_set", name)
        per_task.append(table)
        row: dict[str, Any] = {"task_set": name, "K": len(superposed[0].answers), "n_prompts": len(superposed)}
        for rec in result.metric_intervals.to_dict("records"):
            metric = rec["metric"]
            row[metric] = rec["mean"]
            row[f"{metric}_ci_low"] = rec["ci_low"]
            row[f"{metric}_ci_high"] = rec["ci_high"]
        per_set.append(row)
        if sweep:
            k_options = ScaleOptions(n_examples=options.k_examples, end_of_answer="", num_beams=options.num_beams,
                                     max_new_tokens=options.max_new_tokens, batch_size=1)
            k_table = k_sweep_model(model, sweep, design, k_options, show_progress)
            k_table.insert(0, "task_set", name)
            sweeps.append(k_table)
    for frame in (*per_task, *sweeps):
        frame.insert(0, "n_params", model.n_params)
        frame.insert(0, "model", label)
    for row in per_set:
        row.update({"model": label, "n_params": model.n_params})
    return per_task, per_set, sweeps


def summarise_sweep(per_prompt: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per model × task set × K: r / K and KL means with bootstrap intervals over prompts."""
    rows = []
    for (model, n_params, task_set, k), g in per_prompt.groupby(["model", "n_params", "task_set", "K"], sort=False):
        row: dict[str, Any] = {"model": model, "n_params": n_params, "task_set": task_set, "K": k, "n_prompts": len(g)}
        for col, values in (("r_over_K", g["r"] / k), ("kl_raw", g["kl_raw"]), ("kl_renormalised", g["kl_renormalised"])):
            mean, lo, hi = bootstrap_mean(values.to_numpy(), n_boot=n_boot, seed=seed)
            row.update({col: mean, f"{col}_ci_low": lo, f"{col}_ci_high": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def scale_study(models: Mapping[str, Callable[[], LoadedModel]], options: ScaleStudyOptions,
                show_progress: bool = True,
                on_model: Callable[[ScaleStudyResult], None] | None = None,
                prompts: dict[str, tuple[list[Prompt], list[Prompt], pd.DataFrame]] | None = None) -> ScaleStudyResult:
    """Run the study; one model is in memory at a time (``models`` maps a label to a loader).

    ``on_model`` receives the result so far after each model (the app writes it, so a long study
    that is stopped keeps every finished model). ``prompts``: :func:`study_prompts` of ``options``
    when the caller already built them.
    """
    if not models:
        raise InterpError("pass --models (comma-separated model specs or HF dirs)")
    prompts = prompts if prompts is not None else study_prompts(options)
    per_task, per_set, sweeps = [], [], []
    described: dict[str, dict[str, Any]] = {}
    for label, load in models.items():
        wall, cpu = time.perf_counter(), time.process_time()
        model = load()
        load_s = time.perf_counter() - wall
        t, s, k = _study_model(model, label, prompts, options, show_progress)
        per_task += t
        per_set += s
        sweeps += k
        described[label] = {**model.describe(), "load_s": round(load_s, 1),
                            "wall_s": round(time.perf_counter() - wall, 1),
                            "cpu_s": round(time.process_time() - cpu, 1)}
        del model
        gc.collect()
        result = _collect(per_task, per_set, sweeps, described, prompts, options)
        if on_model is not None:
            on_model(result)
    return result


def _collect(per_task: list[pd.DataFrame], per_set: list[dict], sweeps: list[pd.DataFrame],
             described: dict[str, dict[str, Any]], prompts: dict[str, tuple[list[Prompt], list[Prompt], pd.DataFrame]],
             options: ScaleStudyOptions) -> ScaleStudyResult:
    k_sweep = summarise_sweep(pd.concat(sweeps, ignore_index=True), options.n_boot, options.seed) if sweeps \
        else pd.DataFrame()
    return ScaleStudyResult(pd.concat(per_task, ignore_index=True), pd.DataFrame(per_set), k_sweep, dict(described),
                            {name: p for name, (p, _, _) in prompts.items()})
