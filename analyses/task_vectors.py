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

    from analyses.task_vectors import TaskVectorConfig, run_task_vectors
    result = run_task_vectors(TaskVectorConfig(model="tiny-llama", task_set="ab", n_prompts=4))

CLI: ``interp run task-vectors --model smollm2-135m --task-set ab --n-prompts 100``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from jaxtyping import Float  # noqa: E402
from torch import Tensor  # noqa: E402

from interp.activations import get_activations  # noqa: E402
from interp.cli import Command  # noqa: E402
from interp.config import add_dataclass_args, from_args  # noqa: E402
from interp.errors import InterpError  # noqa: E402
from interp.experiment import ExperimentConfig, make_model, open_run  # noqa: E402
from interp.models import LoadedModel  # noqa: E402
from interp.patching import PATCH_MODES, Patch, patched_logprobs  # noqa: E402
from interp.progress import progress  # noqa: E402
from interp.prompts import Prompt, build_prompts  # noqa: E402
from interp.runs import RunDir  # noqa: E402
from interp.scoring import score_prompts, tokenize_answers  # noqa: E402
from interp.tasks import Task, TaskSet, get_task_set  # noqa: E402

FIT_METHODS = ("ls", "nnls", "simplex")


# ---------------------------------------------------------------------------- configuration


@dataclass
class TaskVectorConfig(ExperimentConfig):
    """Options of ``interp run task-vectors``. ``n_prompts`` is prompts per task / mixture / λ and
    ``examples_per_task`` the in-context examples of *every* prompt (pure and mixed alike, so
    all prompts have the same length, as in the paper)."""

    tasks: str = field(default="", metadata={"help": "tasks, comma-separated (default: the set's default tasks)"})
    n_queries: int = field(default=50, metadata={"help": "zero-shot queries for the layer sweep and interpolation"})
    modes: str = field(default="replace,add,add:4",
                       metadata={"help": "patch modes for the sweep: replace, add, add:ALPHA (residual + ALPHA·v)"})
    layers: str = field(default="", metadata={"help": "layers to sweep, e.g. 0-29 or 3,5,7 (default: all)"})
    skews: str = field(default="0.75", metadata={"help": "skewed shares for the first pair, e.g. 0.75,0.9"})
    controls: bool = field(default=True, metadata={"help": "random-answer and other-task controls"})
    pair: str = field(default="", metadata={"help": "tasks A,B for the interpolation (default: the first two)"})
    interp_layer: int = field(default=-1, metadata={"help": "layer for the interpolation (-1: best replace layer)"})
    n_lambdas: int = field(default=30, metadata={"help": "λ grid points for the task-vector interpolation"})
    n_icl_lambdas: int = field(default=5, metadata={"help": "λ grid points for the real ICL mixes"})
    end_of_answer: str = field(default="", metadata={"help": "text scored after every answer (e.g. a newline)"})
    max_rows: int = field(default=96, metadata={"help": "patched rows per batched forward"})


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
            layers.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise InterpError(f"bad layer range {part!r}: write e.g. 0-29 or 3,5,7") from None
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
    """Tiny input spaces (``bias-add``: 10 digits) need repeated inputs, as in ``make_prompts``."""
    tiny = len(task_set.inputs()) < 100
    return {"with_replacement": tiny, "allow_query_in_examples": tiny}


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

    return TaskSet(name=f"{task_set.name}+rand", tasks=[*task_set.tasks, *(make(t) for t in tasks)],
                   inputs=task_set.inputs, format_input=fmt, separator=task_set.separator,
                   default_tasks=list(tasks), examples_per_task=task_set.examples_per_task)


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
                     show_progress: bool = True) -> Float[Tensor, "prompt layer d_model"]:
    """resid_post at each prompt's query separator, every layer (via the activation cache)."""
    layers = list(range(model.n_layers)) if layers is None else list(layers)
    acts = get_activations(model, prompts, ["resid_post"], layers=layers, positions="query",
                           show_progress=show_progress)
    return acts.stack("hook_resid_post", layers)[:, :, 0].permute(1, 0, 2).contiguous().float()


def extract_task_vectors(model: LoadedModel, task_set: TaskSet, tasks: Sequence[str], n_prompts: int = 100,
                         n_examples: int | None = None, seed: int = 0, separator: str | None = None,
                         show_progress: bool = True) -> TaskVectors:
    """Mean separator resid_post over ``n_prompts`` single-task prompts, per task and layer."""
    layers = list(range(model.n_layers))
    n_ex = n_examples or task_set.examples_per_task
    per_task = []
    for t in tasks:
        prompts = build_prompts(task_set, mixture={t: 1.0}, n_prompts=n_prompts, n_examples=n_ex, seed=seed,
                                separator=separator, **_sampling(task_set))
        per_task.append(separator_states(model, prompts, layers, show_progress))
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
    return out


