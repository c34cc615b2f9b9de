"""Task vectors: is a superposed prompt's state a combination of single-task states? (paper §6)

The authors' procedure (``superposition-task-vectors``), reproduced step by step:

1. **Extraction.** For each task, the task vector at layer ``l`` is the mean residual stream after
   block ``l`` (``resid_post``) at the query's final separator over ``n_prompts`` single-task
   prompts (paper: 100 prompts of 30-60 examples). Activations come from
   :func:`interp.activations.get_activations` (on-disk cache when present).
2. **Layer choice.** Patch the vector at the separator of *zero-shot* queries ``\\n{input}{sep}``
   at layer ``l`` and score the teacher-forced probability of the task's full answer; the best
   layer maximises the mean. Modes: ``replace`` (Hendel et al., the paper), ``add`` and
   ``add:α`` (residual + α·v). Scoring reuses the query prefix's KV cache and batches all
   layers × modes of a query in one short forward (:mod:`interp.patching`).
3. **Projection per layer.** For superposed prompts (pure, 50/50 pairs, uniform, skewed 75/25)
   fit the mean separator vector as a combination of the task vectors: least squares (``ls``),
   non-negative (``nnls``) and convex (``simplex``: w ≥ 0, Σw = 1). Report weights vs
   in-context shares and the relative residual, with controls: the same pair mix with *random
   answers*, and a *task not in the mix* (its pure vector fitted on the pair's span; its weight
   when added as a candidate). Plus LDA / PCA 2-D maps fitted on pure-task prompts.
4. **Interpolation vs real mixing.** Inject ``(1-λ)·v_A + λ·v_B`` into zero-shot queries (30 λ)
   and compare P(answer_A), P(answer_B), other with real ICL prompts of a ``(1-λ)/λ`` mix
   (5 λ): the paper's two-panel figure, plus a distance between the curves.

Random-answer control (our choice, documented): task ``rand_<t>`` answers input ``x`` with task
``t``'s answer for *another* input drawn by an RNG seeded with ``x`` (same kind of string: a
random two-digit number for ``ab``, a random capital for ``country``), so the prompts have the
right format but no consistent input→output map.

Python::

    from analyses.task_vectors import TaskVectorOptions, analyse
    result = analyse(model, "ab", n_prompts=4, seed=0, config=TaskVectorOptions(n_examples=8))

CLI (:mod:`interp_app.commands.task_vectors`):
``interp run task-vectors --model smollm2-135m --task-set ab --n-prompts 100``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import get_activations
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.patching import PATCH_MODES, Patch, patched_logprobs
from interp.progress import progress
from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts, tokenize_answers
from interp.stats import bootstrap_mean, format_ci, resample_indices
from interp.tasks import Task, TaskSet, get_task_set
from interp.validate import Validated, check_float

FIT_METHODS = ("ls", "nnls", "simplex")
N_BOOT_FITS = 200  # prompt resamples per fit for the weight / residual intervals


# ---------------------------------------------------------------------------- configuration


@dataclass
class TaskVectorOptions(Validated):
    """task-vector options

    ``n_examples`` is the number of in-context examples of *every* prompt (pure and mixed alike,
    so all prompts have the same length, as in the paper); ``n_prompts`` (an argument of
    :func:`analyse`) is prompts per task / mixture / λ.
    """

    tasks: str = field(default="", metadata={"help": "tasks, comma-separated (default: the set's default tasks)"})
    n_examples: int | None = field(default=None, metadata={"help": "in-context examples per prompt, pure and mixed "
                                                                   "alike (default: the task set's, 20)", "min": 1})
    n_queries: int = field(default=50, metadata={"help": "zero-shot queries for the layer sweep and interpolation", "min": 1})
    modes: str = field(default="replace,add,add:4",
                       metadata={"help": "patch modes for the sweep: replace, add, add:ALPHA (residual + ALPHA·v)"})
    layers: str = field(default="", metadata={"help": "layers to sweep, e.g. 0-29 or 3,5,7 (default: all)"})
    skews: str = field(default="0.75", metadata={"help": "skewed shares for the first pair, e.g. 0.75,0.9"})
    controls: bool = field(default=True, metadata={"help": "random-answer and other-task controls"})
    pair: str = field(default="", metadata={"help": "tasks A,B for the interpolation (default: the first two)"})
    interp_layer: int = field(default=-1, metadata={"help": "layer for the interpolation (-1: best replace layer)", "min": -1})
    n_lambdas: int = field(default=30, metadata={"help": "λ grid points for the task-vector interpolation", "min": 2})
    n_icl_lambdas: int = field(default=5, metadata={"help": "λ grid points for the real ICL mixes", "min": 2})
    end_of_answer: str = field(default="", metadata={"help": "text scored after every answer (e.g. a newline)"})
    max_rows: int = field(default=96, metadata={"help": "patched rows per batched forward", "min": 1})

    def _validate(self) -> None:
        parse_modes(self.modes)
        for part in (s.strip() for s in self.skews.split(",") if s.strip()):
            try:
                value = float(part)
            except ValueError:
                raise InterpError(f"bad --skews value {part!r}: write shares in (0, 1), e.g. 0.75,0.9") from None
            check_float(value, "skews", gt=0, lt=1)
        tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if self.tasks and len(set(tasks)) < 2:
            raise InterpError("task vectors need at least two distinct tasks: pass --tasks A,B[,C]")
        pair = [t.strip() for t in self.pair.split(",") if t.strip()]
        if self.pair and (len(pair) != 2 or pair[0] == pair[1]):
            raise InterpError(f"--pair needs two different tasks, e.g. A,B; got {self.pair!r}")


def parse_modes(text: str) -> list[tuple[str, float]]:
    """``"replace,add,add:4"`` → ``[("replace", 1.0), ("add", 1.0), ("add", 4.0)]``."""
    modes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, alpha = part.partition(":")
        if name not in PATCH_MODES:
            raise InterpError(f"unknown patch mode {name!r}: use replace, add or add:ALPHA")
        try:
            modes.append((name, float(alpha) if alpha else 1.0))
        except ValueError:
            raise InterpError(f"bad scale in {part!r}: write e.g. add:4") from None
    if not modes:
        raise InterpError("no patch mode given: use e.g. --modes replace,add")
    return list(dict.fromkeys(modes))


def parse_layers(text: str, n_layers: int) -> list[int]:
    """``""`` → all layers; ``"3-5,9"`` → [3, 4, 5, 9]."""
    if not text.strip():
        return list(range(n_layers))
    layers: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, dash, hi = part.partition("-")
        try:
            span = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        except ValueError:
            raise InterpError(f"bad layer range {part!r}: write e.g. 0-29 or 3,5,7") from None
        if not span:
            raise InterpError(f"empty layer range {part!r}: write the low layer first, e.g. 0-29")
        layers.extend(span)
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise InterpError(f"layers {bad} out of range: the model has layers 0..{n_layers - 1}")
    return sorted(set(layers))


def resolve_tasks(task_set: TaskSet, text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()] or task_set.default_task_names
    for n in names:
        task_set.task(n)
    if len(names) < 2:
        raise InterpError("task vectors need at least two tasks: pass --tasks A,B[,C]")
    return names


# ---------------------------------------------------------------------------- prompts


def _sampling(task_set: TaskSet) -> dict[str, bool]:
    """Whether inputs may repeat in a prompt and the query among its examples: the task set's properties."""
    return {"with_replacement": task_set.inputs_may_repeat, "allow_query_in_examples": task_set.query_may_repeat}


