"""Hooked runs that keep only what is asked for: hooks × layers × positions-by-role.

Positions are chosen by *role* in the superposed prompt, not by raw index:

* ``query`` — the query's final separator token, where every task's answer is predicted;
* ``separators`` — every example's separator, then the query's (``n_examples + 1`` positions);
* ``last`` — the last token of the prompt (equals ``query`` for prompts built by this toolkit);
* ``all`` — every position (padded with zeros to the longest prompt; see ``positions == -1``).

Activations are sliced *inside* the hook, so a run never holds more than one prompt's
selected positions: memory stays flat however many prompts are processed.

Hook names use the TransformerLens vocabulary. Short names expand over layers:
``resid_post`` → ``blocks.{l}.hook_resid_post``; ``attn.hook_z`` (or ``z``) →
``blocks.{l}.attn.hook_z``; full names (``blocks.3.attn.hook_pattern``) pass through.
Shapes are ``[prompt, position, *rest]``: ``resid_*``/``*_out`` → ``[prompt, pos, d_model]``,
``attn.hook_z/q/k/v`` → ``[prompt, pos, head, d_head]``, ``attn.hook_pattern`` →
``[prompt, pos, head, key_pos]`` (key positions padded to the longest prompt).

:func:`get_activations` is the entry point the analyses use: it derives a content key (see
:mod:`interp.cache.store`), reuses the verified on-disk entry when there is one ("reused") or
builds it one shard of ``batch_size`` prompts at a time ("computed"; a killed build resumes from
its completed shards), and prints one status line to stderr. :func:`collect_activations` is the
same hooked run kept in memory only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Prompt

_log = logging.getLogger(__name__)

POSITION_ROLES = ("query", "separators", "last", "all")

SHORT_HOOKS = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "pattern": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
    "mlp_post": "mlp.hook_post",
    "ln_final_scale": "ln_final.hook_scale",
}
# Hooks whose position axis is not axis 1 ([batch, head, query_pos, key_pos]).
_QUERY_AXIS_2 = ("hook_pattern", "hook_attn_scores")


def check_activation_request(model: LoadedModel, prompts: Any, hooks: Any, layers: Any, positions: Any,
                             batch_size: Any, cache_dir: Any, dtype: Any = torch.float32, use_cache: bool = True
                             ) -> None:
    """Refuse a hooked run that cannot be done or cannot fit, before it starts (one line each).

    The size estimate: prompts x kept positions x the width of every kept hook x the stored dtype,
    against half the memory (the result is held in memory) and the free disk of the cache.
    """
    from interp.validate import check_int, free_disk_bytes, refuse_if_too_big

    if isinstance(hooks, str) or not isinstance(hooks, Sequence) or not all(isinstance(h, str) for h in hooks):
        raise InterpError(f"hooks must be a list of hook names (e.g. ['resid_post']), got {hooks!r}")
    if not [h for h in hooks if h.strip()]:
        raise InterpError("no hooks given: pass e.g. --hooks resid_post,attn.hook_z")
    if positions not in POSITION_ROLES:
        raise InterpError(f"unknown position role {positions!r}: use one of {', '.join(POSITION_ROLES)}")
    check_int(batch_size, "batch_size", min=1)
    if layers is not None and (isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence)):
        raise InterpError(f"layers must be a list of layer indices, got {layers!r}")
    for layer in layers or []:
        check_int(layer, "layers")
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise InterpError(f"prompts must be a list of Prompt, got {type(prompts).__name__}")
    if not prompts:
        raise InterpError("no prompts: give at least one prompt")
    if not all(isinstance(p, Prompt) for p in prompts):
        raise InterpError("prompts must be Prompt objects (from build_prompts)")
    names = expand_hook_names(model, hooks, layers)
    longest = max(len(p.text) for p in prompts) + 2  # characters bound tokens from above
    per_position = {"query": 1, "last": 1, "separators": max(len(p.separator_offsets) for p in prompts),
                    "all": longest}[positions]
    width = sum(model.n_heads * longest if ("pattern" in n or "attn_scores" in n) else
                4 * model.d_model if "mlp.hook_post" in n else model.d_model for n in names)
    from interp.dtypes import parse_dtype

    estimate = len(prompts) * per_position * width * torch.finfo(parse_dtype(dtype)).bits / 8
    fix = "fewer --n-prompts, --hooks or --layers, or --positions query"
    refuse_if_too_big(estimate, f"activations of {len(prompts)} prompts", fix)
    if use_cache:
        from interp.cache.store import resolve_cache_dir

        root = resolve_cache_dir(cache_dir)
        refuse_if_too_big(estimate, f"the cache entry for {len(prompts)} prompts", f"{fix}, or another --cache-dir",
                          limit=free_disk_bytes(root))


def expand_hook_names(model: LoadedModel, hooks: Sequence[str], layers: Sequence[int] | None = None) -> list[str]:
    """Full hook names for short or full ``hooks`` over ``layers`` (default: all layers)."""
    n_layers = model.n_layers
    layer_list = list(range(n_layers)) if layers is None else [int(layer) for layer in layers]
    for layer in layer_list:
        if not -n_layers <= layer < n_layers:
            raise InterpError(f"layer {layer} out of range: {model.name} has layers 0..{n_layers - 1}")
    layer_list = [layer % n_layers for layer in layer_list]
    known = set(model.bridge.hook_dict)
    names: list[str] = []
    for hook in hooks:
        hook = hook.strip()
        if hook in known:
            names.append(hook)
            continue
        suffix = SHORT_HOOKS.get(hook, hook)
        if suffix in known:  # a global hook such as ln_final.hook_scale
            names.append(suffix)
            continue
        if not suffix.startswith(("hook_", "attn.", "mlp.", "ln1.", "ln2.")):
            suffix = "hook_" + suffix
        expanded = [f"blocks.{layer}.{suffix}" for layer in layer_list]
        missing = [n for n in expanded if n not in known]
        if missing:
            raise InterpError(
                f"unknown hook {hook!r}: use a TransformerLens name such as resid_post, attn.hook_z, "
                f"attn.hook_pattern, mlp_out (or a full name like blocks.0.hook_resid_post)"
            )
        names.extend(expanded)
    return list(dict.fromkeys(names))


def _char_to_token(offsets: list[tuple[int, int]], char_index: int) -> int:
    for i, (start, end) in enumerate(offsets):
        if start <= char_index < end:
            return i
    raise InterpError(f"no token covers character {char_index}: the tokenizer dropped part of the prompt")


def token_positions(model: LoadedModel, prompt: Prompt, role: str, ids: list[int] | None = None) -> list[int]:
    """Token indices of ``role`` in ``prompt`` (BOS, when present, shifts every index by one)."""
    if role not in POSITION_ROLES:
        raise InterpError(f"unknown position role {role!r}: use one of {', '.join(POSITION_ROLES)}")
    ids = ids if ids is not None else model.encode_prompt(prompt.text)
    if role == "last" or (role == "query" and not prompt.separator_offsets):
        return [len(ids) - 1]
    if role == "all":
        return list(range(len(ids)))
    enc = model.tokenizer(prompt.text, add_special_tokens=model.prepend_bos, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    shift = 0
    if model.prepend_bos and offsets and offsets[0] == (0, 0):
        shift = 0  # offsets already include the BOS entry at index 0
    # The separator's *last* character is where the next token (the answer) is predicted.
    sep_ends = [off + len(prompt.separator) - 1 for off in prompt.separator_offsets]
    positions = [_char_to_token(offsets, c) + shift for c in sep_ends]
    if role == "query":
        return positions[-1:]
    return positions


@dataclass
class ActivationSet:
    """Selected activations of a prompt set, indexable like a TransformerLens ActivationCache.

    ``acts["blocks.12.hook_resid_post"]`` is ``[prompt, position, d_model]`` (see module doc for
    other hooks). ``positions[i, j]`` is the token index of position ``j`` of prompt ``i``
    (-1 marks padding for role ``all``). ``status`` is ``"reused"`` (loaded from the on-disk
    cache), ``"computed"`` (built now, and stored when ``key`` is set) or ``"memory"``
    (``use_cache=False``); ``key``/``path`` name the cache entry.
    """

    tensors: dict[str, Tensor]
    positions: Int[Tensor, "prompt position"]
    prompt_ids: list[int]
    role: str
    meta: dict[str, Any] = field(default_factory=dict)
    status: str = "computed"
    key: str | None = None
    path: Path | None = None

    def __repr__(self) -> str:  # tensors summarised, so a notebook cell does not print megabytes
        first = next(iter(self.tensors.values()), None)
        shape = list(first.shape) if first is not None else []
        where = f", key={self.key[:12]}" if self.key else ""
        return (f"ActivationSet({len(self.prompt_ids)} prompts, role={self.role!r}, {len(self.tensors)} hooks "
                f"e.g. {next(iter(self.tensors), '-')} {shape}, status={self.status!r}{where})")

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise KeyError(f"{name!r} not in this activation set; it holds {', '.join(list(self.tensors)[:6])}...")
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def keys(self) -> list[str]:
        return list(self.tensors)

    def items(self) -> list[tuple[str, Tensor]]:
        return list(self.tensors.items())

    def stack(self, suffix: str, layers: Sequence[int]) -> Tensor:
        """``[layer, prompt, position, ...]`` for e.g. ``suffix='hook_resid_post'``."""
        return torch.stack([self.tensors[f"blocks.{layer}.{suffix}"] for layer in layers])


def _position_axis(name: str) -> int:
    return 2 if name.endswith(_QUERY_AXIS_2) else 1


def _stop_layer(model: LoadedModel, names: Sequence[str]) -> int | None:
    """Stop the forward after the last hooked block (nothing later is needed)."""
    max_layer = max((int(n.split(".")[1]) for n in names if n.startswith("blocks.")), default=model.n_layers - 1)
    needs_final = any(not n.startswith("blocks.") for n in names)
    return None if needs_final or max_layer == model.n_layers - 1 else max_layer + 1


def _encode(model: LoadedModel, prompts: Sequence[Prompt], role: str) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and token positions of ``role`` for every prompt (checked against the context)."""
    all_ids, all_pos = [], []
    for prompt in prompts:
        ids = model.encode_prompt(prompt.text)
        if len(ids) > model.n_ctx:
            raise InterpError(f"prompt {prompt.prompt_id} has {len(ids)} tokens, over the context of {model.n_ctx}")
        all_ids.append(ids)
        all_pos.append(token_positions(model, prompt, role, ids))
    return all_ids, all_pos


