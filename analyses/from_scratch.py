"""Superposition in models trained from scratch on one task per prompt (paper §4).

Two commands:

* ``interp train``: train a small Llama model on ``retrieval`` or ``bias-add`` prompts that each
  hold examples of exactly one task (library code: :mod:`interp.training`), then evaluate its
  mixture curve (:func:`evaluate_trained`) and write ``eval_summary.json`` next to the model.
* ``interp run mixture-curve``: mix two tasks A and B with share d ∈ {0, 0.1, …, 1} of task A in
  context and measure P(task A answer), P(task B answer) and the mass elsewhere ("other"), each
  answer scored with its terminating newline as the authors do, with 95 % bootstrap intervals per
  point and the per-prompt split (sorted means p_top/p_second, split entropy). Works for any model
  (a from-scratch checkpoint, ``smollm2-135m``, a local HF directory) and any task set, built-in or
  from ``--tasks-file``: ``interp run mixture-curve --model smollm2-135m --task-set country
  --pair capital,upper --d 0,0.25,0.5,0.75,1``. The figure is a stack plot with the authors'
  logged curve drawn beside ours where we hold one (``retrieval``, ``bias-add``).

Sampling of the mix: ``--sampling exact`` (default) gives each prompt exactly round(d·n) examples of
task A; ``--sampling binomial`` draws each example's task independently (task A with probability d),
as the authors' evaluation does. Either way the shares recorded per prompt are the realised ones.

Python::

    from analyses.from_scratch import MixtureCurveOptions, mixture_curve, resolve_task_set
    task_set, n_examples = resolve_task_set("checkpoints/from-scratch/retrieval-L4-d64-h4")
    result = mixture_curve({"m": load_model(...)}, task_set, n_prompts=50, n_examples=n_examples, seed=0,
                           options=MixtureCurveOptions())
    result.curve  # d, p_a, p_b, other

CLI (:mod:`interp_app.commands.mixture_curve`, :mod:`interp_app.commands.train`)::

    interp train --preset cpu-retrieval --out runs/train-retrieval
    interp run mixture-curve --model checkpoints/from-scratch/retrieval-L4-d128-h8 --n-prompts 50
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from interp.errors import InterpError
from interp.models import LoadedModel
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts
from interp.stats import bootstrap_mean, format_ci
from interp.tasks import get_task_set
from interp.validate import Validated, check_choice, check_float, check_int

# The authors' logged copy (retrieval) curve, tasks h = (2, 6), uniform one-task training, 100 examples
# per prompt (run_summaries.json; see docs/../shared/reference/paper.md §4.4). d = 0 and 1 put ≥ 0.9999
# on the in-context task.
PAPER_COPY_CURVE = pd.DataFrame({
    "d": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "p_a": [0.0, .009, .036, .133, .299, .489, .685, .844, .935, .990, 1.0],
    "other": [0.0, .000, .005, .005, .005, .004, .006, .006, .003, .001, 0.0],
})
PAPER_BIAS_ADD_CURVE = pd.DataFrame({
    "d": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "p_a": [0.0, .114, .202, .299, .408, .492, .618, .690, .803, .899, 1.0],
})
DEFAULT_SHARES = [round(0.1 * i, 1) for i in range(11)]


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class MixtureCurveOptions(Validated):
    """mixture-curve options"""

    task_a: str = field(default="", metadata=_help("task A (default: ret2 for retrieval as the authors; random pair per prompt for bias-add)"))
    task_b: str = field(default="", metadata=_help("task B (default: ret6 / random)"))
    pair: str = field(default="", metadata=_help("tasks A and B as A,B (same as --task-a A --task-b B), e.g. capital,upper"))
    shares: list[float] = field(default_factory=lambda: list(DEFAULT_SHARES), metadata=_help("shares d of task A"))
    d: list[float] = field(default_factory=list, metadata=_help("shares d of task A, e.g. 0,0.5,1 (overrides --shares)"))
    n_boot: int = field(default=2000, metadata=_help("bootstrap resamples of prompts for the intervals"))
    n_examples: int = field(default=0, metadata=_help("in-context examples per prompt (0 = the model's training value, else 20)"))
    sampling: str = field(default="exact", metadata=_help("exact (round(d·n) examples of A) or binomial (each example A with prob. d, as the authors)"))
    end_of_answer: str = field(default="\n", metadata=_help("text scored after every answer (the paper: a newline)"))
    batch_size: int = field(default=8, metadata=_help("prompts per forward pass"))

    def _validate(self) -> None:
        for d in [*self.shares, *self.d]:
            check_float(d, "shares", min=0, max=1)
        check_int(self.n_boot, "n_boot", min=1)
        check_int(self.n_examples, "n_examples", min=0)
        check_int(self.batch_size, "batch_size", min=1)
        check_choice(self.sampling, "sampling", ("exact", "binomial"))


@dataclass
class MixtureCurveResult:
    curve: pd.DataFrame           # one row per model × d: p_a, p_b, other (+ std)
    per_prompt: pd.DataFrame      # one row per model × prompt
    acceptance: dict[str, Any]    # per model: the acceptance checks
    task_set: str = ""
    task_a: str = ""
    task_b: str = ""
    n_examples: int = 0
    prompts: list[Prompt] = field(default_factory=list)


def training_info(model_dir: str | Path) -> dict[str, Any]:
    """The ``training_config.json`` of a model trained by ``interp train`` ({} otherwise)."""
    path = Path(model_dir) / "training_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def default_pair(task_set: str) -> tuple[str, str]:
    """Tasks A and B a mixture curve mixes by default: the set's ``default_pair``, else a random pair per prompt."""
    ts = get_task_set(task_set)
    if len(ts.tasks) < 2:
        raise InterpError(f"task set {task_set!r} has fewer than two tasks: a mixture curve mixes two")
    return ts.default_pair or ("random", "random")