def zero_shot_queries(task_set: TaskSet, tasks: Sequence[str], n: int, seed: int,
                      separator: str | None = None) -> list[Prompt]:
    """The paper's zero-shot queries ``\\n{input}{sep}`` with an answer per task (all distinct)."""
    base = build_prompts(task_set, mixture={t: 1.0 / len(tasks) for t in tasks}, n_prompts=n, n_examples=0,
                         seed=seed, separator=separator)
    return [dataclasses.replace(p, text="\n" + p.text, separator_offsets=[o + 1 for o in p.separator_offsets])
            for p in base]


def random_answer_task_set(task_set: TaskSet, tasks: Sequence[str], seed: int = 0) -> TaskSet:
    """A copy of ``task_set`` plus ``rand_<t>`` tasks: ``t``'s answer for a random other input.

    The other input is drawn by an RNG seeded with (seed, task, formatted input), so a prompt
    stays self-consistent in format and answer kind but has no input→output rule.
    """
    inputs = task_set.inputs()
    fmt = task_set.format_input

    def make(t: str) -> Task:
        base = task_set.task(t)

        def answer(x: Any, base: Task = base, t: str = t) -> str:
            rng = random.Random(f"{seed}:{t}:{fmt(x)}")
            return base.answer(inputs[rng.randrange(len(inputs))])

        return Task(f"rand_{t}", answer, f"random {t} answer (control)")

    # dataclasses.replace keeps every property of the set (sampling, pairs, training) as it is.
    return dataclasses.replace(task_set, name=f"{task_set.name}+rand",
                               tasks=(*task_set.tasks, *(make(t) for t in tasks)), default_tasks=tuple(tasks))


# ---------------------------------------------------------------------------- 1. extraction


@dataclass
class TaskVectors:
    """Task vectors of one model and task set.

    ``mean[k, l]`` is task ``tasks[k]``'s vector at layer ``layers[l]``; ``per_prompt[k, p, l]``
    the separator state of its ``p``-th single-task prompt (used by LDA/PCA).
    """

    tasks: list[str]
    layers: list[int]
    mean: Float[Tensor, "task layer d_model"]
    per_prompt: Float[Tensor, "task prompt layer d_model"]

    def vector(self, task: str, layer: int) -> Float[Tensor, " d_model"]:
        return self.mean[self.tasks.index(task), self.layers.index(layer)]


def separator_states(model: LoadedModel, prompts: Sequence[Prompt], layers: Sequence[int] | None = None,
                     show_progress: bool = True, use_cache: bool = True,
                     cache_dir: str | os.PathLike[str] | None = None) -> Float[Tensor, "prompt layer d_model"]:
    """resid_post at each prompt's query separator, every layer (via the activation cache)."""
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    acts = get_activations(model, prompts, ["resid_post"], layers=layers, positions="query",
                           show_progress=show_progress, use_cache=use_cache, cache_dir=cache_dir)
    return acts.stack("hook_resid_post", layers)[:, :, 0].permute(1, 0, 2).contiguous().float()