# Hooks a plain forward of ``model.hf_model`` can read with module hooks (TransformerLens name suffix ->
# what is read): the block's input, its output, the output projection's input (every head's z,
# head-major), the attention and MLP outputs as added to the residual.
_PLAIN_SUFFIXES = ("hook_resid_pre", "hook_resid_post", "attn.hook_z", "hook_attn_out", "hook_mlp_out")


class _StopForward(Exception):
    """Raised by the hook of the last block whose activations are needed: nothing later is computed."""


def _plain_readable(model: LoadedModel, names: Sequence[str]) -> bool:
    """Whether every hook can be read from the plain HF model (sdpa attention, no bridge).

    Models whose attention or MLP output is normalised before the residual add, or whose blocks add
    attention and MLP in parallel, keep the bridge (its ``hook_attn_out``/``hook_mlp_out`` say what is added).
    """
    adapter = getattr(model, "adapter", None)
    if adapter is None or adapter.post_attn_norm_name or adapter.post_mlp_norm_name or adapter.parallel_residual:
        return False
    for name in names:
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "blocks" or parts[2] not in _PLAIN_SUFFIXES:
            return False
    return True


@torch.no_grad()
def _forward_plain(model: LoadedModel, ids: list[int], pos: list[int], names: Sequence[str], dtype: torch.dtype
                   ) -> dict[str, Tensor]:
    """:func:`_forward_one` on the plain HF model: module hooks slice the kept positions as the forward
    runs, the forward stops after the last hooked block, and the unembedding (when reached) is computed
    for one position only. Same activations as the bridge's hooks up to float error (sdpa vs eager)."""
    adapter = model.adapter
    index = torch.tensor(pos, dtype=torch.long, device=model.device)
    store: dict[str, Tensor] = {}
    last_layer = max(int(n.split(".")[1]) for n in names)
    d_head = adapter.d_head

    def keep(name: str, act: Tensor) -> None:
        picked = act[0].index_select(0, index)
        if name.endswith("attn.hook_z"):
            picked = picked.view(len(pos), -1, d_head)
        store[name] = picked.detach().to("cpu", dtype).contiguous()

    def output_of(out: Any) -> Tensor:
        return out[0] if isinstance(out, tuple) else out

    handles = []
    try:
        for name in names:
            layer_index, suffix = int(name.split(".")[1]), name.split(".", 2)[2]
            block = adapter.layer(layer_index)
            if suffix == "hook_resid_pre":
                handles.append(block.register_forward_pre_hook(
                    lambda _m, args, kwargs, n=name: keep(n, args[0] if args else kwargs["hidden_states"]),
                    with_kwargs=True))
            elif suffix == "hook_resid_post":
                handles.append(block.register_forward_hook(lambda _m, _a, out, n=name: keep(n, output_of(out))))
            elif suffix == "attn.hook_z":
                handles.append(adapter.o_proj(layer_index).register_forward_pre_hook(
                    lambda _m, args, n=name: keep(n, args[0])))
            elif suffix == "hook_attn_out":
                attn = block.get_submodule(adapter.attn_name)
                handles.append(attn.register_forward_hook(lambda _m, _a, out, n=name: keep(n, output_of(out))))
            else:  # hook_mlp_out
                mlp = block.get_submodule(adapter.mlp_name)
                handles.append(mlp.register_forward_hook(lambda _m, _a, out, n=name: keep(n, output_of(out))))

        def stop(_m: Any, _a: Any, _out: Any) -> None:
            raise _StopForward

        # Registered last, so the block's own hooks (resid_post) have run when it fires.
        handles.append(adapter.layer(last_layer).register_forward_hook(stop))
        try:
            model.hf_model(input_ids=torch.tensor([ids], device=model.device), use_cache=False, logits_to_keep=1)
        except _StopForward:
            pass
    finally:
        for h in handles:
            h.remove()
    return store


