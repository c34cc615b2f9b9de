"""Which attention heads write each task's answer? Direct logit attribution, overlap, ablation.

**Direct logit attribution (DLA).** At the query position the final residual is a sum of
component outputs: the token embedding, every attention head's ``z[h] @ W_O[h]`` (plus the
output bias ``b_O`` where a model has one), and every MLP's output. The logit of token ``t`` is

    logit_t = RMSNorm(resid) @ W_U[:, t] = sum_c  (out_c / scale) @ (w_final * W_U[:, t])

where ``scale = sqrt(mean(resid**2) + eps)`` is the final norm's scale of the *actual* final
residual at that position (frozen, as TransformerLens does) and ``w_final`` the norm's weight,
folded into the unembedding. Each component's term is its direct logit attribution. We
attribute the *centred* logit (minus its mean over the vocabulary, which softmax ignores) of each
task's answer (first token) and the logit *difference* between task k's answer and the mean of
the other tasks' answers. The attributions of all components sum to the centred logit exactly
(:attr:`HeadAttributionResult.closure`). Per-head outputs are formed only at the query position,
from ``attn.hook_z`` and ``W_O`` (never for every position). With grouped-query attention
``hook_z`` is already per *query* head, so heads are ``L{layer}H{query head}``.

**Overlap.** Each task's top-n heads (by mean attribution over prompts), their Jaccard overlap
across tasks, and a heads × tasks table: do different tasks use different heads? DLA reads each
answer's *first* token. When two tasks' answers share their first token in a prompt (``ab``: sums
≥ 100 start with ``1`` like many operands) the two tasks' attributions there are the same number,
which would manufacture overlap; such prompts are **excluded** from the head table, the rankings
and the overlap (``HeadAttributionResult.excluded_shared`` counts them; if every prompt shares,
all are kept and the count says so). Every head's mean attribution carries a 95 % bootstrap
interval over prompts, and ``top_n_stability`` says how often the head stays in its task's top-n
across bootstrap resamples of the prompts.

**Ablation (causal check).** Replace the top-n heads of task k — at *every* position of the
prompt and of the teacher-forced answer — by their mean output (``z`` averaged over all prompts
and all prompt positions) or by zero, and score every task's full multi-token answer
probability. Does removing "task k's heads" remove task k specifically? A control ablates as
many random heads that are in no task's top-n set. Ablation hooks the HF model's ``o_proj``
input, which is ``hook_z`` flattened (head-major), so scoring reuses the KV-cached scorer.

Python::

    from analyses.head_attribution import head_attribution, top_heads, head_overlap, ablate_heads
    result = head_attribution(model, prompts)
    top_heads(result, "capital", n=5)                  # [(layer, head), ...]
    jaccard, membership = head_overlap(result, n=5)
    scores = ablate_heads(model, prompts, top_heads(result, "capital"), mode="mean")

CLI (:mod:`interp_app.commands.heads`):
``interp run heads --model smollm2-135m --task-set country --n-prompts 10 --top-n 5``.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.logit_lens import first_answer_tokens, query_hooks
from interp.activations import get_activations, token_positions
from interp.errors import InterpError
from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Prompt
from interp.scoring import score_prompts
from interp.stats import bootstrap_mean, format_ci, resample_indices
from interp.validate import Validated

Head = tuple[int, int]
METRICS = {"logit": "logit_attr", "diff": "diff_attr"}
ABLATION_MODES = ("mean", "zero")


@dataclass
class HeadsOptions(Validated):
    """head-attribution options"""

    top_n: int = field(default=5, metadata={"help": "heads per task in the top set (overlap and ablation)", "min": 1})
    rank_by: str = field(default="logit", metadata={"help": "rank heads by 'logit' (centred answer logit) or 'diff' (answer minus other tasks' answers)", "choices": ("logit", "diff")})
    ablation: str = field(default="mean,zero", metadata={"help": "ablation modes to run: mean, zero, both comma-separated, or none"})
    random_control: bool = field(default=True, metadata={"help": "also ablate top-n random heads that are in no task's top set"})
    attention_prompt: int = field(default=0, metadata={"help": "index of the prompt whose attention is rendered", "min": 0})
    attention_window: int = field(default=64, metadata={"help": "render attention over the last N tokens only (0: all)", "min": 0})

    def _validate(self) -> None:
        parse_modes(self.ablation)


# ----------------------------------------------------------------------------- names


def head_name(layer: int, head: int) -> str:
    """``L12H3``: layer 12, query head 3."""
    return f"L{layer}H{head}"


def parse_head(name: str) -> Head:
    """Inverse of :func:`head_name`."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name.strip())
    if not m:
        raise InterpError(f"bad head name {name!r}: write heads like L12H3")
    return int(m.group(1)), int(m.group(2))