def extract_task_vectors(model: LoadedModel, task_set: TaskSet, tasks: Sequence[str], n_prompts: int = 100,
                         n_examples: int | None = None, seed: int = 0, separator: str | None = None,
                         show_progress: bool = True, use_cache: bool = True,
                         cache_dir: str | os.PathLike[str] | None = None) -> TaskVectors:
    """Mean separator resid_post over ``n_prompts`` single-task prompts, per task and layer."""
    layers = list(range(model.n_layers))
    n_ex = n_examples or task_set.examples_per_task
    per_task = []
    for t in tasks:
        prompts = build_prompts(task_set, mixture={t: 1.0}, n_prompts=n_prompts, n_examples=n_ex, seed=seed,
                                separator=separator, **_sampling(task_set))
        per_task.append(separator_states(model, prompts, layers, show_progress, use_cache, cache_dir))
    per_prompt = torch.stack(per_task)
    return TaskVectors(list(tasks), layers, per_prompt.mean(1), per_prompt)


# ---------------------------------------------------------------------------- patched scoring


def score_patched(model: LoadedModel, queries: Sequence[Prompt], rows: Sequence[tuple[dict[str, Any], Patch | None]],
                  answer_tasks: Sequence[str] | None = None, end_of_answer: str | None = None,
                  max_rows: int = 96, show_progress: bool = True, desc: str = "patched scoring") -> pd.DataFrame:
    """Score every query's answers under every ``(meta, patch)`` row (prefix KV reuse).

    Returns one row per (query, patch row, answer task): the row's ``meta`` columns plus
    ``query_id, answer_task, prob, logprob``. ``answer_tasks`` restricts the scored answers; a
    meta key ``answer_task`` restricts it per row.
    """
    out = []
    for q in progress(queries, desc=desc, disable=not show_progress):
        ids = model.encode_prompt(q.text)
        wanted = {t: a for t, a in q.answers.items() if answer_tasks is None or t in answer_tasks}
        toks = {a.task: a.ids for a in tokenize_answers(model, q.text, ids, wanted, end_of_answer)}
        conts, patches, metas = [], [], []
        for meta, patch in rows:
            for t in ([meta["answer_task"]] if "answer_task" in meta else list(toks)):
                conts.append(toks[t])
                patches.append(patch)
                metas.append({**meta, "answer_task": t})
        lps = patched_logprobs(model, ids, conts, patches, max_rows=max_rows)
        for meta, lp in zip(metas, lps):
            total = float(sum(lp))
            out.append({**meta, "query_id": q.prompt_id, "prob": float(np.exp(total)), "logprob": total})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------- 2. layer sweep


def layer_sweep(model: LoadedModel, vectors: TaskVectors, queries: Sequence[Prompt],
                modes: Sequence[tuple[str, float]] = (("replace", 1.0),), layers: Sequence[int] | None = None,
                end_of_answer: str | None = None, max_rows: int = 96, show_progress: bool = True) -> pd.DataFrame:
    """P(task t's answer) on zero-shot queries with v_t patched at each layer and mode.

    Rows ``vector_task, mode, alpha, layer, answer_task (= vector_task), query_id, prob, logprob``;
    ``mode == "none"`` (layer -1) is the unpatched zero-shot baseline.
    """
    layers = list(vectors.layers) if layers is None else list(layers)
    rows: list[tuple[dict[str, Any], Patch | None]] = []
    for t in vectors.tasks:
        rows.append(({"vector_task": t, "mode": "none", "alpha": 0.0, "layer": -1, "answer_task": t}, None))
        for mode, alpha in modes:
            for layer in layers:
                rows.append(({"vector_task": t, "mode": mode, "alpha": alpha, "layer": layer, "answer_task": t},
                             Patch(layer, vectors.vector(t, layer), mode, alpha)))
    return score_patched(model, queries, rows, end_of_answer=end_of_answer, max_rows=max_rows,
                         show_progress=show_progress, desc="layer sweep")