@torch.no_grad()
def _forward_one(model: LoadedModel, ids: list[int], pos: list[int], names: Sequence[str], dtype: torch.dtype,
                 stop_at: int | None) -> dict[str, Tensor]:
    """One prompt's selected activations, sliced inside the hooks (``{hook: [position, ...]}``).

    Residuals, every head's ``z`` and the attention/MLP outputs come from the plain HF model (sdpa
    attention, stopped after the last hooked block, see :func:`_forward_plain`); any other hook
    (attention patterns, q/k/v, norm scales) from the TransformerLens bridge.
    """
    if _plain_readable(model, names):
        store = _forward_plain(model, ids, pos, names, dtype)
        for n in names:
            if n not in store:
                raise InterpError(f"hook {n} did not fire: check the hook name and layers")
        return store
    index = torch.tensor(pos, dtype=torch.long, device=model.device)
    store: dict[str, Tensor] = {}

    def make_saver(name: str) -> Any:
        # Bind the requested name: the bridge may report an aliased hook.name (e.g. hook_out).
        def save(act: Tensor, hook: Any) -> None:
            picked = act.index_select(_position_axis(name), index)[0]
            if _position_axis(name) == 2:  # [head, pos, key] -> [pos, head, key]
                picked = picked.transpose(0, 1)
            store[name] = picked.detach().to("cpu", dtype).contiguous()

        return save

    model.bridge.run_with_hooks(torch.tensor([ids], device=model.device),
                                fwd_hooks=[(n, make_saver(n)) for n in names], return_type=None,
                                stop_at_layer=stop_at)
    for n in names:
        if n not in store:
            raise InterpError(f"hook {n} did not fire: check the hook name and layers")
    return store


