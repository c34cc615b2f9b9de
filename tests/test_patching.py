"""Patched scoring with prefix KV reuse equals full forwards, and patches do what they say."""

from __future__ import annotations

import pytest
import torch

from interp.activations import get_activations
from interp.errors import InterpError
from interp.models import load_model
from interp.patching import Patch, patched_logprobs, patched_logprobs_full, patched_next_token_logits
from interp.prompts import build_prompts
from interp.tasks import get_task_set


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2"])
def model(request):
    return load_model(request.param)


def _rows(model, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    conts = [[5, 9, 11], [7], [3, 4], [12, 13, 14, 15], [8, 2]]
    patches = [
        None,
        Patch(0, torch.randn(model.d_model, generator=gen), "replace"),
        Patch(1, torch.randn(model.d_model, generator=gen), "add", 2.5),
        Patch(model.n_layers - 1, torch.randn(model.d_model, generator=gen), "replace", 0.5),
        Patch(0, torch.randn(model.d_model, generator=gen), "add"),
    ]
    return conts, patches


def test_prefix_reuse_equals_full_forward(model):
    ids = model.encode_prompt("\n73@12=")
    conts, patches = _rows(model)
    fast = patched_logprobs(model, ids, conts, patches, max_rows=2)  # several chunks
    ref = patched_logprobs_full(model, ids, conts, patches)
    for a, b in zip(fast, ref):
        assert len(a) == len(b)
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)
    # The patches really change the numbers (else the equality above would be vacuous).
    unpatched = patched_logprobs(model, ids, conts, [None] * len(conts))
    assert unpatched[0] == pytest.approx(fast[0], abs=1e-5)
    assert any(abs(x - y) > 1e-3 for a, b in zip(unpatched[1:], fast[1:]) for x, y in zip(a, b))


def test_single_token_prompt_has_no_prefix(model):
    ids = model.encode_prompt("=")[-1:]
    conts, patches = _rows(model, seed=1)
    fast = patched_logprobs(model, ids, conts, patches)
    ref = patched_logprobs_full(model, ids, conts, patches)
    assert torch.allclose(torch.tensor(sum(fast, [])), torch.tensor(sum(ref, [])), atol=1e-4)


def test_replace_with_clean_value_changes_nothing(model):
    ts = get_task_set("ab")
    prompt = build_prompts(ts, mixture={"add": 1.0}, n_prompts=1, examples_per_task=3, seed=3)[0]
    ids = model.encode_prompt(prompt.text)
    acts = get_activations(model, [prompt], ["resid_post"], positions="query", show_progress=False)
    conts = [[5, 9], [7, 1, 2]]
    clean = patched_logprobs(model, ids, conts, [None, None])
    for layer in range(model.n_layers):
        v = acts[f"blocks.{layer}.hook_resid_post"][0, 0]
        got = patched_logprobs(model, ids, conts, [Patch(layer, v), Patch(layer, v)])
        assert torch.allclose(torch.tensor(sum(got, [])), torch.tensor(sum(clean, [])), atol=1e-4)


def test_last_layer_vector_transplants_the_prediction(model):
    # The final residual alone sets the next-token distribution: replacing a zero-shot query's
    # last-layer state by a few-shot prompt's reproduces that prompt's output exactly.
    ts = get_task_set("ab")
    prompt = build_prompts(ts, mixture={"copy_op1": 1.0}, n_prompts=1, examples_per_task=4, seed=1)[0]
    acts = get_activations(model, [prompt], ["resid_post"], positions="query", show_progress=False)
    last = model.n_layers - 1
    v = acts[f"blocks.{last}.hook_resid_post"][0, 0]
    source = patched_next_token_logits(model, model.encode_prompt(prompt.text), [None])
    target_ids = model.encode_prompt("\n" + prompt.query + prompt.separator)
    patched = patched_next_token_logits(model, target_ids, [Patch(last, v), None])
    assert torch.allclose(patched[0], source[0], atol=1e-4)
    assert not torch.allclose(patched[1], source[0], atol=1e-3)


def test_bad_patches_raise(model):
    ids = model.encode_prompt("\n1@2=")
    with pytest.raises(InterpError):
        patched_logprobs(model, ids, [[1]], [Patch(model.n_layers, torch.zeros(model.d_model))])
    with pytest.raises(InterpError):
        patched_logprobs(model, ids, [[1]], [Patch(0, torch.zeros(model.d_model + 1))])
    with pytest.raises(InterpError):
        Patch(0, torch.zeros(model.d_model), mode="swap")


@pytest.mark.integration
def test_smollm2_prefix_reuse_equals_full_forward():
    m = load_model("smollm2-135m")
    ids = m.encode_prompt("\nKenya->")
    answers = [m.encode_continuation("Nairobi"), m.encode_continuation("Africa")]
    gen = torch.Generator().manual_seed(0)
    patches = [None] + [Patch(layer, torch.randn(m.d_model, generator=gen) * 3, mode)
                        for layer, mode in ((0, "replace"), (14, "add"), (29, "replace"))]
    patches.append(Patch(14, torch.randn(m.d_model, generator=gen), "replace"))
    conts = [answers[0]] * 4 + [answers[1]]  # two answer lengths in one batch
    fast = patched_logprobs(m, ids, conts, patches)
    ref = patched_logprobs_full(m, ids, conts, patches)
    for a, b in zip(fast, ref):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=5e-4)
    assert abs(sum(fast[3]) - sum(fast[0])) > 0.1  # the last-layer replacement does change the answer