def summarize_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error of P(answer) per (vector task, mode, alpha, layer)."""
    g = sweep.groupby(["vector_task", "mode", "alpha", "layer"], sort=False)["prob"]
    out = g.agg(mean_prob="mean", sem=lambda s: float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else 0.0,
                n_queries="count").reset_index()
    bounds = [bootstrap_mean(v.to_numpy(), n_boot=500)[1:] for _, v in g]
    out["ci_low"] = [b[0] for b in bounds]
    out["ci_high"] = [b[1] for b in bounds]
    return out


def best_layers(summary: pd.DataFrame) -> pd.DataFrame:
    """Best layer (argmax mean P) per (task, mode, alpha), with the unpatched baseline."""
    base = summary[summary["mode"] == "none"].set_index("vector_task")["mean_prob"]
    patched = summary[summary["mode"] != "none"]
    idx = patched.groupby(["vector_task", "mode", "alpha"], sort=False)["mean_prob"].idxmax()
    cols = ["vector_task", "mode", "alpha", "layer", "mean_prob"] + [c for c in ("ci_low", "ci_high") if c in patched]
    best = patched.loc[idx, cols].rename(columns={"vector_task": "task", "layer": "best_layer", "mean_prob": "best_prob",
                                                   "ci_low": "best_ci_low", "ci_high": "best_ci_high"})
    best["baseline_prob"] = best["task"].map(base)
    return best.reset_index(drop=True)


def analysis_layer(summary: pd.DataFrame, tasks: Sequence[str] | None = None, mode: str = "replace") -> int:
    """One layer for a set of tasks: argmax over layers of their mean ``mode`` (α=1) curve."""
    s = summary[(summary["mode"] == mode) & (summary["alpha"] == 1.0)]
    if tasks is not None:
        s = s[s["vector_task"].isin(list(tasks))]
    if s.empty:
        raise InterpError(f"no {mode} sweep rows to choose a layer from: include {mode} in --modes")
    return int(s.groupby("layer")["mean_prob"].mean().idxmax())


# ---------------------------------------------------------------------------- 3. projection


def _subset_solutions(gram: np.ndarray, b: np.ndarray, yy: np.ndarray, sum_to_one: bool, nonneg: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Exact constrained least squares by enumerating supports (k small).

    Minimise ‖y − Σ w_k v_k‖² (= yy − 2 w·b + wᵀGw) over w ≥ 0 (and Σw = 1). The optimum has some
    support S, on which it is the equality-only solution; every feasible support solution is a
    feasible point, so the feasible one with the lowest residual is the optimum. Batched over
    targets: ``b`` [n, k], ``yy`` [n]. Returns weights [n, k] and squared residuals [n].
    """
    n, k = b.shape
    best_w = np.zeros((n, k))
    best_r = np.full(n, np.inf)
    supports = [s for r in range(1, k + 1) for s in itertools.combinations(range(k), r)] if nonneg \
        else [tuple(range(k))]
    for s in supports:
        idx = list(s)
        g = gram[np.ix_(idx, idx)]
        if sum_to_one:
            m = len(idx)
            kkt = np.zeros((m + 1, m + 1))
            kkt[:m, :m] = g
            kkt[:m, m] = kkt[m, :m] = 1.0
            rhs = np.concatenate([b[:, idx], np.ones((n, 1))], axis=1)
            sol = np.linalg.lstsq(kkt, rhs.T, rcond=None)[0].T[:, :m]
        else:
            sol = np.linalg.lstsq(g, b[:, idx].T, rcond=None)[0].T
        w = np.zeros((n, k))
        w[:, idx] = sol
        r = yy - 2 * (w * b).sum(1) + np.einsum("ni,ij,nj->n", w, gram, w)
        ok = (sol >= -1e-10).all(1) if nonneg else np.ones(n, bool)
        better = ok & (r < best_r)
        best_w[better] = w[better]
        best_r[better] = r[better]
    return best_w, np.maximum(best_r, 0.0)


def fit_weights(targets: Float[Tensor, "n d_model"] | np.ndarray, basis: Float[Tensor, "k d_model"] | np.ndarray,
                method: str = "simplex") -> tuple[np.ndarray, np.ndarray]:
    """Weights ``w`` [n, k] with ``target ≈ w @ basis`` and the residual norms [n].

    ``ls``: unconstrained least squares; ``nnls``: w ≥ 0; ``simplex``: w ≥ 0 and Σw = 1 (a
    convex combination). Exact (support enumeration; up to ~12 basis vectors).
    """
    if method not in FIT_METHODS:
        raise InterpError(f"unknown fit {method!r}: use one of {', '.join(FIT_METHODS)}")
    y = np.asarray(targets, dtype=np.float64).reshape(-1, np.asarray(basis).shape[-1])
    v = np.asarray(basis, dtype=np.float64)
    if v.shape[0] > 12 and method != "ls":
        raise InterpError("constrained fits enumerate supports: use at most 12 basis vectors")
    gram, b, yy = v @ v.T, y @ v.T, (y * y).sum(1)
    w, r2 = _subset_solutions(gram, b, yy, sum_to_one=method == "simplex", nonneg=method != "ls")
    return w, np.sqrt(r2)


@dataclass
class ProjectionTarget:
    """Separator states of one prompt set to be fitted on task vectors.

    ``kind``: ``pure`` | ``mix`` | ``random_answers`` | ``other_task``; ``shares`` over the real
    tasks (the in-context share each task's *rule* has); ``candidates`` names candidate sets
    (``mix``: the mixed tasks, ``all``: every task).
    """

    label: str
    kind: str
    shares: dict[str, float]
    states: Float[Tensor, "prompt layer d_model"]
    candidates: dict[str, list[str]]


def default_mixtures(tasks: Sequence[str], skews: Sequence[float] = (0.75,)) -> list[tuple[str, dict[str, float]]]:
    """Pure tasks, 50/50 pairs, uniform over all, and skewed mixes of the first pair."""
    out = [(t, {t: 1.0}) for t in tasks]
    out += [(f"{a}+{b}", {a: 0.5, b: 0.5}) for a, b in itertools.combinations(tasks, 2)]
    if len(tasks) > 2:
        out.append(("uniform", {t: 1.0 / len(tasks) for t in tasks}))
    a, b = tasks[0], tasks[1]
    for s in skews:
        if 0 < s < 1 and s != 0.5:
            out.append((f"{a}:{s:g}+{b}:{1 - s:g}", {a: s, b: 1 - s}))
            out.append((f"{a}:{1 - s:g}+{b}:{s:g}", {a: 1 - s, b: s}))
    return out