def _positions_tensor(all_positions: Sequence[Sequence[int]]) -> Int[Tensor, "prompt position"]:
    width = max(len(p) for p in all_positions)
    pos_tensor = torch.full((len(all_positions), width), -1, dtype=torch.long)
    for i, p in enumerate(all_positions):
        pos_tensor[i, : len(p)] = torch.tensor(list(p), dtype=torch.long)
    return pos_tensor


def _describe(model: LoadedModel, prompts: Sequence[Prompt], names: list[str], positions: str) -> dict[str, Any]:
    return {
        "model": model.name,
        "fingerprint": model.fingerprint,
        "hooks": names,
        "role": positions,
        "tasks": [sorted(p.answers) for p in prompts],
        "shares": [p.shares for p in prompts],
        "task_set": sorted({p.task_set for p in prompts}),
    }


def collect_activations(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    hooks: Sequence[str],
    layers: Sequence[int] | None = None,
    positions: str = "query",
    dtype: torch.dtype = torch.float32,
    show_progress: bool = True,
) -> ActivationSet:
    """Run ``model.bridge`` over every prompt and keep only the selected activations (in memory)."""
    names = expand_hook_names(model, hooks, layers)
    if not prompts:
        raise InterpError("no prompts: give at least one prompt")
    stop_at = _stop_layer(model, names)
    all_ids, all_positions = _encode(model, prompts, positions)
    per_prompt: dict[str, list[Tensor]] = {n: [] for n in names}
    for i in progress(range(len(prompts)), desc="hooked run", disable=not show_progress):
        store = _forward_one(model, all_ids[i], all_positions[i], names, dtype, stop_at)
        for n in names:
            per_prompt[n].append(store[n])
    tensors = {n: _pad_stack(chunks) for n, chunks in per_prompt.items()}
    return ActivationSet(tensors, _positions_tensor(all_positions), [p.prompt_id for p in prompts], positions,
                         _describe(model, prompts, names, positions))