def from_scratch_checkpoints(root: str | Path = Path("checkpoints") / "from-scratch") -> list[Path]:
    """Shipped from-scratch models: the directories directly under ``root`` holding a ``training_config.json``
    (the ``scale/`` and ``ablations/`` families are shown elsewhere or on request)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob("*/training_config.json"))


def resolve_task_set(model_dir: str | Path, task_set: str = "", n_examples: int = 0) -> tuple[str, int]:
    """``(task_set, n_examples)`` for a mixture curve: explicit values, else the model's training config."""
    info = training_info(model_dir).get("config", {})
    task_set = task_set or info.get("task_set", "")
    if not task_set:
        raise InterpError("pass --task-set, e.g. retrieval or bias-add (the model has no training_config.json)")
    get_task_set(task_set)  # raises for an unknown name
    n_examples = n_examples or int(info.get("n_examples", 20))
    return task_set, n_examples


def build_mixture_prompts(task_set: str, task_a: str, task_b: str, shares: list[float], n_prompts: int,
                          n_examples: int, sampling: str = "exact", seed: int = 0) -> tuple[list[Prompt], pd.DataFrame]:
    """Prompts mixing tasks A and B with share d of A, and a table (prompt_id, d, task_a, task_b, count_a).

    ``task_a``/``task_b`` may be ``random``: a distinct random pair of the set's tasks per prompt.
    """
    ts = get_task_set(task_set)
    names = ts.task_names
    for t in (task_a, task_b):
        if t != "random" and t not in names:
            raise InterpError(f"unknown task {t!r} for {task_set!r}: use one of {', '.join(names)} or random")
    if task_a == task_b != "random":
        raise InterpError("task A and task B must differ")
    if sampling not in ("exact", "binomial"):
        raise InterpError(f"unknown sampling {sampling!r}: use exact or binomial")
    if n_examples < 1:
        raise InterpError("n_examples must be at least 1")
    plan = []  # (d, i, task A, task B, count A) per prompt, decided first
    for d in shares:
        if not 0 <= d <= 1:
            raise InterpError(f"share {d} is outside [0, 1]")
        for i in range(n_prompts):
            rng = random.Random(f"mixture:{seed}:{d:.4f}:{i}")
            a, b = task_a, task_b
            if "random" in (a, b):
                pool = [t for t in names if t not in (a, b)]
                picks = rng.sample(pool, 2)
                a = picks[0] if a == "random" else a
                b = picks[1] if b == "random" else b
            if sampling == "exact":
                count_a = int(round(d * n_examples))
            else:
                count_a = sum(rng.random() < d for _ in range(n_examples))
            plan.append((d, i, a, b, count_a))
    # One build_prompts call per distinct (d, A, B, count): input pools are built once per call.
    groups: dict[tuple, list[int]] = {}
    for j, (d, _i, a, b, count_a) in enumerate(plan):
        groups.setdefault((d, a, b, count_a), []).append(j)
    built: dict[int, Prompt] = {}
    for (d, a, b, count_a), members in groups.items():
        group_seed = random.Random(f"mixture:{seed}:{d:.4f}:{a}:{b}:{count_a}").randrange(2**31)
        mixture = {a: float(count_a), b: float(n_examples - count_a)}
        # n_examples makes {A: 0, B: 1} (one example) mean one example, not a share of the default 20.
        made = build_prompts(ts, mixture=mixture, n_prompts=len(members), n_examples=n_examples, seed=group_seed)
        built.update(zip(members, made))
    prompts: list[Prompt] = []
    rows = []
    for j, (d, _i, a, b, count_a) in enumerate(plan):
        prompt = built[j]
        prompt.prompt_id = j
        prompts.append(prompt)
        rows.append({"prompt_id": j, "d": d, "task_a": a, "task_b": b, "count_a": count_a, "n_examples": n_examples})
    return prompts, pd.DataFrame(rows)