def projection_targets(model: LoadedModel, task_set: TaskSet, tasks: Sequence[str], n_prompts: int,
                       n_examples: int | None, seed: int, skews: Sequence[float] = (0.75,), controls: bool = True,
                       separator: str | None = None, show_progress: bool = True, use_cache: bool = True,
                       cache_dir: str | os.PathLike[str] | None = None) -> list[ProjectionTarget]:
    """Build and run the mixture prompts (fresh seed) and the controls."""
    n_ex = n_examples or task_set.examples_per_task
    tasks = list(tasks)
    targets: list[ProjectionTarget] = []
    for label, mix in default_mixtures(tasks, skews):
        prompts = build_prompts(task_set, mixture=mix, n_prompts=n_prompts, n_examples=n_ex, seed=seed,
                                separator=separator, **_sampling(task_set))
        states = separator_states(model, prompts, show_progress=show_progress, use_cache=use_cache,
                                  cache_dir=cache_dir)
        active = [t for t in tasks if mix.get(t, 0) > 0]
        cands = {"all": tasks} if len(active) == 1 else {"mix": active, "all": tasks}
        targets.append(ProjectionTarget(label, "pure" if len(active) == 1 else "mix",
                                        {t: float(mix.get(t, 0.0)) for t in tasks}, states, cands))
    if not controls:
        return targets
    rand_ts = random_answer_task_set(task_set, tasks, seed=seed)
    pure = {t.label: t for t in targets if t.kind == "pure"}
    for a, b in itertools.combinations(tasks, 2):
        prompts = build_prompts(rand_ts, mixture={f"rand_{a}": 0.5, f"rand_{b}": 0.5}, n_prompts=n_prompts,
                                n_examples=n_ex, seed=seed, separator=separator, **_sampling(task_set))
        states = separator_states(model, prompts, show_progress=show_progress, use_cache=use_cache,
                                  cache_dir=cache_dir)
        targets.append(ProjectionTarget(f"rand({a}+{b})", "random_answers", {t: 0.0 for t in tasks}, states,
                                        {"mix": [a, b], "all": tasks}))
        for c in tasks:
            if c not in (a, b):
                targets.append(ProjectionTarget(f"{c}|span({a},{b})", "other_task", {t: 0.0 for t in tasks},
                                                pure[c].states, {"mix": [a, b]}))
    return targets


def projection_fits(vectors: TaskVectors, targets: Sequence[ProjectionTarget], methods: Sequence[str] = FIT_METHODS,
                    per_prompt: bool = True) -> pd.DataFrame:
    """Fit each target's separator state on task vectors, per layer, candidate set and method.

    One row per (layer, target, candidates, method, level, task): ``weight`` vs ``share``,
    ``residual`` (L2), ``rel_residual`` = ‖r‖/‖y‖, ``rel_residual_centered`` = ‖r‖/‖y − v̄‖
    (v̄ = mean of all task vectors at that layer: the common component every candidate set
    explains; inflated for targets near v̄ such as the uniform mix) and ``rel_residual_spread``
    = ‖r‖ / RMS‖v_k − v̄‖ (one scale per layer, the size of the task-vector simplex, so it
    compares targets fairly). ``level``: ``mean`` fits the mean state of the prompts (the
    paper); ``prompt`` averages per-prompt fits.
    """
    rows = []
    for li, layer in enumerate(vectors.layers):
        center = vectors.mean[:, li].double().mean(0).numpy()
        spread = float(np.sqrt(((vectors.mean[:, li].double().numpy() - center) ** 2).sum(1).mean()))
        for tgt in targets:
            per = tgt.states[:, li].double().numpy()
            levels = {"mean": per.mean(0, keepdims=True)}
            if per_prompt:
                levels["prompt"] = per
            for cand_name, cands in tgt.candidates.items():
                basis = np.stack([vectors.mean[vectors.tasks.index(c), li].double().numpy() for c in cands])
                for method in methods:
                    # Intervals: the fit redone on bootstrap resamples of the prompts (mean level: the
                    # resampled mean state; prompt level: the mean of resampled per-prompt fits).
                    weights = _resample_weights(len(per), N_BOOT_FITS)
                    for level, y in levels.items():
                        w, res = fit_weights(y, basis, method)
                        ynorm = np.linalg.norm(y, axis=1)
                        cnorm = np.linalg.norm(y - center, axis=1)
                        if level == "mean":
                            yb = weights @ per
                            wb, resb = fit_weights(yb, basis, method)
                            rel_b = resb / np.linalg.norm(yb, axis=1)
                        else:
                            wb, rel_b = weights @ w, weights @ (res / ynorm)
                        rl, rh = np.quantile(rel_b, [0.025, 0.975])
                        common = {"layer": layer, "target": tgt.label, "kind": tgt.kind, "candidates": cand_name,
                                  "method": method, "level": level, "residual": float(res.mean()),
                                  "rel_residual": float((res / ynorm).mean()),
                                  "rel_residual_ci_low": float(rl), "rel_residual_ci_high": float(rh),
                                  "rel_residual_centered": float((res / cnorm).mean()),
                                  "rel_residual_spread": float(res.mean() / max(spread, 1e-12)), "n": len(per)}
                        lo, hi = np.quantile(wb, [0.025, 0.975], axis=0)
                        for k, c in enumerate(cands):
                            rows.append({**common, "task": c, "share": tgt.shares.get(c, 0.0),
                                         "weight": float(w[:, k].mean()), "weight_sd": float(w[:, k].std()),
                                         "weight_ci_low": float(lo[k]), "weight_ci_high": float(hi[k])})
    return pd.DataFrame(rows)