def best_layers(summary: pd.DataFrame) -> pd.DataFrame:
    """Best layer (argmax mean P) per (task, mode, alpha), with the unpatched baseline."""
    base = summary[summary["mode"] == "none"].set_index("vector_task")["mean_prob"]
    patched = summary[summary["mode"] != "none"]
    idx = patched.groupby(["vector_task", "mode", "alpha"], sort=False)["mean_prob"].idxmax()
    best = patched.loc[idx, ["vector_task", "mode", "alpha", "layer", "mean_prob"]].rename(
        columns={"vector_task": "task", "layer": "best_layer", "mean_prob": "best_prob"})
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
                       separator: str | None = None, show_progress: bool = True) -> list[ProjectionTarget]:
    """Build and run the mixture prompts (fresh seed) and the controls."""
    n_ex = n_examples or task_set.examples_per_task
    tasks = list(tasks)
    targets: list[ProjectionTarget] = []
    for label, mix in default_mixtures(tasks, skews):
        prompts = build_prompts(task_set, mixture=mix, n_prompts=n_prompts, n_examples=n_ex, seed=seed,
                                separator=separator, **_sampling(task_set))
        states = separator_states(model, prompts, show_progress=show_progress)
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
        states = separator_states(model, prompts, show_progress=show_progress)
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
                    for level, y in levels.items():
                        w, res = fit_weights(y, basis, method)
                        ynorm = np.linalg.norm(y, axis=1)
                        cnorm = np.linalg.norm(y - center, axis=1)
                        common = {"layer": layer, "target": tgt.label, "kind": tgt.kind, "candidates": cand_name,
                                  "method": method, "level": level, "residual": float(res.mean()),
                                  "rel_residual": float((res / ynorm).mean()),
                                  "rel_residual_centered": float((res / cnorm).mean()),
                                  "rel_residual_spread": float(res.mean() / max(spread, 1e-12)), "n": len(y)}
                        for k, c in enumerate(cands):
                            rows.append({**common, "task": c, "share": tgt.shares.get(c, 0.0),
                                         "weight": float(w[:, k].mean()), "weight_sd": float(w[:, k].std())})
    return pd.DataFrame(rows)


def weights_table(fits: pd.DataFrame, layer: int, method: str = "simplex", candidates: str = "all",
                  level: str = "mean") -> pd.DataFrame:
    """Wide table at one layer: target × task weights next to shares, with the residuals."""
    s = fits[(fits["layer"] == layer) & (fits["method"] == method) & (fits["candidates"] == candidates)
             & (fits["level"] == level)]
    w = s.pivot_table(index=["target", "kind"], columns="task", values="weight", sort=False)
    sh = s.pivot_table(index=["target", "kind"], columns="task", values="share", sort=False)
    res = s.groupby(["target", "kind"], sort=False)[["rel_residual", "rel_residual_centered",
                                                     "rel_residual_spread"]].first()
    table = pd.concat([sh.add_prefix("share_"), w.add_prefix("w_"), res], axis=1).reset_index()
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


# ---------------------------------------------------------------------------- figures