def _pad_stack(chunks: list[Tensor]) -> Float[Tensor, "prompt position ..."]:
    """Stack per-prompt tensors, zero-padding every axis to the largest size."""
    shape = [max(c.shape[d] for c in chunks) for d in range(chunks[0].dim())]
    out = torch.zeros((len(chunks), *shape), dtype=chunks[0].dtype)
    for i, c in enumerate(chunks):
        out[(i, *[slice(0, s) for s in c.shape])] = c
    return out


def activation_key(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    hooks: Sequence[str],
    layers: Sequence[int] | None = None,
    positions: str = "query",
    dtype: torch.dtype = torch.float32,
) -> str:
    """The cache key (sha256 hex) of this selection: same inputs, same key, in any process."""
    from interp.cache.store import dtype_name, entry_key, key_inputs

    names = expand_hook_names(model, hooks, layers)
    all_ids, all_positions = _encode(model, prompts, positions)
    return entry_key(key_inputs(model.fingerprint, dtype_name(model.dtype), all_ids, all_positions, names,
                                positions, dtype_name(dtype)))


def get_activations(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    hooks: Sequence[str],
    layers: Sequence[int] | None = None,
    positions: str = "query",
    dtype: torch.dtype = torch.float32,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
    batch_size: int = 8,
    repair: bool = False,
    recipe: dict[str, Any] | None = None,
    log: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> ActivationSet:
    """The analyses' entry point: activations from the on-disk cache when present, else computed and stored.

    The entry is keyed by the model fingerprint and dtype, the exact token ids and positions,
    the hook names, the role and ``dtype`` (see :mod:`interp.cache.store`). A corrupted entry
    raises an error naming it unless ``repair``, which recomputes it (or ``interp cache verify
    --repair``). ``batch_size`` prompts go in each shard (a killed build resumes from completed
    shards); ``on_shard(n)`` is called after the n-th stored shard.
    ``recipe`` (JSON-able, e.g. the CLI config) is stored in meta.json. ``use_cache=False``
    computes in memory only. The result's ``.status`` is ``"reused"`` or ``"computed"``.
    """
    check_activation_request(model, prompts, hooks, layers, positions, batch_size, cache_dir, dtype, use_cache)
    if not use_cache:
        return collect_activations(model, prompts, hooks, layers, positions, dtype, show_progress)
    from interp.cache.store import dtype_name, get_or_build, key_inputs, resolve_cache_dir

    names = expand_hook_names(model, hooks, layers)
    if not prompts:
        raise InterpError("no prompts: give at least one prompt")
    stop_at = _stop_layer(model, names)
    all_ids, all_positions = _encode(model, prompts, positions)
    inputs = key_inputs(model.fingerprint, dtype_name(model.dtype), all_ids, all_positions, names, positions,
                        dtype_name(dtype))
    records = [{"prompt": json.loads(p.to_json()), "token_ids": ids, "positions": pos}
               for p, ids, pos in zip(prompts, all_ids, all_positions)]
    described = _describe(model, prompts, names, positions)
    meta_extra = {
        "model": {"name": model.name, "fingerprint": model.fingerprint, "dtype": dtype_name(model.dtype),
                  "n_layers": model.n_layers, "n_heads": model.n_heads, "d_model": model.d_model,
                  # where `cache verify --repair` may reload it from (a local directory, never a hub id)
                  "local_dir": str(Path(model.path).resolve())},
        "prompt_ids": [p.prompt_id for p in prompts],
        "tasks": described["tasks"],
        "shares": described["shares"],
        "task_set": described["task_set"],
        "recipe": recipe or {},
    }

    def compute_batch(start: int, stop: int) -> tuple[dict[str, Tensor], list[list[int]]]:
        stores = [_forward_one(model, all_ids[i], all_positions[i], names, dtype, stop_at) for i in range(start, stop)]
        return {n: _pad_stack([s[n] for s in stores]) for n in names}, all_positions[start:stop]

    def wrap(it: Iterator[Any], total: int) -> Iterator[Any]:
        return iter(progress(it, desc=f"hooked run ({batch_size} prompts/batch)", total=total,
                             disable=not show_progress or total == 0))

    def waiting(key: str) -> None:
        if log:
            _log.info(f"activations {key[:12]}: waiting for another process building it")

    cache = resolve_cache_dir(cache_dir)
    result = get_or_build(cache, inputs, records, meta_extra, compute_batch, batch_size=batch_size,
                          repair=repair, on_wait=waiting, progress_wrap=wrap, on_shard=on_shard)
    entry = result.entry
    if log:
        extra = f", resumed {result.resumed_batches} completed batches" if result.resumed_batches else ""
        size = entry.meta.get("bytes", 0) / 1e6
        _log.info(f"activations {entry.key[:12]}: {result.status} ({len(prompts)} prompts, {len(names)} hooks, "
                  f"{positions} positions, {size:.2f} MB{extra}) in {entry.path}")
    meta = {**described, "cache": {"key": entry.key, "path": str(entry.path), "status": result.status,
                                   "bytes": entry.meta.get("bytes"), "created": entry.meta.get("created")}}
    return ActivationSet(entry.tensors, _positions_tensor(entry.positions), [p.prompt_id for p in prompts],
                         positions, meta, status=result.status, key=entry.key, path=entry.path)