def _resample_weights(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]``: row b averages bootstrap resample b of ``n`` prompts (``W @ X`` = resampled means)."""
    idx = resample_indices(n, n_boot, seed)
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n), idx.reshape(-1)), 1.0)
    return weights / n


def weights_table(fits: pd.DataFrame, layer: int, method: str = "simplex", candidates: str = "all",
                  level: str = "mean") -> pd.DataFrame:
    """Wide table at one layer: target × task weights next to shares, with the residuals; each weight's
    and the relative residual's 95 % bootstrap interval over prompts (``lo_``/``hi_`` columns)."""
    s = fits[(fits["layer"] == layer) & (fits["method"] == method) & (fits["candidates"] == candidates)
             & (fits["level"] == level)]
    w = s.pivot_table(index=["target", "kind"], columns="task", values="weight", sort=False)
    sh = s.pivot_table(index=["target", "kind"], columns="task", values="share", sort=False)
    parts = [sh.add_prefix("share_"), w.add_prefix("w_")]
    if "weight_ci_low" in s.columns:
        parts.append(s.pivot_table(index=["target", "kind"], columns="task", values="weight_ci_low",
                                   sort=False).add_prefix("lo_w_"))
        parts.append(s.pivot_table(index=["target", "kind"], columns="task", values="weight_ci_high",
                                   sort=False).add_prefix("hi_w_"))
    res_cols = [c for c in ("rel_residual", "rel_residual_ci_low", "rel_residual_ci_high", "rel_residual_centered",
                            "rel_residual_spread") if c in s.columns]
    res = s.groupby(["target", "kind"], sort=False)[res_cols].first()
    table = pd.concat([*parts, res], axis=1).reset_index()
    return table