def plot_layer_sweep(summary: pd.DataFrame, title: str = "") -> plt.Figure:
    """Mean P(answer) vs patched layer, one panel per mode, one line per task (dashed: baseline)."""
    modes = [(m, a) for m, a in summary[["mode", "alpha"]].drop_duplicates().itertuples(index=False) if m != "none"]
    fig, axes = plt.subplots(1, len(modes), figsize=(3.6 * len(modes), 3.0), sharey=True, squeeze=False)
    colors = dict(zip(summary["vector_task"].unique(), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for ax, (mode, alpha) in zip(axes[0], modes):
        for t, c in colors.items():
            s = summary[(summary["vector_task"] == t) & (summary["mode"] == mode) & (summary["alpha"] == alpha)]
            ax.plot(s["layer"], s["mean_prob"], color=c, label=t)
            ax.fill_between(s["layer"], s["mean_prob"] - s["sem"], s["mean_prob"] + s["sem"], color=c, alpha=0.2)
            base = summary[(summary["vector_task"] == t) & (summary["mode"] == "none")]["mean_prob"]
            if len(base):
                ax.axhline(float(base.iloc[0]), color=c, ls="--", lw=0.8)
        ax.set_title(mode if mode == "replace" else f"{mode} α={alpha:g}", fontsize=9)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("mean P(answer), zero-shot + patch")
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_weights(table: pd.DataFrame, tasks: Sequence[str], title: str = "") -> plt.Figure:
    """Fitted weights (bars) vs in-context shares (ticks) per target at one layer."""
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(table), 3.2))
    width = 0.8 / len(tasks)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, t in enumerate(tasks):
        x = np.arange(len(table)) + (k - (len(tasks) - 1) / 2) * width
        ax.bar(x, table[f"w_{t}"], width=width, color=colors[k % len(colors)], label=f"w({t})")
        ax.scatter(x, table[f"share_{t}"], marker="_", s=200, color="black", zorder=3)
    ax.set_xticks(np.arange(len(table)), table["target"], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("weight (bars) / share (—)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_residuals(fits: pd.DataFrame, method: str = "simplex", candidates: str = "mix",
                   best: Sequence[int] = (), title: str = "", column: str = "rel_residual_spread") -> plt.Figure:
    """Relative residual vs layer: mixes against controls; vertical lines at best layers."""
    s = fits[(fits["method"] == method) & (fits["level"] == "mean")]
    s = s[(s["candidates"] == candidates) | ((s["kind"] == "pure") & (s["candidates"] == "all"))]
    s = s.groupby(["kind", "target", "layer"])[column].first().reset_index()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    styles = {"pure": ("#7f7f7f", ":"), "mix": ("#1f77b4", "-"), "random_answers": ("#d62728", "--"),
              "other_task": ("#2ca02c", "-.")}
    for kind, g in s.groupby("kind"):
        color, ls = styles.get(str(kind), ("black", "-"))
        mean = g.groupby("layer")[column].mean()
        ax.plot(mean.index, mean.values, color=color, ls=ls, label=f"{kind} ({g['target'].nunique()})")
    for b in best:
        ax.axvline(b, color="black", lw=0.5, alpha=0.4)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{column} ({method})")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_projection_2d(proj: pd.DataFrame, method: str = "lda", title: str = "") -> plt.Figure:
    """Scatter of the 2-D map per layer: fitted pure prompts (small) and mixed prompts."""
    s = proj[proj["method"] == method]
    layers = sorted(s["layer"].unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(3.0 * len(layers), 3.0), squeeze=False)
    labels = [lab for lab in s["label"].unique() if s[s["label"] == lab]["kind"].iloc[0] != "pure"]
    colors = dict(zip(labels, itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])))
    for ax, layer in zip(axes[0], layers):
        for lab in labels:
            g = s[(s["layer"] == layer) & (s["label"] == lab)]
            fit = lab.startswith("fit:")
            marker = "o" if fit else ("x" if g["kind"].iloc[0] == "random_answers" else "^")
            ax.scatter(g["x"], g["y"], s=6 if fit else 12, marker=marker, color=colors[lab], alpha=0.6,
                       label=lab.removeprefix("fit:"))
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title or method.upper(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_interpolation(tv: pd.DataFrame, icl: pd.DataFrame, task_a: str, task_b: str, title: str = "") -> plt.Figure:
    """The paper's two panels: task-vector interpolation (top) and real ICL mixing (bottom)."""
    fig, axes = plt.subplots(2, 1, figsize=(4.6, 5.0), sharex=True)
    for ax, curve, name in ((axes[0], tv, "task-vector interpolation"), (axes[1], icl, "ICL mixture")):
        ax.stackplot(curve["lam"], curve["p_a"], curve["p_b"], curve["other"].clip(lower=0),
                     labels=[f"P({task_a})", f"P({task_b})", "other"], colors=["#1f77b4", "#ff7f0e", "#dddddd"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        ax.set_title(name, fontsize=9)
    axes[1].set_xlabel(f"λ  ({task_a} → {task_b})")
    axes[0].legend(fontsize=7, frameon=False, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
    out: Path | None = None


def _map_layers(best: pd.DataFrame, layer: int, n_layers: int, k: int = 6) -> list[int]:
    """Layers for the 2-D maps: the best layers' range plus evenly spread ones (at most k)."""
    chosen = {layer, *best[best["mode"] == "replace"]["best_layer"].astype(int)}
    spread = np.linspace(0, n_layers - 1, k).round().astype(int)
    for x in spread:
        if len(chosen) >= k:
            break
        chosen.add(int(x))
    return sorted(chosen)


def analyse(model: LoadedModel, config: TaskVectorConfig, show_progress: bool = True,
            run: RunDir | None = None) -> TaskVectorResult:
    """Every step of the analysis (tables also written stage by stage when ``run`` is given)."""

    def write(name: str, frame: pd.DataFrame) -> None:
        if run is not None:
            run.write_csv(name, frame)

    ts = get_task_set(config.task_set)
    tasks = resolve_tasks(ts, config.tasks)
    modes = parse_modes(config.modes)
    layers = parse_layers(config.layers, model.n_layers)
    eoa = config.end_of_answer or None
    # Distinct seeds: the mixtures' (and the pure "noise floor") prompts are fresh, not the
    # prompts the task vectors were averaged over.
    vectors = extract_task_vectors(model, ts, tasks, config.n_prompts, config.examples_per_task, config.seed,
                                   config.separator, show_progress)
    queries = zero_shot_queries(ts, tasks, config.n_queries, config.seed + 3, config.separator)
    sweep = layer_sweep(model, vectors, queries, modes, layers, eoa, config.max_rows, show_progress)
    summary = summarize_sweep(sweep)
    best = best_layers(summary)
    write("layer_sweep.csv", sweep)
    write("layer_sweep_summary.csv", summary)
    write("best_layers.csv", best)
    layer = analysis_layer(summary) if ("replace", 1.0) in modes else int(best["best_layer"].iloc[0])

    skews = [float(s) for s in config.skews.split(",") if s.strip()]
    targets = projection_targets(model, ts, tasks, config.n_prompts, config.examples_per_task, config.seed + 1,
                                 skews, config.controls, config.separator, show_progress)
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
    icl_scores = icl_mixing(model, ts, a, b, np.linspace(0, 1, config.n_icl_lambdas), config.n_prompts,
                            config.examples_per_task, config.seed + 4, config.separator, eoa, show_progress)
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

    save_file({"mean": vectors.mean.contiguous()}, str(path),
              metadata={**meta, "tasks": ",".join(vectors.tasks), "layers": ",".join(map(str, vectors.layers))})


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


def run_task_vectors(config: TaskVectorConfig, show_progress: bool = True) -> TaskVectorResult:
    """Run the whole analysis and write the run directory (tables, figures, vectors)."""
    model = make_model(config)
    run = open_run(config, "task-vectors", model)
    r = analyse(model, config, show_progress, run)
    save_vectors(r.vectors, run.file("task_vectors.safetensors"), {"model": model.name, "task_set": config.task_set})
    run.write_csv("interpolation.csv", r.interp_curves)
    run.write_csv("interpolation_scores.csv", r.interp_scores)
    run.write_json("metrics.json", {"analysis_layer": r.layer, "interpolation": r.interp_summary,
                                    "best_layers": r.best.to_dict(orient="records")})
    title = f"{model.name} · {config.task_set}"
    tasks = r.vectors.tasks
    figs = {
        "layer_sweep": plot_layer_sweep(r.sweep_summary, title),
        "weights": plot_weights(r.weights, tasks, f"{title} · simplex weights at layer {r.layer}"),
        "residuals": plot_residuals(r.fits, best=sorted(set(r.best["best_layer"].astype(int))), title=title),
        "projection_lda": plot_projection_2d(r.proj2d, "lda", f"{title} · LDA on pure-task prompts"),
        "projection_pca": plot_projection_2d(r.proj2d, "pca", f"{title} · PCA on pure-task prompts"),
    }
    tv = r.interp_curves[r.interp_curves["kind"] == "task_vector"]
    icl = r.interp_curves[r.interp_curves["kind"] == "icl"]
    figs["interpolation"] = plot_interpolation(tv, icl, r.interp_summary["task_a"], r.interp_summary["task_b"],
                                               f"{title} · layer {r.interp_summary['layer']}")
    for name, fig in figs.items():
        run.save_figure(name, fig)
        plt.close(fig)
    r.out = run.path
    return r


def format_result(r: TaskVectorResult) -> str:
    best = r.best.to_string(index=False, float_format="%.3f")
    w = r.weights.to_string(index=False, float_format="%.3f")
    s = r.interp_summary
    tail = (f"interpolation {s['task_a']}→{s['task_b']} at layer {s['layer']}: mae_prob={s['mae_prob']:.3f} "
            f"mae_share={s['mae_share']:.3f} crossing tv={s['crossing_tv']:.2f} icl={s['crossing_icl']:.2f}")
    return f"best layers:\n{best}\n\nsimplex weights at layer {r.layer}:\n{w}\n\n{tail}"


def _cli_run(args: argparse.Namespace) -> int:
    config = from_args(TaskVectorConfig, args)
    result = run_task_vectors(config)
    print(format_result(result))
    print(f"results: {result.out}")
    return 0


CLI_COMMANDS = [
    Command(("run", "task-vectors"), "task vectors: layer sweep, projection of mixes, interpolation (paper §6)",
            lambda p: add_dataclass_args(p, TaskVectorConfig), _cli_run),
]
