"""Logit lens: at which layer does each task's answer appear in the residual stream?

At the query position (the final separator, where every task's answer is predicted) we read
the residual stream before every block (``blocks.{l}.hook_resid_pre``) and after the last one
(``blocks.{L-1}.hook_resid_post``, layer ``L``, labelled ``final``), apply the model's *own*
final norm and unembedding, and record for each task's answer its first token's probability,
log-probability and rank (1 = the top token). At layer ``L`` this is exactly the model's output
distribution.

Conditions: ``superposed`` (the prompts as built) and, as controls, ``single:<task>``: the same
examples (same inputs, same order) and the same query, but every example answered by ``<task>``
only. Comparing the curves answers: do the tasks' answers rise together (in parallel) or one
after another, and does superposition delay or weaken any of them?

Two views per layer. *First token* (``prob``, ``rank``): the answer's first token at the query
position. *Full answer* (``answer_prob``, ``answer_logprob``): the whole answer teacher-forced
through the lens — prompt + answer run once, and at every layer each answer token is read at its
own position (the position before it) and the log-probabilities summed; at the last layer this
is exactly the model's own teacher-forced P(answer), the number the ``superposition`` analysis
reports. When two tasks' answers share their first token (``ab``: ``12`` and ``105``; every sum
≥ 100 starts with ``1``) the first-token view cannot tell them apart: the row is flagged
``shared_first_token``, summaries report the flag's rate, and ``entry_layers`` marks such a
first-token entry inconclusive — conclusions about when an answer appears rest on the full-answer
view. Every mean carries a 95 % bootstrap interval over prompts.

Python::

    from analyses.logit_lens import logit_lens, entry_layers
    from interp_app.figures.logit_lens import plot_logit_lens
    table = logit_lens(model, prompts)           # mean over prompts per (layer, task, condition)
    fig = plot_logit_lens(table)
    entry_layers(table, k=10)                    # first layer whose median rank is <= 10

CLI (:mod:`interp_app.commands.logit_lens`):
``interp run logit-lens --model smollm2-135m --task-set country --n-prompts 10``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.activations import get_activations
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Example, Prompt, render_prompt
from interp.scoring import natural_split, tokenize_answers
from interp.stats import bootstrap_mean
from interp.tasks import TaskSet, get_task_set
from interp.validate import Validated

SUPERPOSED = "superposed"


@dataclass
class LogitLensOptions(Validated):
    """logit-lens options"""

    controls: bool = field(default=True, metadata={"help": "also run single-task control prompts (same queries)"})
    top_k: int = field(default=10, metadata={"help": "rank threshold for the 'first layer in the top k' table", "min": 1})
    full_answer: bool = field(default=True, metadata={"help": "also read each task's whole answer through the lens "
                                                              "(teacher-forced: each answer token at its own position)"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples of prompts for the intervals"})


# ----------------------------------------------------------------------------- helpers


def lens_logits(model: LoadedModel, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab"]:
    """Logits the model would output if ``resid`` were its final residual stream: its own final
    norm, unembedding and final-logit soft-capping (see :class:`interp.adapter.ModelAdapter`)."""
    return model.adapter.resid_to_logits(resid)


def lens_sites(model: LoadedModel) -> list[tuple[int, str, str]]:
    """(layer index, label, hook name): resid_pre of every block, then the final residual."""
    n = model.n_layers
    sites = [(layer, f"resid_pre {layer}", f"blocks.{layer}.hook_resid_pre") for layer in range(n)]
    sites.append((n, "final", f"blocks.{n - 1}.hook_resid_post"))
    return sites


def query_hooks(model: LoadedModel) -> list[str]:
    """The query-position activations both this analysis and head attribution read.

    One shared list (residuals before every block, every head's ``z``, every MLP output, the
    final residual; each block's attention output, which head attribution checks its heads against)
    so that one hooked pass, cached on disk, serves both analyses.
    """
    return ["resid_pre", "attn.hook_z", "hook_attn_out", "hook_mlp_out", f"blocks.{model.n_layers - 1}.hook_resid_post"]


def _raw_inputs(task_set: TaskSet) -> dict[str, Any]:
    return {task_set.format_input(x): x for x in task_set.inputs()}


def single_task_controls(prompts: Sequence[Prompt], task_set: TaskSet | str) -> dict[str, list[Prompt]]:
    """For each task, the same prompts with every example answered by that task only.

    Inputs, their order and the query are unchanged, so the prompt length and the query's
    position barely move; only which task the context demonstrates changes.
    """
    ts = get_task_set(task_set) if isinstance(task_set, str) else task_set
    raw = _raw_inputs(ts)
    tasks = list(prompts[0].answers) if prompts else []
    out: dict[str, list[Prompt]] = {}
    for task in tasks:
        answer = ts.task(task).answer
        controls = []
        for p in prompts:
            try:
                examples = [Example(e.input, task, answer(raw[e.input])) for e in p.examples]
            except KeyError as exc:
                raise InterpError(f"example input {exc} is not an input of task set {ts.name!r}: "
                                  "build controls with the prompts' own task set") from None
            text, offsets = render_prompt(examples, p.query, p.separator)
            controls.append(Prompt(
                prompt_id=p.prompt_id, task_set=p.task_set, text=text, query=p.query, answers=dict(p.answers),
                shares={t: float(t == task) for t in p.answers},
                counts={t: (len(examples) if t == task else 0) for t in p.answers},
                examples=examples, separator=p.separator, separator_offsets=offsets,
            ))
        out[task] = controls
    return out


def first_answer_tokens(model: LoadedModel, prompt: Prompt) -> dict[str, int]:
    """Each task's answer's first token id, tokenized in context (as the scorer does)."""
    ids = model.encode_prompt(prompt.text)
    return {a.task: a.ids[0] for a in tokenize_answers(model, prompt.text, ids, prompt.answers)}


@torch.no_grad()
def teacher_forced_residuals(model: LoadedModel, ids: list[int], positions: list[int]
                             ) -> Float[Tensor, "site pos d_model"]:
    """Residual stream before every block and after the last one, at ``positions`` of one forward of ``ids``
    (the sites of :func:`lens_sites`)."""
    layers = model.adapter.layers()
    captured: list[Tensor] = []
    index = torch.tensor(positions, device=model.device)

    def pre(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(hidden[0].index_select(0, index).float())

    def post(_module: torch.nn.Module, _args: tuple, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        captured.append(hidden[0].index_select(0, index).float())

    handles = [layer.register_forward_pre_hook(pre, with_kwargs=True) for layer in layers]
    handles.append(layers[-1].register_forward_hook(post))
    try:
        model.hf_model(input_ids=torch.tensor([ids], device=model.device), use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(captured)


@torch.no_grad()
def full_answer_lens(model: LoadedModel, prompt: Prompt) -> dict[str, Float[Tensor, " site"]]:
    """Per task: log P(whole answer) read through the lens at every site (teacher-forced).

    The prompt/answer split is the scorer's (:func:`interp.scoring.natural_split`), so at the
    final site this equals the scorer's log-probability.
    """
    split = natural_split(model, prompt.text, prompt.answers)
    out = {}
    for a in split.answers:
        positions = [len(split.ids) - 1 + t for t in range(len(a.ids))]
        resid = teacher_forced_residuals(model, split.ids + a.ids, positions)  # [site, pos, d]
        logp = torch.log_softmax(lens_logits(model, resid).float(), dim=-1)
        targets = torch.tensor(a.ids, device=logp.device)
        out[a.task] = logp.gather(-1, targets[None, :, None].expand(logp.shape[0], -1, 1))[..., 0].sum(-1).cpu()
    return out


# ----------------------------------------------------------------------------- analysis


@torch.no_grad()
def logit_lens_rows(model: LoadedModel, prompts: Sequence[Prompt], condition: str = SUPERPOSED,
                    show_progress: bool = True, use_cache: bool = True,
                    cache_dir: str | os.PathLike[str] | None = None, full_answer: bool = True) -> pd.DataFrame:
    """Per-prompt logit lens at the query position.

    Returns one row per (prompt, layer, task): ``prompt_id, condition, layer, site, task,
    token, token_str, prob, logprob, rank, shared_first_token`` and, with ``full_answer``,
    ``answer_prob, answer_logprob, n_tokens`` (the whole answer, teacher-forced through the lens).
    ``layer`` runs 0..L where ``L`` (site ``final``) is the output distribution.
    """
    if not prompts:
        raise InterpError("no prompts: build at least one prompt")
    sites = lens_sites(model)
    acts = get_activations(model, prompts, query_hooks(model), positions="query",
                           show_progress=show_progress, use_cache=use_cache, cache_dir=cache_dir, log=show_progress)
    rows = []
    for i, p in enumerate(progress(prompts, desc=f"logit lens ({condition})", disable=not show_progress)):
        first = first_answer_tokens(model, p)
        tasks = list(first)
        tokens = torch.tensor([first[t] for t in tasks])
        resid = torch.stack([acts[name][i, 0] for _, _, name in sites])  # [site, d_model]
        logits = lens_logits(model, resid).cpu()  # [site, vocab]
        logp = torch.log_softmax(logits, dim=-1)
        target = logits[:, tokens]  # [site, task]
        # Rank 1 = the top token; ties count in the answer's favour.
        rank = 1 + (logits[:, None, :] > target[:, :, None]).sum(-1)
        whole = full_answer_lens(model, p) if full_answer else {}
        for s, (layer, label, _) in enumerate(sites):
            for k, task in enumerate(tasks):
                lp = float(logp[s, tokens[k]])
                rows.append({
                    "prompt_id": p.prompt_id, "condition": condition, "layer": layer, "site": label,
                    "task": task, "token": int(tokens[k]),
                    "token_str": model.tokenizer.decode([int(tokens[k])]),
                    "prob": float(np.exp(lp)), "logprob": lp, "rank": int(rank[s, k]),
                    "shared_first_token": sum(first[t] == first[task] for t in tasks) > 1,
                })
                if full_answer:
                    alp = float(whole[task][s])
                    rows[-1].update({"answer_prob": float(np.exp(alp)), "answer_logprob": alp})
    return pd.DataFrame(rows)


def summarize_lens(rows: pd.DataFrame, top_k: int = 10, n_boot: int = 2000) -> pd.DataFrame:
    """Mean over prompts per (layer, task, condition): prob, logprob, rank, plus median rank,
    the fraction of prompts with the answer in the top ``top_k`` and the shared-first-token rate;
    ``prob``, ``rank`` and (when read) ``answer_prob`` with 95 % bootstrap intervals over prompts
    (``<col>_ci_low``, ``<col>_ci_high``)."""
    g = rows.groupby(["condition", "task", "layer", "site"], sort=False)
    out = g.agg(prob=("prob", "mean"), logprob=("logprob", "mean"), rank=("rank", "mean"),
                median_rank=("rank", "median"), shared_first_token=("shared_first_token", "mean"),
                n_prompts=("prompt_id", "nunique")).reset_index()
    out[f"in_top{top_k}"] = g["rank"].apply(lambda r: float((r <= top_k).mean())).to_numpy()
    cols = ["layer", "site", "task", "condition", "prob", "prob_ci_low", "prob_ci_high", "logprob", "rank",
            "rank_ci_low", "rank_ci_high", "median_rank", f"in_top{top_k}", "shared_first_token", "n_prompts"]
    measured = ["prob", "rank"]
    if "answer_prob" in rows.columns:
        out["answer_prob"] = g["answer_prob"].mean().to_numpy()
        out["answer_logprob"] = g["answer_logprob"].mean().to_numpy()
        cols[7:7] = ["answer_prob", "answer_prob_ci_low", "answer_prob_ci_high", "answer_logprob"]
        measured.append("answer_prob")
    for col in measured:
        bounds = [bootstrap_mean(v.to_numpy(), n_boot=n_boot)[1:] for _, v in g[col]]
        out[f"{col}_ci_low"] = [b[0] for b in bounds]
        out[f"{col}_ci_high"] = [b[1] for b in bounds]
    return out[cols]


def logit_lens(model: LoadedModel, prompts: Sequence[Prompt], controls: bool = True,
               task_set: TaskSet | str | None = None, top_k: int = 10, show_progress: bool = True,
               return_rows: bool = False, use_cache: bool = True, cache_dir: str | os.PathLike[str] | None = None,
               full_answer: bool = True, n_boot: int = 2000) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Logit lens of every task's answer on ``prompts`` (mean over prompts).

    Args:
        model: a loaded model.
        prompts: superposed prompts (condition ``superposed``).
        controls: also run :func:`single_task_controls` of each task (condition ``single:<task>``).
        task_set: the prompts' task set (default: looked up from the prompts).
        top_k: threshold for the ``in_top{k}`` column.
        return_rows: also return the per-prompt rows.
        use_cache: read/write residuals through the on-disk activation cache.
        cache_dir: that cache's directory (default: see :func:`interp.cache.resolve_cache_dir`).

    Returns:
        Tidy DataFrame ``layer, site, task, condition, prob, logprob, rank, median_rank,
        in_top{k}, shared_first_token, n_prompts`` (and the per-prompt rows if asked).
    """
    frames = [logit_lens_rows(model, prompts, SUPERPOSED, show_progress, use_cache, cache_dir, full_answer)]
    if controls:
        ts = task_set if task_set is not None else prompts[0].task_set
        for task, control in single_task_controls(prompts, ts).items():
            frames.append(logit_lens_rows(model, control, f"single:{task}", show_progress, use_cache, cache_dir,
                                          full_answer))
    rows = pd.concat(frames, ignore_index=True)
    table = summarize_lens(rows, top_k, n_boot)
    return (table, rows) if return_rows else table


def entry_layers(table: pd.DataFrame, k: int = 10, stat: str = "median_rank") -> pd.DataFrame:
    """First layer at which each task's answer's ``stat`` (median rank by default) is ``<= k``.

    Returns ``condition, task, first_layer_top{k}`` (NaN when it never enters), plus the
    final-layer rank and probability for context, the share of prompts where the answer's first
    token is shared with another task's (``shared_first_token``; ``first_token_conclusive`` is
    False when any prompt shares it: the first-token entry layer then says nothing about this
    task), and the final full-answer probability when read.
    """
    rows = []
    for (condition, task), g in table.groupby(["condition", "task"], sort=False):
        g = g.sort_values("layer")
        hit = g[g[stat] <= k]
        final = g.iloc[-1]
        row = {"condition": condition, "task": task,
               f"first_layer_top{k}": int(hit["layer"].iloc[0]) if len(hit) else np.nan,
               "final_median_rank": float(final["median_rank"]), "final_prob": float(final["prob"]),
               }
        if "shared_first_token" in g.columns:
            row["shared_first_token"] = float(g["shared_first_token"].max())
            row["first_token_conclusive"] = bool(g["shared_first_token"].max() == 0)
        if "answer_prob" in g.columns:
            row["final_answer_prob"] = float(final["answer_prob"])
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the analysis


@dataclass
class LogitLensResult:
    table: pd.DataFrame
    rows: pd.DataFrame
    entry: pd.DataFrame


def analyse(model: LoadedModel, prompts: Sequence[Prompt], options: LogitLensOptions, task_set: TaskSet | str | None = None,
            show_progress: bool = True, use_cache: bool = True,
            cache_dir: str | os.PathLike[str] | None = None) -> LogitLensResult:
    """The logit lens (with controls when ``options.controls``) and each task's entry layer (no files written)."""
    table, rows = logit_lens(model, prompts, controls=options.controls, task_set=task_set, top_k=options.top_k,
                             show_progress=show_progress, return_rows=True, use_cache=use_cache, cache_dir=cache_dir,
                             full_answer=options.full_answer, n_boot=options.n_boot)
    return LogitLensResult(table, rows, entry_layers(table, options.top_k))