def mixture_table(scores: pd.DataFrame, design: pd.DataFrame) -> pd.DataFrame:
    """Per prompt: P(A answer), P(B answer), other = 1 − both."""
    prob = scores.set_index(["prompt_id", "task"])["prob"]
    out = design.copy()
    out["p_a"] = [float(prob[(pid, t)]) for pid, t in zip(design["prompt_id"], design["task_a"])]
    out["p_b"] = [float(prob[(pid, t)]) for pid, t in zip(design["prompt_id"], design["task_b"])]
    out["other"] = 1.0 - out["p_a"] - out["p_b"]
    return out


def split_entropy(p_a: pd.Series, p_b: pd.Series) -> pd.Series:
    """Per prompt: entropy (bits) of the A/B split renormalised over the two answers — 1 when a prompt
    splits its mass evenly, 0 when it picks one task (NaN when both are 0)."""
    total = p_a + p_b
    q = (p_a / total.where(total > 0)).clip(0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return h.where(~q.isin([0.0, 1.0]), 0.0).where(total > 0)


def summarize_curve(per_prompt: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Mean (and std) of P(A), P(B), other per d, with 95 % bootstrap intervals over prompts
    (``<col>_ci_low``/``<col>_ci_high``), the sorted means p_top / p_second and the per-prompt
    split entropy.

    A model can match d on average while each prompt picks a single task (p_top ≈ 1, p_second ≈ 0,
    entropy ≈ 0); true per-prompt superposition shows p_second well above 0 and entropy near 1 at mixed d.
    """
    per_prompt = per_prompt.assign(p_top=per_prompt[["p_a", "p_b"]].max(axis=1),
                                   p_second=per_prompt[["p_a", "p_b"]].min(axis=1),
                                   entropy=split_entropy(per_prompt["p_a"], per_prompt["p_b"]))
    g = per_prompt.groupby("d")
    curve = pd.DataFrame({
        "p_a": g["p_a"].mean(), "p_b": g["p_b"].mean(), "other": g["other"].mean(),
        # Sorted means (the paper's metric): does each prompt split its mass, or pick one task?
        "p_top": g["p_top"].mean(), "p_second": g["p_second"].mean(),
        "p_a_std": g["p_a"].std(ddof=0), "p_b_std": g["p_b"].std(ddof=0),
        "entropy": g["entropy"].mean(),
        "realised_share_a": (g["count_a"].mean() / g["n_examples"].mean()), "n_prompts": g.size(),
    }).reset_index()
    for col in ("p_a", "p_b", "other", "p_top", "p_second", "entropy"):
        bounds = [bootstrap_mean(g_[col].to_numpy(), n_boot=n_boot)[1:] for _, g_ in per_prompt.groupby("d")]
        curve[f"{col}_ci_low"] = [b[0] for b in bounds]
        curve[f"{col}_ci_high"] = [b[1] for b in bounds]
    return curve


def acceptance_checks(curve: pd.DataFrame) -> dict[str, Any]:
    """The issue's acceptance checks on a mixture curve (d = 0.5 split, monotone, endpoints).

    The curve is a mean over sampled prompts, so "monotone" allows each step down to be within two
    standard errors of the difference of its two means (when ``p_a_std`` and ``n_prompts`` are
    given; an exact curve must not go down at all). A model that picks one task per prompt has
    per-prompt std ≈ .5, so with 50 prompts per d a real dip of .1 is still caught only about half
    the time: evaluate with more prompts (the authors used 1,000) for a sharp check.
    ``p_a_largest_drop`` is reported either way.
    """
    c = curve.set_index("d")
    mid = c.loc[min(c.index, key=lambda d: abs(d - 0.5))]
    p_a = c["p_a"].to_numpy()
    drops = np.diff(p_a)
    tolerance = np.zeros_like(drops)
    if {"p_a_std", "n_prompts"} <= set(c.columns):
        se = (c["p_a_std"] / np.sqrt(c["n_prompts"])).to_numpy()
        tolerance = 2 * np.sqrt(se[1:] ** 2 + se[:-1] ** 2)
    checks = {
        "mid_both_ge_0.3": bool(mid["p_a"] >= 0.3 and mid["p_b"] >= 0.3),
        "mid_other_le_0.1": bool(mid["other"] <= 0.1),
        "p_a_monotone": bool(np.all(drops >= -tolerance - 1e-9)),
        "d0_p_b_ge_0.95": bool(c.loc[c.index.min(), "p_b"] >= 0.95) if c.index.min() == 0 else None,
        "d1_p_a_ge_0.95": bool(c.loc[c.index.max(), "p_a"] >= 0.95) if c.index.max() == 1 else None,
    }
    return {**checks, "p_a_largest_drop": round(float(max(0.0, -drops.min(initial=0.0))), 4),
            "passed": all(v for v in checks.values() if v is not None)}


def analyse(models: dict[str, LoadedModel], prompts: list[Prompt], design: pd.DataFrame, end_of_answer: str = "\n",
            batch_size: int = 8, show_progress: bool = True, n_boot: int = 2000) -> MixtureCurveResult:
    """Score the prompts with every model; curves and acceptance checks (no files written)."""
    per_prompt, curves, acceptance = [], [], {}
    for label, model in models.items():
        scores = score_prompts(model, prompts, batch_size=batch_size, end_of_answer=end_of_answer or None,
                               show_progress=show_progress)
        table = mixture_table(scores, design)
        table.insert(0, "model", label)
        curve = summarize_curve(table, n_boot)
        curve.insert(0, "model", label)
        per_prompt.append(table)
        curves.append(curve)
        acceptance[label] = acceptance_checks(curve)
    return MixtureCurveResult(pd.concat(curves, ignore_index=True), pd.concat(per_prompt, ignore_index=True), acceptance)


def curve_pair(task_set: str, options: MixtureCurveOptions) -> tuple[str, str]:
    """Tasks A and B: ``--pair A,B``, else ``--task-a``/``--task-b``, else the set's default pair."""
    if options.pair:
        names = [x.strip() for x in options.pair.split(",")]
        if len(names) != 2 or not all(names):
            raise InterpError(f"--pair {options.pair!r}: give two tasks as A,B, e.g. capital,upper")
        if options.task_a or options.task_b:
            raise InterpError("give either --pair A,B or --task-a/--task-b, not both")
        return names[0], names[1]
    default_a, default_b = default_pair(task_set)
    return options.task_a or default_a, options.task_b or default_b


def mixture_curve(models: Mapping[str, LoadedModel], task_set: str, n_prompts: int, n_examples: int, seed: int,
                  options: MixtureCurveOptions, show_progress: bool = True) -> MixtureCurveResult:
    """Mix tasks A and B with every share d; score every model on the same prompts (no files written).

    ``task_set`` and ``n_examples`` are resolved values (see :func:`resolve_task_set`).
    """
    task_a, task_b = curve_pair(task_set, options)
    prompts, design = build_mixture_prompts(task_set, task_a, task_b, options.d or options.shares, n_prompts, n_examples,
                                            options.sampling, seed)
    result = analyse(models, prompts, design, options.end_of_answer, options.batch_size, show_progress, options.n_boot)
    result.task_set, result.task_a, result.task_b, result.n_examples = task_set, task_a, task_b, n_examples
    result.prompts = prompts
    return result


def format_curve(curve: pd.DataFrame) -> str:
    """Per model and d: P(A), P(B), other as ``mean [95% CI]``, the split entropy and the prompt count."""
    if "p_a_ci_low" not in curve.columns:
        return curve[["model", "d", "p_a", "p_b", "other"]].to_string(index=False, float_format="%.3f")
    table = curve[["model", "d"]].copy()
    for col, label in (("p_a", "P(A)"), ("p_b", "P(B)"), ("other", "other"), ("p_second", "p_second"),
                       ("entropy", "split entropy")):
        table[label] = [format_ci(m, lo, hi) for m, lo, hi in
                        zip(curve[col], curve[f"{col}_ci_low"], curve[f"{col}_ci_high"])]
    table["n"] = curve["n_prompts"]
    return table.to_string(index=False)


def evaluate_trained(model: LoadedModel, model_dir: str | Path, n_prompts: int = 50, seed: int = 0,
                     show_progress: bool = True) -> dict[str, Any]:
    """The evaluation of a freshly trained model (``eval_summary.json``): its mixture curve on its own
    task set's default pair, the acceptance checks and the in-context curve."""
    task_set, n_examples = resolve_task_set(model_dir)
    options = MixtureCurveOptions()
    result = mixture_curve({"model": model}, task_set, n_prompts, n_examples, seed, options, show_progress)
    curve = result.curve.drop(columns="model")
    return {
        "in_context_curve": trained_in_context_curve(model_dir, model=model),
        "protocol": {"task_set": task_set, "task_a": result.task_a, "task_b": result.task_b, "n_examples": n_examples,
                     "n_prompts_per_d": n_prompts, "sampling": "exact", "end_of_answer": "\\n", "seed": seed},
        "curve": curve[["d", "p_a", "p_b", "other", "p_top", "p_second"]].round(4).to_dict(orient="records"),
        "acceptance": result.acceptance["model"],
    }


def trained_in_context_curve(model_dir: str | Path, n_prompts: int = 64,
                             model: LoadedModel | None = None) -> list[dict[str, float]]:
    """Answer loss by example index on the model's own training distribution (see ``in_context_curve``).

    Pass ``model`` when ``model_dir`` is already loaded, so it is not loaded a second time.
    """
    from interp.models import load_model
    from interp.training import TrainConfig, in_context_curve

    info = training_info(model_dir)
    if "config" not in info:
        raise InterpError(f"{model_dir} has no training_config.json: only models trained by `interp train` have one")
    model = model or load_model(str(model_dir))
    return in_context_curve(model.hf_model, TrainConfig.from_dict(info["config"]), n_prompts)
