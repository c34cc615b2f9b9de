"""Activation patching at the prompt's last token, scored with prefix key/value reuse.

A *patch* edits the residual stream after decoder block ``l`` (TransformerLens
``blocks.{l}.hook_resid_post`` = the output of decoder block ``l``, ``model.adapter.layer(l)``) at the prompt's
last token, which for prompts of this toolkit is the query's separator, where the answer is
predicted. Modes:

* ``replace`` — the residual becomes ``alpha * v`` (``alpha = 1``: Hendel et al. 2023 and the
  paper's task vectors);
* ``add`` — the residual becomes ``h + alpha * v`` (function-vector style steering).

Why prefix reuse is exact: the patch only changes the last token's state from layer ``l`` on,
and under causal attention no earlier token reads a later one, so the keys/values of every
token *before* the separator are the same with and without the patch, at every layer. We run
that prefix once, keep its KV cache, and for each patch re-run only the short tail
``[separator, answer tokens[:-1]]`` (teacher forced) with a forward hook at block ``l``. Many
patches (layers × modes × vectors × answers) of one prompt go through one forward: their tails
are packed into a single sequence with a block ("tree") attention mask, each tail seeing the
prefix and its own earlier tokens only, so a whole layer sweep of a query costs one prefix
forward plus one short packed forward, and the prefix cache is never copied per patch.
:func:`patched_logprobs_full` is the reference (one full forward of prompt + answer per row).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.models import LoadedModel
from interp.scoring import full_cache, packed_logprobs, pad_token_id

PATCH_MODES = ("replace", "add")


@dataclass(frozen=True)
class Patch:
    """Edit of the residual after block ``layer`` at the prompt's last token (see module doc)."""

    layer: int
    vector: Float[Tensor, " d_model"]
    mode: str = "replace"
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in PATCH_MODES:
            raise InterpError(f"unknown patch mode {self.mode!r}: use one of {', '.join(PATCH_MODES)}")


def _check(model: LoadedModel, patches: Sequence[Patch | None]) -> None:
    for p in patches:
        if p is None:
            continue
        if not 0 <= p.layer < model.n_layers:
            raise InterpError(f"patch layer {p.layer} out of range: {model.name} has layers 0..{model.n_layers - 1}")
        if p.vector.shape[-1] != model.d_model:
            raise InterpError(f"patch vector has size {p.vector.shape[-1]}, the model's d_model is {model.d_model}")


def _make_hooks(model: LoadedModel, patches: Sequence[Patch | None], sites: Sequence[tuple[int, int]]) -> list[Any]:
    """Register one forward hook per patched layer; patch ``r`` edits batch row ``sites[r][0]`` at
    token ``sites[r][1]``."""
    groups: dict[tuple[int, str], list[tuple[tuple[int, int], Tensor]]] = defaultdict(list)
    for row, p in enumerate(patches):
        if p is not None:
            groups[(p.layer, p.mode)].append((sites[row], p.alpha * p.vector))
    by_layer: dict[int, list[tuple[str, Tensor, Tensor, Tensor]]] = defaultdict(list)
    for (layer, mode), items in groups.items():
        rows = torch.tensor([b for (b, _), _ in items], dtype=torch.long, device=model.device)
        cols = torch.tensor([j for (_, j), _ in items], dtype=torch.long, device=model.device)
        vecs = torch.stack([v for _, v in items]).to(model.device, model.dtype)
        by_layer[layer].append((mode, rows, cols, vecs))

    handles = []
    for layer, edits in by_layer.items():
        def hook(module: Any, inputs: Any, output: Any, edits: list = edits) -> Any:
            hidden = output[0] if isinstance(output, tuple) else output
            hidden = hidden.clone()  # never edit a tensor the block may still reference
            for mode, rows, cols, vecs in edits:
                if mode == "replace":
                    hidden[rows, cols] = vecs
                else:
                    hidden[rows, cols] = hidden[rows, cols] + vecs
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        handles.append(model.adapter.layer(layer).register_forward_hook(hook))
    return handles


def _gather(logits: Tensor, continuations: Sequence[list[int]]) -> list[list[float]]:
    logp = torch.log_softmax(logits.float(), dim=-1)
    return [[float(logp[r, t, tok]) for t, tok in enumerate(c)] for r, c in enumerate(continuations)]