def projection_2d(vectors: TaskVectors, targets: Sequence[ProjectionTarget], layers: Sequence[int],
                  methods: Sequence[str] = ("lda", "pca")) -> pd.DataFrame:
    """2-D LDA / PCA maps fitted on the pure-task prompts' states; every target placed in them.

    Rows ``layer, method, label, kind, prompt, x, y`` (``label == "fit:<task>"`` are the
    single-task prompts the map was fitted on). With two tasks LDA has one axis (y = 0).
    """
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rows = []
    n_task, n_prompt = vectors.per_prompt.shape[:2]
    labels = np.repeat(np.arange(n_task), n_prompt)
    for layer in layers:
        li = vectors.layers.index(layer)
        x_fit = vectors.per_prompt[:, :, li].reshape(n_task * n_prompt, -1).double().numpy()
        for method in methods:
            if method == "lda":
                proj: Any = LinearDiscriminantAnalysis(n_components=min(2, n_task - 1), solver="svd").fit(x_fit, labels)
            elif method == "pca":
                proj = PCA(n_components=2).fit(x_fit)
            else:
                raise InterpError(f"unknown projection {method!r}: use lda or pca")
            sets = [(f"fit:{t}", "fit", vectors.per_prompt[k, :, li].double().numpy()) for k, t in enumerate(vectors.tasks)]
            sets += [(t.label, t.kind, t.states[:, li].double().numpy()) for t in targets
                     if t.kind in ("pure", "mix", "random_answers")]
            for label, kind, x in sets:
                z = proj.transform(x)
                z2 = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
                for p in range(len(z)):
                    rows.append({"layer": layer, "method": method, "label": label, "kind": kind, "prompt": p,
                                 "x": float(z[p, 0]), "y": float(z2[p])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- 4. interpolation


def interpolate_vectors(model: LoadedModel, vectors: TaskVectors, queries: Sequence[Prompt], task_a: str, task_b: str,
                        layer: int, lambdas: Sequence[float], mode: str = "replace", alpha: float = 1.0,
                        end_of_answer: str | None = None, max_rows: int = 96,
                        show_progress: bool = True) -> pd.DataFrame:
    """Patch ``(1-λ)·v_A + λ·v_B`` at ``layer``; P(answer) of every task per query and λ."""
    va, vb = vectors.vector(task_a, layer), vectors.vector(task_b, layer)
    rows = [({"lam": float(lam), "layer": layer}, Patch(layer, (1 - lam) * va + lam * vb, mode, alpha))
            for lam in lambdas]
    return score_patched(model, queries, rows, end_of_answer=end_of_answer, max_rows=max_rows,
                         show_progress=show_progress, desc="interpolation")


def icl_mixing(model: LoadedModel, task_set: TaskSet, task_a: str, task_b: str, lambdas: Sequence[float],
               n_prompts: int, n_examples: int | None, seed: int, separator: str | None = None,
               end_of_answer: str | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Real ICL prompts with a ``(1-λ)/λ`` mix of A and B examples; P(answer_A), P(answer_B)."""
    n_ex = n_examples or task_set.examples_per_task
    frames = []
    for lam in lambdas:
        prompts = build_prompts(task_set, mixture={task_a: 1 - float(lam), task_b: float(lam)}, n_prompts=n_prompts,
                                n_examples=n_ex, seed=seed, separator=separator, **_sampling(task_set))
        s = score_prompts(model, prompts, end_of_answer=end_of_answer, show_progress=show_progress)
        s["lam"] = float(lam)
        s["actual_lam"] = prompts[0].shares[task_b]
        frames.append(s.rename(columns={"task": "answer_task", "prompt_id": "query_id"}))
    return pd.concat(frames, ignore_index=True)


def interpolation_curve(scores: pd.DataFrame, task_a: str, task_b: str) -> pd.DataFrame:
    """Mean P(answer_A), P(answer_B) and other = 1 − both, per λ (also per other task)."""
    m = scores.groupby(["lam", "answer_task"])["prob"].mean().unstack("answer_task")
    out = pd.DataFrame({"lam": m.index, "p_a": m[task_a].to_numpy(), "p_b": m[task_b].to_numpy()})
    out["other"] = 1 - out["p_a"] - out["p_b"]
    for t in m.columns:
        if t not in (task_a, task_b):
            out[f"p_{t}"] = m[t].to_numpy()
    return out.reset_index(drop=True)


def _crossing(curve: pd.DataFrame) -> float:
    """λ where P(A) = P(B) by linear interpolation (NaN when the curves never cross)."""
    lam, d = curve["lam"].to_numpy(), (curve["p_a"] - curve["p_b"]).to_numpy()
    for i in range(len(d) - 1):
        if d[i] == 0:
            return float(lam[i])
        if d[i] * d[i + 1] < 0:
            return float(lam[i] + (lam[i + 1] - lam[i]) * d[i] / (d[i] - d[i + 1]))
    return float(lam[-1]) if d[-1] == 0 else float("nan")


def curve_distance(tv: pd.DataFrame, icl: pd.DataFrame) -> dict[str, float]:
    """How far the task-vector curve is from the real-mixing curve, at the ICL λ points.

    ``mae_prob``: mean |ΔP(A)| and |ΔP(B)| (absolute levels); ``mae_share``: mean |Δ| of the
    normalised share P(B)/(P(A)+P(B)) (the curves' shape, independent of the 'other' mass);
    plus the λ where each curve crosses P(A) = P(B).
    """
    lam = icl["lam"].to_numpy()
    pa = np.interp(lam, tv["lam"], tv["p_a"])
    pb = np.interp(lam, tv["lam"], tv["p_b"])
    share_tv = pb / np.maximum(pa + pb, 1e-12)
    share_icl = icl["p_b"].to_numpy() / np.maximum((icl["p_a"] + icl["p_b"]).to_numpy(), 1e-12)
    return {
        "mae_prob": float(np.mean(np.abs(np.r_[pa - icl["p_a"].to_numpy(), pb - icl["p_b"].to_numpy()]))),
        "mae_share": float(np.mean(np.abs(share_tv - share_icl))),
        "crossing_tv": _crossing(tv),
        "crossing_icl": _crossing(icl),
    }


# ---------------------------------------------------------------------------- the run


@dataclass
class TaskVectorResult:
    vectors: TaskVectors
    sweep: pd.DataFrame
    sweep_summary: pd.DataFrame
    best: pd.DataFrame
    layer: int
    fits: pd.DataFrame
    weights: pd.DataFrame
    proj2d: pd.DataFrame
    interp_curves: pd.DataFrame
    interp_scores: pd.DataFrame
    interp_summary: dict[str, Any]


def _map_layers(best: pd.DataFrame, layer: int, n_layers: int, k: int = 6) -> list[int]:
    """Layers for the 2-D maps: the best layers' range plus evenly spread ones (at most k)."""
    chosen = {layer, *best[best["mode"] == "replace"]["best_layer"].astype(int)}
    spread = np.linspace(0, n_layers - 1, k).round().astype(int)
    for x in spread:
        if len(chosen) >= k:
            break
        chosen.add(int(x))
    return sorted(chosen)


def analyse(model: LoadedModel, task_set: TaskSet | str, n_prompts: int, seed: int, config: TaskVectorOptions,
            separator: str | None = None, show_progress: bool = True, use_cache: bool = True,
            cache_dir: str | os.PathLike[str] | None = None,
            on_table: Callable[[str, pd.DataFrame], None] | None = None) -> TaskVectorResult:
    """Every step of the analysis (no files written).

    ``n_prompts`` is prompts per task / mixture / λ. ``on_table(name, frame)`` is called with each
    stage's table as soon as it is computed (the command writes them, so a long run that stops
    late keeps its early tables).
    """

    def write(name: str, frame: pd.DataFrame) -> None:
        if on_table is not None:
            on_table(name, frame)

    ts = get_task_set(task_set) if isinstance(task_set, str) else task_set
    cache = {"use_cache": use_cache, "cache_dir": cache_dir}
    tasks = resolve_tasks(ts, config.tasks)
    modes = parse_modes(config.modes)
    layers = parse_layers(config.layers, model.n_layers)
    eoa = config.end_of_answer or None
    # Distinct seeds: the mixtures' (and the pure "noise floor") prompts are fresh, not the
    # prompts the task vectors were averaged over.
    vectors = extract_task_vectors(model, ts, tasks, n_prompts, config.n_examples, seed, separator, show_progress,
                                   **cache)
    queries = zero_shot_queries(ts, tasks, config.n_queries, seed + 3, separator)
    sweep = layer_sweep(model, vectors, queries, modes, layers, eoa, config.max_rows, show_progress)
    summary = summarize_sweep(sweep)
    best = best_layers(summary)
    write("layer_sweep.csv", sweep)
    write("layer_sweep_summary.csv", summary)
    write("best_layers.csv", best)
    layer = analysis_layer(summary) if ("replace", 1.0) in modes else int(best["best_layer"].iloc[0])

    skews = [float(s) for s in config.skews.split(",") if s.strip()]
    targets = projection_targets(model, ts, tasks, n_prompts, config.n_examples, seed + 1,
                                 skews, config.controls, separator, show_progress, **cache)
    fits = projection_fits(vectors, targets)
    weights = weights_table(fits, layer)
    proj2d = projection_2d(vectors, targets, _map_layers(best, layer, model.n_layers))
    write("projection_fits.csv", fits)
    write("weights_at_layer.csv", weights.assign(layer=layer))
    write("projection_2d.csv", proj2d)

    pair = [t.strip() for t in config.pair.split(",") if t.strip()] or tasks[:2]
    if len(pair) != 2 or any(p not in tasks for p in pair):
        raise InterpError(f"--pair needs two of the tasks {', '.join(tasks)}, e.g. {tasks[0]},{tasks[1]}")
    a, b = pair
    ilayer = config.interp_layer if config.interp_layer >= 0 else (
        analysis_layer(summary, pair) if ("replace", 1.0) in modes else layer)
    if ilayer >= model.n_layers:
        raise InterpError(f"--interp-layer {ilayer} out of range: the model has layers 0..{model.n_layers - 1}")
    tv_scores = interpolate_vectors(model, vectors, queries, a, b, ilayer, np.linspace(0, 1, config.n_lambdas),
                                    end_of_answer=eoa, max_rows=config.max_rows, show_progress=show_progress)
    icl_scores = icl_mixing(model, ts, a, b, np.linspace(0, 1, config.n_icl_lambdas), n_prompts,
                            config.n_examples, seed + 4, separator, eoa, show_progress)
    tv = interpolation_curve(tv_scores, a, b)
    icl = interpolation_curve(icl_scores, a, b)
    interp_summary: dict[str, Any] = {"task_a": a, "task_b": b, "layer": ilayer, **curve_distance(tv, icl)}
    for name, curve in (("tv", tv), ("icl", icl)):
        for lam in (0.0, 0.5, 1.0):
            row = curve.iloc[int(np.argmin(np.abs(curve["lam"] - lam)))]
            interp_summary[f"{name}_lam{lam:g}"] = {"lam": float(row["lam"]), "p_a": float(row["p_a"]),
                                                    "p_b": float(row["p_b"]), "other": float(row["other"])}
    tv_scores["kind"] = "task_vector"
    icl_scores["kind"] = "icl"
    keep = ["kind", "lam", "query_id", "answer_task", "prob", "logprob"]
    return TaskVectorResult(vectors, sweep, summary, best, layer, fits, weights, proj2d,
                            pd.concat([tv.assign(kind="task_vector"), icl.assign(kind="icl")], ignore_index=True),
                            pd.concat([tv_scores[keep], icl_scores[keep]], ignore_index=True), interp_summary)


def save_vectors(vectors: TaskVectors, path: Path, meta: dict[str, str]) -> None:
    """Mean task vectors [task, layer, d_model] as safetensors (task names in the metadata)."""
    from safetensors.torch import save_file

    from interp.io import atomic_write

    atomic_write(path, lambda tmp: save_file(  # temporary name + rename: never half a file
        {"mean": vectors.mean.contiguous()}, str(tmp),
        metadata={**meta, "tasks": ",".join(vectors.tasks), "layers": ",".join(map(str, vectors.layers))}),
        suffix=".safetensors")


def load_vectors(path: str | Path) -> tuple[list[str], list[int], Float[Tensor, "task layer d_model"]]:
    """Read ``task_vectors.safetensors`` of a run: (tasks, layers, mean vectors)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        return meta["tasks"].split(","), [int(x) for x in meta["layers"].split(",")], f.get_tensor("mean")


def add_spread_residual(fits: pd.DataFrame, mean: Float[Tensor, "task layer d_model"],
                        layers: Sequence[int]) -> pd.DataFrame:
    """(Re)compute ``rel_residual_spread`` of a fits table from the run's mean task vectors."""
    m = mean.double()
    spread = (m - m.mean(0, keepdim=True)).pow(2).sum(-1).mean(0).sqrt().numpy()
    scale = dict(zip(layers, spread))
    return fits.assign(rel_residual_spread=fits["residual"] / fits["layer"].map(scale))


def format_result(r: TaskVectorResult) -> str:
    best = r.best.copy()
    if "best_ci_low" in best:
        best["best_prob"] = [format_ci(m, lo, hi) for m, lo, hi in
                             zip(best["best_prob"], best.pop("best_ci_low"), best.pop("best_ci_high"))]
    weights = r.weights.copy()
    for col in [c for c in weights.columns if c.startswith("w_") and f"lo_{c}" in weights]:
        weights[col] = [format_ci(m, lo, hi) for m, lo, hi in
                        zip(weights[col], weights.pop(f"lo_{col}"), weights.pop(f"hi_{col}"))]
    if "rel_residual_ci_low" in weights:
        weights["rel_residual"] = [format_ci(m, lo, hi) for m, lo, hi in zip(
            weights["rel_residual"], weights.pop("rel_residual_ci_low"), weights.pop("rel_residual_ci_high"))]
    best = best.to_string(index=False, float_format="%.3f")
    w = weights.to_string(index=False, float_format="%.3f")
    s = r.interp_summary
    tail = (f"interpolation {s['task_a']}→{s['task_b']} at layer {s['layer']}: mae_prob={s['mae_prob']:.3f} "
            f"mae_share={s['mae_share']:.3f} crossing tv={s['crossing_tv']:.2f} icl={s['crossing_icl']:.2f}")
    return f"best layers:\n{best}\n\nsimplex weights at layer {r.layer}:\n{w}\n\n{tail}"