# ----------------------------------------------------------------------------- weights


def output_weights(model: LoadedModel) -> tuple[Float[Tensor, "layer head d_head d_model"], Tensor | None]:
    """``W_O`` per query head and the attention output bias ``b_O`` ([layer, d_model]; None when zero)."""
    W_O, b_O = model.adapter.output_weights()
    return W_O.float(), (b_O.float() if bool(b_O.abs().gt(0).any()) else None)


def dla_refusal(model: LoadedModel) -> str | None:
    """Why direct logit attribution cannot be exact on ``model`` (None when it can)."""
    return model.adapter.dla_unsupported()


def closure_tolerance(model: LoadedModel) -> float:
    """Largest |Σ attributions − logit| accepted, relative to max(1, |logit|): float error only."""
    return 1e-4 if model.dtype == torch.float32 else 5e-2


# ----------------------------------------------------------------------------- DLA


@dataclass
class HeadAttributionResult:
    """Direct logit attribution of a prompt set.

    Attributes:
        attributions: one row per (prompt, task, component): ``prompt_id, task, token, component,
            kind (embed|head|attn_bias|mlp|unembed_bias), layer, head, logit_attr, diff_attr``.
        closure: per (prompt, task): the centred logit and logit difference computed from the
            model's output, the sums of all attributions, and their absolute errors.
        heads: per (task, head): mean/std over prompts of both attributions and their ranks
            (1 = the head that raises the answer most).
        components: per (task, component), mean attributions of every component (MLPs too).
        tasks: task names in order.
    """

    attributions: pd.DataFrame
    closure: pd.DataFrame
    heads: pd.DataFrame
    components: pd.DataFrame
    tasks: list[str]
    n_layers: int
    n_heads: int
    excluded_shared: int = 0  # prompts left out of heads/rankings/overlap: two tasks' answers share a first token


def _components(model: LoadedModel, attn_bias: bool, norm_bias: bool) -> list[dict[str, Any]]:
    comps: list[dict[str, Any]] = [{"component": "embed", "kind": "embed", "layer": -1, "head": -1}]
    for layer in range(model.n_layers):
        comps += [{"component": head_name(layer, h), "kind": "head", "layer": layer, "head": h}
                  for h in range(model.n_heads)]
        if attn_bias:
            comps.append({"component": f"L{layer}b_O", "kind": "attn_bias", "layer": layer, "head": -1})
        comps.append({"component": f"MLP{layer}", "kind": "mlp", "layer": layer, "head": -1})
    if norm_bias:
        comps.append({"component": "ln_final.b", "kind": "norm_bias", "layer": model.n_layers, "head": -1})
    return comps


def residual_components(model: LoadedModel, acts: Any, n_prompts: int
                        ) -> tuple[Float[Tensor, "prompt component d_model"], bool, float]:
    """What each component adds to the final residual at the query, as the model adds it (float64).

    Heads: ``z[h] @ W_O[h]``; where the model normalises the attention output before the residual
    add (OLMo 2, Gemma 2/3 post-norms), each head's share goes through that norm with its scale
    frozen at the actual attention output's, like the final norm's. MLPs: the block's MLP
    contribution as added to the residual. Returns the components, whether an attention-bias
    component is present, and the largest error of the heads + bias rebuilding each block's
    attention output (a check of the adapter, not an approximation).
    """
    W_O, b_O = model.adapter.output_weights()
    posts = [model.adapter.post_attn_norm(layer) for layer in range(model.n_layers)]
    attn_bias = bool(b_O.abs().gt(0).any()) or any(p is not None and p.bias is not None for p in posts)
    outs = [acts["blocks.0.hook_resid_pre"][:, 0].double()[:, None]]  # embed: [P, 1, d]
    rebuild_error = 0.0
    for layer in range(model.n_layers):
        z = acts[f"blocks.{layer}.attn.hook_z"][:, 0].double()  # [P, H, d_head]
        heads = torch.einsum("phe,hed->phd", z, W_O[layer])
        bias = b_O[layer].expand(n_prompts, -1)
        post = posts[layer]
        if post is not None:
            scale = post.scale(heads.sum(1) + bias)  # [P, 1]
            heads = post.linear(heads, scale[:, None])
            bias = post.linear(bias, scale) + (post.bias if post.bias is not None else 0)
        added = acts[f"blocks.{layer}.hook_attn_out"][:, 0].double()
        rebuild_error = max(rebuild_error, float((heads.sum(1) + bias - added).abs().max()))
        outs.append(heads)
        if attn_bias:
            outs.append(bias[:, None])
        outs.append(acts[f"blocks.{layer}.hook_mlp_out"][:, 0].double()[:, None])
    return torch.cat(outs, dim=1), attn_bias, rebuild_error