@torch.no_grad()
def patched_logprobs(
    model: LoadedModel,
    prompt_ids: list[int],
    continuations: Sequence[list[int]],
    patches: Sequence[Patch | None],
    max_rows: int = 96,
) -> list[list[float]]:
    """Per-token log-probs of ``continuations[r]`` after ``prompt_ids`` with ``patches[r]`` applied.

    The patch acts at the prompt's last token (``None``: no patch). Exact equal of
    :func:`patched_logprobs_full` up to float error, but the prompt prefix runs once and all
    rows share it (see module doc): the rows' tails are packed into one sequence with a block
    ("tree") attention mask over the prefix's keys/values, so the prefix cache is never copied
    per row (memory stays ~ one prefix cache + rows × answer length × vocab, whatever the
    prompt length). ``max_rows`` bounds the rows of one packed forward.
    """
    if len(continuations) != len(patches):
        raise InterpError("give one patch (or None) per continuation")
    if not prompt_ids or any(len(c) == 0 for c in continuations):
        raise InterpError("prompt and every continuation need at least one token")
    _check(model, patches)
    if len(prompt_ids) + max(len(c) for c in continuations) - 1 > model.n_ctx:
        raise InterpError(f"prompt + answer exceed the context of {model.n_ctx} tokens: use shorter prompts")
    prefix, last = prompt_ids[:-1], prompt_ids[-1]
    if prefix:
        out = model.hf_model(input_ids=torch.tensor([prefix], device=model.device), past_key_values=full_cache(),
                             use_cache=True, logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        mask = torch.ones((1, len(prefix)), dtype=torch.long, device=model.device)
        packed: list[list[float]] = []
        for start in range(0, len(continuations), max_rows):
            conts = continuations[start: start + max_rows]
            tails = [[last, *c[:-1]] for c in conts]
            # Tail r starts where the tails before it end (the packing order of packed_logprobs).
            starts = [sum(len(t) for t in tails[:r]) for r in range(len(tails))]
            handles = _make_hooks(model, patches[start: start + max_rows], [(0, j) for j in starts])
            try:
                logp, where = packed_logprobs(model, kv, mask, [0] * len(tails), tails)
            finally:
                for h in handles:
                    h.remove()
            packed.extend([float(logp[0, where[(r, t)][1], tok]) for t, tok in enumerate(c)]
                          for r, c in enumerate(conts))
        return packed
    result: list[list[float]] = []
    pad = pad_token_id(model)
    for start in range(0, len(continuations), max_rows):
        conts = continuations[start: start + max_rows]
        rows_patches = patches[start: start + max_rows]
        width = max(len(c) for c in conts)
        # Right padding needs no mask: under causal attention no real token sees a later pad.
        feed = torch.full((len(conts), width), pad, dtype=torch.long)
        for r, c in enumerate(conts):
            feed[r, : len(c)] = torch.tensor([last, *c[:-1]], dtype=torch.long)
        handles = _make_hooks(model, rows_patches, [(r, 0) for r in range(len(conts))])
        try:
            logits = model.hf_model(input_ids=feed.to(model.device), use_cache=False).logits
        finally:
            for h in handles:
                h.remove()
        result.extend(_gather(logits, conts))
    return result


@torch.no_grad()
def patched_logprobs_full(
    model: LoadedModel,
    prompt_ids: list[int],
    continuations: Sequence[list[int]],
    patches: Sequence[Patch | None],
) -> list[list[float]]:
    """Reference: one full forward of ``prompt + continuation[:-1]`` per row, patched by a hook."""
    if len(continuations) != len(patches):
        raise InterpError("give one patch (or None) per continuation")
    _check(model, patches)
    position = len(prompt_ids) - 1
    result = []
    for c, p in zip(continuations, patches):
        ids = torch.tensor([prompt_ids + c[:-1]], device=model.device)
        handles = _make_hooks(model, [p], [(0, position)])
        try:
            logits = model.hf_model(input_ids=ids).logits[:, position:]
        finally:
            for h in handles:
                h.remove()
        result.extend(_gather(logits, [c]))
    return result


@torch.no_grad()
def patched_next_token_logits(
    model: LoadedModel, prompt_ids: list[int], patches: Sequence[Patch | None]
) -> Float[Tensor, "row d_vocab"]:
    """Next-token logits after ``prompt_ids`` under each patch (full forward; small checks)."""
    _check(model, patches)
    ids = torch.tensor([prompt_ids] * len(patches), device=model.device)
    handles = _make_hooks(model, patches, [(r, len(prompt_ids) - 1) for r in range(len(patches))])
    try:
        return model.hf_model(input_ids=ids, logits_to_keep=1).logits[:, -1].float()
    finally:
        for h in handles:
            h.remove()


ScoreFn = Callable[[LoadedModel, list[int], Sequence[list[int]], Sequence[Patch | None]], list[list[float]]]
