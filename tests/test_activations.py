"""Hooked runs with selection: the stored/cached value equals what a hook sees in a plain forward."""

from __future__ import annotations

import pytest
import torch

from interp.activations import (
    POSITION_ROLES,
    collect_activations,
    expand_hook_names,
    get_activations,
    token_positions,
)
from interp.errors import InterpError
from interp_app.options import ExperimentConfig, make_prompts

HOOKS = ["resid_pre", "resid_post", "attn.hook_z", "attn.hook_pattern", "mlp_out"]


def _prompts(spec: str, n: int = 3, seed: int = 0, task_set: str = "ab"):
    return make_prompts(ExperimentConfig(model=spec, task_set=task_set, n_prompts=n, seed=seed, examples_per_task=2))


def _reference(model, prompt, names, pos):  # noqa: ANN001, ANN202
    """Full activations captured by TransformerLens' own cache, then indexed by hand."""
    ids = model.encode_prompt(prompt.text)
    _, cache = model.bridge.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in names)
    out = {}
    for name in names:
        act = cache[name][0]
        if name.endswith("hook_pattern"):  # [head, q, k] -> [q, head, k]
            act = act.transpose(0, 1)
        out[name] = act[pos]
    return out


@pytest.mark.parametrize("role", POSITION_ROLES)
def test_cached_tensor_equals_hook_value(tiny_model, tmp_path, role) -> None:
    prompts = _prompts(tiny_model.name)
    acts = get_activations(tiny_model, prompts, HOOKS, positions=role, cache_dir=tmp_path, batch_size=2,
                           show_progress=False)
    assert acts.status == "computed" and acts.key is not None
    names = expand_hook_names(tiny_model, HOOKS)
    assert acts.keys() == names
    for i, prompt in enumerate(prompts):
        pos = token_positions(tiny_model, prompt, role)
        assert acts.positions[i, : len(pos)].tolist() == pos
        assert (acts.positions[i, len(pos):] == -1).all()
        ref = _reference(tiny_model, prompt, names, pos)
        for name in names:
            got = acts[name][i, : len(pos)]
            if name.endswith("hook_pattern"):
                got = got[..., : ref[name].shape[-1]]
            torch.testing.assert_close(got, ref[name], rtol=1e-5, atol=1e-6, msg=f"{role} {name} prompt {i}")


def test_roles_point_at_separators(tiny_llama) -> None:
    prompt = _prompts("tiny-llama", n=1)[0]
    ids = tiny_llama.encode_prompt(prompt.text)
    query = token_positions(tiny_llama, prompt, "query")
    seps = token_positions(tiny_llama, prompt, "separators")
    assert query == [len(ids) - 1] == token_positions(tiny_llama, prompt, "last")
    assert len(seps) == len(prompt.examples) + 1 and seps[-1] == query[0]
    assert seps == sorted(seps)
    for p in seps:  # every separator position decodes to the separator's last character
        assert tiny_llama.tokenizer.decode([ids[p]]).endswith(prompt.separator[-1])
    assert token_positions(tiny_llama, prompt, "all") == list(range(len(ids)))


def test_layers_shapes_and_memory_mode(tiny_llama, tmp_path) -> None:
    prompts = _prompts("tiny-llama", n=2)
    acts = get_activations(tiny_llama, prompts, ["resid_post", "z", "pattern"], layers=[-1], positions="separators",
                           use_cache=False, show_progress=False)
    assert acts.status == "computed" and acts.key is None and acts.path is None
    assert "2 prompts" in repr(acts) and "separators" in repr(acts)
    assert not any(tmp_path.iterdir())
    last = tiny_llama.n_layers - 1
    n_sep = acts.positions.shape[1]
    assert acts.keys() == [f"blocks.{last}.hook_resid_post", f"blocks.{last}.attn.hook_z",
                           f"blocks.{last}.attn.hook_pattern"]
    assert acts[f"blocks.{last}.hook_resid_post"].shape == (2, n_sep, tiny_llama.d_model)
    z = acts[f"blocks.{last}.attn.hook_z"]
    assert z.shape == (2, n_sep, tiny_llama.n_heads, tiny_llama.d_model // tiny_llama.n_heads)
    longest = max(len(tiny_llama.encode_prompt(p.text)) for p in prompts)
    assert acts[f"blocks.{last}.attn.hook_pattern"].shape == (2, n_sep, tiny_llama.n_heads, longest)
    assert acts.stack("hook_resid_post", [last]).shape == (1, 2, n_sep, tiny_llama.d_model)


def test_cache_equals_memory_with_padding_across_shards(tiny_llama, tmp_path) -> None:
    # Prompts of different lengths, one per shard: padding must be global, not per shard.
    prompts = _prompts("tiny-llama", n=3, seed=4, task_set="country")
    lengths = {len(tiny_llama.encode_prompt(p.text)) for p in prompts}
    assert len(lengths) > 1
    mem = collect_activations(tiny_llama, prompts, ["resid_post", "pattern"], positions="all", show_progress=False)
    cached = get_activations(tiny_llama, prompts, ["resid_post", "pattern"], positions="all", cache_dir=tmp_path,
                             batch_size=1, show_progress=False)
    reused = get_activations(tiny_llama, prompts, ["resid_post", "pattern"], positions="all", cache_dir=tmp_path,
                             batch_size=1, show_progress=False)
    assert (cached.status, reused.status) == ("computed", "reused")
    assert torch.equal(mem.positions, reused.positions)
    for name in mem.keys():
        assert torch.equal(mem[name], cached[name]), name
        assert torch.equal(mem[name], reused[name]), name
    assert reused.prompt_ids == [p.prompt_id for p in prompts]


def test_stored_dtype(tiny_llama, tmp_path) -> None:
    prompts = _prompts("tiny-llama", n=2)
    acts = get_activations(tiny_llama, prompts, ["resid_post"], dtype=torch.bfloat16, cache_dir=tmp_path,
                           show_progress=False)
    full = get_activations(tiny_llama, prompts, ["resid_post"], cache_dir=tmp_path, show_progress=False)
    assert acts.key != full.key
    name = acts.keys()[0]
    assert acts[name].dtype == torch.bfloat16 and full[name].dtype == torch.float32
    assert torch.equal(acts[name], full[name].to(torch.bfloat16))


def test_bad_selection_is_one_clear_error(tiny_llama, tmp_path) -> None:
    prompts = _prompts("tiny-llama", n=1)
    with pytest.raises(InterpError, match="unknown hook"):
        get_activations(tiny_llama, prompts, ["resid_sideways"], cache_dir=tmp_path)
    with pytest.raises(InterpError, match="position role"):
        get_activations(tiny_llama, prompts, ["resid_post"], positions="middle", cache_dir=tmp_path)
    with pytest.raises(InterpError, match="out of range"):
        get_activations(tiny_llama, prompts, ["resid_post"], layers=[99], cache_dir=tmp_path)
    assert not any(p.name != ".locks" for p in tmp_path.iterdir())