@torch.no_grad()
def head_attribution(model: LoadedModel, prompts: Sequence[Prompt], show_progress: bool = True,
                     use_cache: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> HeadAttributionResult:
    """Direct logit attribution at the query position of every head, MLP and the embedding.

    The attributed quantity is the centred logit *before* final-logit soft-capping (Gemma 2):
    soft-capping is a monotone squashing of that logit, not a sum over components.

    Args:
        model: a loaded model whose final norm (and post-norms, if any) the adapter can express
            (RMSNorm with ``w`` or ``1 + w``, LayerNorm with or without weights); others refuse.
        prompts: prompts whose ``answers`` name the tasks (all prompts must score the same tasks).
        show_progress: progress bars.
        use_cache: read/write the query-position activations through the on-disk cache.
        cache_dir: that cache's directory (default: see :func:`interp.cache.resolve_cache_dir`).

    Returns:
        :class:`HeadAttributionResult` (tables described there).

    Raises:
        InterpError: before any forward pass when the architecture cannot be attributed exactly;
            after it when the attributions do not sum to the logit within :func:`closure_tolerance`.
    """
    if not prompts:
        raise InterpError("no prompts: build at least one prompt")
    tasks = list(prompts[0].answers)
    if any(list(p.answers) != tasks for p in prompts):
        raise InterpError("prompts score different tasks: attribute one prompt set (one mixture) at a time")
    refusal = dla_refusal(model)
    if refusal is not None:
        raise InterpError(f"head attribution refused: {refusal}")
    norm = model.adapter.final_norm
    assert not isinstance(norm, str)
    L, H = model.n_layers, model.n_heads
    final_name = f"blocks.{L - 1}.hook_resid_post"
    acts = get_activations(model, prompts, query_hooks(model),
                           positions="query", show_progress=show_progress, use_cache=use_cache, cache_dir=cache_dir,
                           log=show_progress)
    tokens = torch.tensor([[first_answer_tokens(model, p)[t] for t in tasks]
                           for p in progress(prompts, desc="answer tokens", disable=not show_progress)])  # [P, K]

    resid = acts[final_name][:, 0].double()  # [P, d_model]
    scale = norm.scale(resid)  # [P, 1] the final norm's frozen scale
    # Centred unembedding directions of each prompt's answer tokens: [d_model, P, K] (only these columns
    # of W_U are read in float64: a full float64 copy would be the largest allocation of the analysis).
    columns, mean_column, b_U = model.adapter.unembed_columns(tokens)
    directions = columns - mean_column[:, None, None]

    outputs, attn_bias, rebuild_error = residual_components(model, acts, len(prompts))
    comp_out = norm.linear(outputs, scale[:, :, None])  # [P, C, d]
    attr = torch.einsum("pcd,dpk->pck", comp_out, directions)  # [P, C, K]
    comps = _components(model, attn_bias, norm.bias is not None)
    if norm.bias is not None:
        bias_logits = torch.einsum("d,dpk->pk", norm.bias.double(), directions)  # [P, K]
        attr = torch.cat([attr, bias_logits[:, None, :]], dim=1)
    if b_U is not None:
        centred_bias = (b_U - b_U.mean())[tokens]  # [P, K]
        attr = torch.cat([attr, centred_bias[:, None, :]], dim=1)
        comps.append({"component": "b_U", "kind": "unembed_bias", "layer": L, "head": -1})
    K = len(tasks)
    # Logit difference: answer k minus the mean of the other tasks' answers (linear in components).
    if K > 1:
        diff = attr * K / (K - 1) - attr.sum(-1, keepdim=True) / (K - 1)
    else:
        diff = attr.clone()

    # Reference: the model's own centred logits at the query (its real final norm and head, pre-cap).
    logits = model.adapter.resid_to_logits(resid.float(), softcap=False).double().cpu()
    logits = logits - logits.mean(-1, keepdim=True)
    target = logits.gather(1, tokens)  # [P, K]
    target_diff = target * K / (K - 1) - target.sum(-1, keepdim=True) / (K - 1) if K > 1 else target

    P, C = attr.shape[0], attr.shape[1]
    comp_frame = pd.DataFrame(comps)
    frame = pd.DataFrame({
        "prompt_id": np.repeat([p.prompt_id for p in prompts], C * K),
        "task": np.tile(tasks, P * C),
        "token": tokens[:, None, :].expand(P, C, K).reshape(-1).numpy(),
        "logit_attr": attr.reshape(-1).float().numpy(),
        "diff_attr": diff.reshape(-1).float().numpy(),
    })
    comp_rows = comp_frame.loc[np.tile(np.repeat(np.arange(C), K), P)].reset_index(drop=True)
    attributions = pd.concat([frame[["prompt_id", "task", "token"]], comp_rows, frame[["logit_attr", "diff_attr"]]],
                             axis=1)
    closure = pd.DataFrame({
        "prompt_id": np.repeat([p.prompt_id for p in prompts], K), "task": np.tile(tasks, P),
        "logit": target.reshape(-1).numpy(), "sum_attr": attr.sum(1).reshape(-1).numpy(),
        "logit_diff": target_diff.reshape(-1).numpy(), "sum_diff_attr": diff.sum(1).reshape(-1).numpy(),
    })
    closure["error"] = (closure["logit"] - closure["sum_attr"]).abs()
    closure["diff_error"] = (closure["logit_diff"] - closure["sum_diff_attr"]).abs()
    closure["attn_rebuild_error"] = rebuild_error
    tol = closure_tolerance(model)
    worst = float((closure["error"] / closure["logit"].abs().clip(lower=1.0)).max())
    if worst > tol or rebuild_error > tol * max(1.0, float(outputs.abs().max())):
        raise InterpError(
            f"head attribution does not close on {model.adapter.architecture}: attributions miss the logit by "
            f"{worst:.1e} (relative; tolerance {tol:.0e}), heads rebuild the attention output to {rebuild_error:.1e}; "
            "the adapter misdescribes this architecture — please report it")
    components = (attributions.groupby(["task", "component", "kind", "layer", "head"], sort=False)
                  [["logit_attr", "diff_attr"]].mean().reset_index())
    # Prompts where two tasks' answers start with the same token: their first-token DLA cannot tell the
    # tasks apart, so they stay out of the head table, rankings and overlap.
    shared = [p.prompt_id for p, row in zip(prompts, tokens.tolist()) if len(set(row)) < len(row)]
    keep = attributions["kind"] == "head"
    if len(shared) < len(prompts):
        keep &= ~attributions["prompt_id"].isin(shared)
    heads = _head_table(attributions[keep])
    return HeadAttributionResult(attributions, closure, heads, components, tasks, L, H, excluded_shared=len(shared)
                                 if len(shared) < len(prompts) else 0)


def _bootstrap_weights(n_prompts: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_prompts]`` resample weights (how often each prompt is drawn / n): ``W @ X`` gives the
    resampled means of every column of a per-prompt matrix ``X`` at once."""
    idx = resample_indices(n_prompts, n_boot, seed)
    weights = np.zeros((n_boot, n_prompts))
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_prompts), idx.reshape(-1)), 1.0)
    return weights / n_prompts


def _head_table(head_rows: pd.DataFrame, top_n: int = 5, n_boot: int = 1000) -> pd.DataFrame:
    g = head_rows.groupby(["task", "component", "layer", "head"], sort=False)
    table = g.agg(logit_attr=("logit_attr", "mean"), logit_attr_std=("logit_attr", "std"),
                  diff_attr=("diff_attr", "mean"), diff_attr_std=("diff_attr", "std"),
                  n_prompts=("prompt_id", "nunique")).reset_index()
    table = table.rename(columns={"component": "head_name"})
    for metric, col in METRICS.items():
        table[f"rank_{metric}"] = table.groupby("task")[col].rank(ascending=False, method="first").astype(int)
    # Intervals and top-n stability from one set of prompt resamples shared by every head and task.
    keys = list(zip(table["task"], table["head_name"]))
    weights = None
    for metric, col in METRICS.items():
        wide = head_rows.pivot_table(index="prompt_id", columns=["task", "component"], values=col, aggfunc="mean")
        wide = wide.reindex(columns=pd.MultiIndex.from_tuples(keys))
        if weights is None:
            weights = _bootstrap_weights(len(wide), n_boot)
        means = weights @ wide.to_numpy()  # [n_boot, task × head]
        table[f"{col}_ci_low"], table[f"{col}_ci_high"] = np.quantile(means, [0.025, 0.975], axis=0)
        stability = np.zeros(len(keys))
        for task in dict.fromkeys(table["task"]):
            cols = np.flatnonzero(table["task"].to_numpy() == task)
            n = min(top_n, len(cols))
            top = np.argsort(-means[:, cols], axis=1)[:, :n]
            counts = np.bincount(top.reshape(-1), minlength=len(cols))
            stability[cols] = counts / len(means)
        table[f"top_n_stability_{metric}"] = stability
    return table


def _heads_table(result: HeadAttributionResult | pd.DataFrame) -> pd.DataFrame:
    return result.heads if isinstance(result, HeadAttributionResult) else result


def top_heads(result: HeadAttributionResult | pd.DataFrame, task: str, n: int = 5, by: str = "logit") -> list[Head]:
    """The ``n`` heads with the largest mean attribution to ``task``'s answer (``by``: logit | diff)."""
    if by not in METRICS:
        raise InterpError(f"unknown ranking {by!r}: use one of {', '.join(METRICS)}")
    table = _heads_table(result)
    sel = table[table["task"] == task]
    if sel.empty:
        raise InterpError(f"no task {task!r} in this attribution: use one of {', '.join(table['task'].unique())}")
    sel = sel.sort_values(f"rank_{by}").head(n)
    return [(int(r.layer), int(r.head)) for r in sel.itertuples()]


def head_ranking(result: HeadAttributionResult | pd.DataFrame, n: int = 10, by: str = "logit") -> pd.DataFrame:
    """Per-task ranking: ``task, rank, head_name, logit_attr, diff_attr`` for the top ``n`` heads, with the
    ranked attribution's 95 % interval and ``top_n_stability`` (share of prompt resamples in which the head
    is among its task's top 5) when the table has them."""
    table = _heads_table(result)
    out = table[table[f"rank_{by}"] <= n].sort_values(["task", f"rank_{by}"], kind="stable")
    out = out.rename(columns={f"rank_{by}": "rank"})
    order = list(dict.fromkeys(table["task"]))
    out["task"] = pd.Categorical(out["task"], order, ordered=True)
    cols = ["task", "rank", "head_name", "layer", "head", "logit_attr", "diff_attr"]
    col = METRICS[by]
    if f"{col}_ci_low" in out.columns:
        out = out.rename(columns={f"{col}_ci_low": "ci_low", f"{col}_ci_high": "ci_high",
                                  f"top_n_stability_{by}": "top_n_stability"})
        cols += ["ci_low", "ci_high", "top_n_stability", "n_prompts"]
    return out.sort_values(["task", "rank"])[cols].reset_index(drop=True)


def head_overlap(result: HeadAttributionResult | pd.DataFrame, n: int = 5, by: str = "logit"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overlap of the tasks' top-``n`` head sets.

    Returns:
        ``jaccard``: tasks × tasks matrix of |A∩B| / |A∪B| (index and columns are task names);
        ``membership``: heads × tasks table over the union of the top sets: the head's rank for
        each task (NaN when outside that task's top ``n``), its mean attribution per task, and
        ``n_tasks`` (how many tasks' top sets hold it).
    """
    table = _heads_table(result)
    tasks = list(dict.fromkeys(table["task"]))
    sets = {t: {head_name(*h) for h in top_heads(table, t, n, by)} for t in tasks}
    jaccard = pd.DataFrame([[len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for b in tasks] for a in tasks],
                           index=tasks, columns=tasks)
    union = sorted(set().union(*sets.values()), key=lambda s: parse_head(s))
    rows = []
    for name in union:
        row: dict[str, Any] = {"head_name": name}
        for t in tasks:
            rec = table[(table["task"] == t) & (table["head_name"] == name)].iloc[0]
            row[f"rank:{t}"] = float(rec[f"rank_{by}"]) if name in sets[t] else np.nan
            row[f"attr:{t}"] = float(rec[METRICS[by]])
        row["n_tasks"] = sum(name in sets[t] for t in tasks)
        rows.append(row)
    return jaccard, pd.DataFrame(rows)


# ----------------------------------------------------------------------------- ablation


def _o_proj(model: LoadedModel, layer: int) -> torch.nn.Module:
    return model.adapter.o_proj(layer)


@contextlib.contextmanager
def head_ablation(model: LoadedModel, values: dict[Head, Tensor | None]) -> Iterator[None]:
    """While active, head ``(l, h)``'s ``z`` is replaced by ``values[(l, h)]`` ([d_head]; None = zero)
    at every position, in every forward of ``model.hf_model``.

    Implemented as a pre-hook on the HF ``o_proj``, whose input is ``hook_z`` flattened head-major.
    """
    d_head = int(model.bridge.cfg.d_head)
    by_layer: dict[int, list[tuple[int, Tensor | None]]] = {}
    for (layer, h), v in values.items():
        if not (0 <= layer < model.n_layers and 0 <= h < model.n_heads):
            raise InterpError(f"no head {head_name(layer, h)} in {model.name} ({model.n_layers} layers, {model.n_heads} heads)")
        by_layer.setdefault(layer, []).append((h, v))
    handles = []

    def make(edits: list[tuple[int, Tensor | None]]) -> Any:
        def pre_hook(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            x = args[0].clone()
            z = x.view(*x.shape[:-1], -1, d_head)
            for h, v in edits:
                z[..., h, :] = 0 if v is None else v.to(x.device, x.dtype)
            return (x, *args[1:])

        return pre_hook

    try:
        for layer, edits in by_layer.items():
            handles.append(_o_proj(model, layer).register_forward_pre_hook(make(edits)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def head_means(model: LoadedModel, prompts: Sequence[Prompt], layers: Sequence[int] | None = None,
               show_progress: bool = True) -> Float[Tensor, "layer head d_head"]:
    """Mean ``z`` of every head over all prompts and all prompt positions (for mean-ablation).

    Layers not in ``layers`` are left at zero. Only running sums are kept (no per-position storage).
    """
    L, H, d_head = model.n_layers, model.n_heads, int(model.bridge.cfg.d_head)
    layer_list = list(range(L)) if layers is None else sorted(set(layers))
    sums = torch.zeros(L, H * d_head, dtype=torch.float64)
    count = 0
    handles = []

    def make(layer: int) -> Any:
        def pre_hook(module: Any, args: tuple[Any, ...]) -> None:
            sums[layer] += args[0].detach().double().sum(dim=(0, 1)).cpu()

        return pre_hook

    try:
        for layer in layer_list:
            handles.append(_o_proj(model, layer).register_forward_pre_hook(make(layer)))
        for p in progress(prompts, desc="head means", disable=not show_progress):
            ids = model.encode_prompt(p.text)
            model.hf_model(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
            count += len(ids)
    finally:
        for handle in handles:
            handle.remove()
    return (sums / max(count, 1)).float().view(L, H, d_head)


def ablate_heads(model: LoadedModel, prompts: Sequence[Prompt], heads: Sequence[Head], mode: str = "mean",
                 means: Tensor | None = None, show_progress: bool = True) -> pd.DataFrame:
    """Score every task's full answer with ``heads`` ablated at every position.

    Args:
        mode: ``mean`` (replace z by its mean over the prompt set; see :func:`head_means`) or ``zero``.
        means: precomputed :func:`head_means` (computed from ``prompts`` when missing).

    Returns:
        :func:`interp.scoring.score_prompts`' table (``prompt_id, task, prob, logprob, ...``).
        With ``heads=[]`` it is exactly the unablated scores.
    """
    if mode not in ABLATION_MODES:
        raise InterpError(f"unknown ablation {mode!r}: use mean or zero")
    heads = [(int(layer), int(h)) for layer, h in heads]
    if mode == "mean" and heads and means is None:
        means = head_means(model, prompts, layers=[layer for layer, _ in heads], show_progress=show_progress)
    values: dict[Head, Tensor | None] = {h: (means[h[0], h[1]] if mode == "mean" else None) for h in heads}  # type: ignore[index]
    with head_ablation(model, values):
        return score_prompts(model, prompts, show_progress=show_progress)


def random_heads(model: LoadedModel, n: int, exclude: set[Head], seed: int = 0) -> list[Head]:
    """``n`` heads drawn at random (seeded) from those not in ``exclude``."""
    pool = [(layer, h) for layer in range(model.n_layers) for h in range(model.n_heads) if (layer, h) not in exclude]
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def ablation_table(model: LoadedModel, prompts: Sequence[Prompt], result: HeadAttributionResult, n: int = 5,
                   by: str = "logit", modes: Sequence[str] = ABLATION_MODES, random_control: bool = True,
                   seed: int = 0, show_progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ablate each task's top-``n`` heads (and a random control set); measure every task.

    Returns:
        ``table``: one row per (ablated set, mode, measured task): ``ablated, mode, heads, task,
        prob_base, prob_ablated, delta_prob, rel_change, delta_logprob, specificity`` (means over
        prompts, ``delta_prob`` and ``delta_logprob`` with 95 % bootstrap intervals ``…_ci_low/high``; ``rel_change`` = mean ablated / mean base - 1, dominated by the prompts with the
        largest probabilities; ``delta_logprob`` = mean per-prompt change of log P, robust to that;
        ``specificity`` = mean Δlog P of the other tasks minus that of the ablated set's own task,
        positive when the ablation hurts its own task most);
        ``scores``: the per-prompt scores of every condition (``ablated, mode`` columns added).
    """
    base = score_prompts(model, prompts, show_progress=show_progress).assign(ablated="none", mode="none", heads="")
    sets = {t: top_heads(result, t, n, by) for t in result.tasks}
    if random_control:
        sets["random"] = random_heads(model, n, set().union(*map(set, sets.values())), seed)
    needed = sorted({layer for hs in sets.values() for layer, _ in hs})
    means = head_means(model, prompts, needed, show_progress) if "mean" in modes else None
    frames = [base]
    for mode in modes:
        for name, heads in sets.items():
            scores = ablate_heads(model, prompts, heads, mode, means, show_progress)
            frames.append(scores.assign(ablated=name, mode=mode, heads=" ".join(head_name(*h) for h in heads)))
    scores = pd.concat(frames, ignore_index=True)
    keys = ["prompt_id", "task"]
    base_idx = base.set_index(keys)
    rows = []
    for (name, mode), g in scores[scores["ablated"] != "none"].groupby(["ablated", "mode"], sort=False):
        g = g.set_index(keys)
        for task in result.tasks:
            a = g.xs(task, level="task")
            b = base_idx.xs(task, level="task").loc[a.index]
            d_prob = bootstrap_mean((a["prob"] - b["prob"]).to_numpy())
            d_logprob = bootstrap_mean((a["logprob"] - b["logprob"]).to_numpy())
            rows.append({"ablated": name, "mode": mode, "heads": a["heads"].iloc[0], "task": task,
                         "prob_base": b["prob"].mean(), "prob_ablated": a["prob"].mean(),
                         "delta_prob": d_prob[0], "delta_prob_ci_low": d_prob[1], "delta_prob_ci_high": d_prob[2],
                         "rel_change": a["prob"].mean() / max(b["prob"].mean(), 1e-30) - 1,
                         "delta_logprob": d_logprob[0], "delta_logprob_ci_low": d_logprob[1],
                         "delta_logprob_ci_high": d_logprob[2], "n_prompts": len(a)})
    table = pd.DataFrame(rows)
    # Specificity: how much more the ablated set lowers its own task than the other tasks (nats).
    table["specificity"] = np.nan
    for (name, _mode), g in table.groupby(["ablated", "mode"], sort=False):
        if name in result.tasks and len(g) > 1:
            own = float(g.loc[g["task"] == name, "delta_logprob"].iloc[0])
            others = float(g.loc[g["task"] != name, "delta_logprob"].mean())
            table.loc[g.index, "specificity"] = others - own
    return table, scores


# ----------------------------------------------------------------------------- attention (circuitsvis)


def str_tokens(model: LoadedModel, text: str, ids: Sequence[int]) -> list[str]:
    """Each token's exact text in ``text`` (from the tokenizer's offsets; special tokens decoded)."""
    tokens = [model.tokenizer.decode([i]) for i in ids]
    try:
        enc = model.tokenizer(text, add_special_tokens=model.prepend_bos, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        return tokens
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    ends = [b for _, b in offsets]
    # Use the offsets only when they tile the text consistently (no overlaps, same ids).
    if list(enc["input_ids"]) != list(ids) or any(a < prev for (a, _), prev in zip(offsets[1:], ends)):
        return tokens
    return [text[a:b] if b > a else tok for (a, b), tok in zip(offsets, tokens)]


@torch.no_grad()
def head_attention(model: LoadedModel, prompt: Prompt, heads: Sequence[Head], window: int | None = None
                   ) -> tuple[Float[Tensor, "head dest src"], list[str], list[str]]:
    """Attention patterns of ``heads`` on one prompt, its str tokens and head names (for circuitsvis).

    ``window`` keeps only the last ``window`` tokens (both axes; the query is the last one),
    so long prompts stay light in HTML; rows then show only the attention inside the window.
    """
    if not heads:
        raise InterpError("no heads to show: pass at least one (layer, head)")
    ids = model.encode_prompt(prompt.text)
    layers = sorted({layer for layer, _ in heads})
    store: dict[int, Tensor] = {}

    def make(layer: int) -> Any:
        def save(pattern: Tensor, hook: Any) -> None:
            store[layer] = pattern[0].detach().float().cpu()  # [head, dest, src]

        return save

    model.bridge.run_with_hooks(torch.tensor([ids], device=model.device), return_type=None,
                                fwd_hooks=[(f"blocks.{layer}.attn.hook_pattern", make(layer)) for layer in layers],
                                stop_at_layer=max(layers) + 1)
    pattern = torch.stack([store[layer][h] for layer, h in heads])
    tokens = str_tokens(model, prompt.text, ids)
    if window and window < len(ids):
        pattern = pattern[:, -window:, -window:]
        tokens = tokens[-window:]
    return pattern, tokens, [head_name(layer, h) for layer, h in heads]


def query_attention(model: LoadedModel, prompt: Prompt, heads: Sequence[Head], top: int = 5) -> pd.DataFrame:
    """Where each head looks from the query: its ``top`` source tokens, whether they lie on the
    query's own line or in the examples, and their weights (a text summary of the pattern)."""
    pattern, tokens, names = head_attention(model, prompt, heads)
    q = token_positions(model, prompt, "query")[0]
    # The query line starts after the last newline before the query position.
    line_start = max((i + 1 for i, t in enumerate(tokens[:q]) if "\n" in t), default=0)
    rows = []
    for i, name in enumerate(names):
        w, idx = pattern[i, q].topk(min(top, pattern.shape[-1]))
        for r, (wi, j) in enumerate(zip(w.tolist(), idx.tolist()), 1):
            rows.append({"head_name": name, "rank": r, "src_pos": j, "src_token": tokens[j],
                         "src_role": "query line" if j >= line_start else "examples", "weight": wi})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the analysis


@dataclass
class HeadsResult:
    """Everything ``interp run heads`` and the report's section show (no files written).

    ``jaccard_other`` / ``membership_other``: the overlap ranked by the other metric (``other_by``).
    ``attention``: the attention pattern ``[head, dest, src]``, its str tokens and head names of
    every task's top heads (``shown``) on prompt ``options.attention_prompt``.
    """

    attribution: HeadAttributionResult
    ranking: pd.DataFrame
    jaccard: pd.DataFrame
    membership: pd.DataFrame
    other_by: str
    jaccard_other: pd.DataFrame
    membership_other: pd.DataFrame
    ablation: pd.DataFrame | None
    ablation_scores: pd.DataFrame | None
    shown: list[Head]
    query_attention: pd.DataFrame
    attention: tuple[Tensor, list[str], list[str]]


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip() and m.strip() != "none"]
    for m in modes:
        if m not in ABLATION_MODES:
            raise InterpError(f"unknown ablation mode {m!r}: use mean, zero, mean,zero or none")
    return modes


def check_options(options: HeadsOptions, n_prompts: int) -> list[str]:
    """Validate ``options`` for ``n_prompts`` prompts (before any model is loaded); returns the ablation modes."""
    if options.rank_by not in METRICS:
        raise InterpError(f"unknown --rank-by {options.rank_by!r}: use logit or diff")
    if options.top_n < 1:
        raise InterpError("--top-n must be at least 1")
    modes = parse_modes(options.ablation)
    if not 0 <= options.attention_prompt < n_prompts:
        raise InterpError(f"--attention-prompt must be in 0..{n_prompts - 1}")
    return modes


def analyse(model: LoadedModel, prompts: Sequence[Prompt], options: HeadsOptions, seed: int = 0,
            show_progress: bool = True, use_cache: bool = True,
            cache_dir: str | os.PathLike[str] | None = None) -> HeadsResult:
    """DLA, top heads, overlap (both rankings), ablation and the top heads' attention on one prompt."""
    modes = check_options(options, len(prompts))
    result = head_attribution(model, prompts, show_progress=show_progress, use_cache=use_cache, cache_dir=cache_dir)
    ranking = head_ranking(result, max(10, options.top_n), options.rank_by)
    jaccard, membership = head_overlap(result, options.top_n, options.rank_by)
    other = "diff" if options.rank_by == "logit" else "logit"
    jaccard_other, membership_other = head_overlap(result, options.top_n, other)
    ablation = scores = None
    if modes:
        ablation, scores = ablation_table(model, prompts, result, options.top_n, options.rank_by, modes,
                                          options.random_control, seed, show_progress)
    prompt = prompts[options.attention_prompt]
    shown = list(dict.fromkeys(h for t in result.tasks for h in top_heads(result, t, options.top_n, options.rank_by)))
    attention = head_attention(model, prompt, shown, options.attention_window or None)
    return HeadsResult(result, ranking, jaccard, membership, other, jaccard_other, membership_other, ablation, scores,
                       shown, query_attention(model, prompt, shown), attention)


def format_heads(result: HeadsResult, n: int) -> str:
    lines = []
    ranking = result.ranking
    for task in result.attribution.tasks:
        sel = ranking[(ranking["task"] == task) & (ranking["rank"] <= n)]
        if "ci_low" in sel:  # attribution with its 95 % interval and how often the head stays in the top n
            ranked_by = METRICS["diff" if result.other_by == "logit" else "logit"]
            heads = [f"{r.head_name} {format_ci(getattr(r, ranked_by), r.ci_low, r.ci_high)} ({r.top_n_stability:.0%})"
                     for r in sel.itertuples()]
        else:
            heads = list(sel["head_name"])
        lines.append(f"{task:>12}: " + ", ".join(heads))
    lines.append("jaccard:\n" + result.jaccard.to_string(float_format="%.2f"))
    if result.ablation is not None:
        table = result.ablation[["ablated", "mode", "task", "prob_base", "prob_ablated", "rel_change"]].copy()
        for col in ("delta_prob", "delta_logprob"):
            table[col] = [format_ci(m, lo, hi) for m, lo, hi in zip(
                result.ablation[col], result.ablation[f"{col}_ci_low"], result.ablation[f"{col}_ci_high"])] \
                if f"{col}_ci_low" in result.ablation else result.ablation[col]
        lines.append(table.to_string(index=False, float_format="%.4f"))
    if result.attribution.excluded_shared:
        lines.append(f"{result.attribution.excluded_shared} prompt(s) whose tasks share an answer's first token "
                     "left out of the head table, rankings and overlap")
    lines.append(f"max closure error: {result.attribution.closure['error'].max():.2e}")
    return "\n".join(lines)
