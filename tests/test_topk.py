import math

import pandas as pd
import torch

from interp.prompts import build_prompts
from interp.scoring import score_prompts
from interp.tasks import get_task_set
from interp.topk import BeamConfig, enumerate_outputs, topk_counts


def _terminator_for(model, text: str) -> str:
    """A random model never predicts a newline; use as terminator the character it predicts second."""
    ids = model.encode_prompt(text)
    with torch.no_grad():
        first = int(model.hf_model(torch.tensor([ids])).logits[0, -1].argmax())
        second = int(model.hf_model(torch.tensor([ids + [first]])).logits[0, -1].argmax())
    assert first != second
    return model.tokenizer.decode([second])


def test_enumerated_outputs_have_their_scored_probability(tiny_llama) -> None:
    p = build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=3)[0]
    cfg = BeamConfig(num_beams=6, max_new_tokens=4, min_token_prob=1e-4, min_beam_prob=1e-6,
                     terminator=_terminator_for(tiny_llama, p.text))
    outputs = enumerate_outputs(tiny_llama, p.text, cfg)
    assert outputs, "the beam search found no complete output"
    probs = list(outputs.values())
    assert probs == sorted(probs, reverse=True)
    # Re-score each enumerated output as an 'answer': same probability (without the newline).
    text, prob = next(iter(outputs.items()))
    p.answers = {"x": text}
    p.shares = {"x": 1.0}
    scored = score_prompts(tiny_llama, [p], show_progress=False)
    assert math.isclose(float(scored["prob"][0]), prob, rel_tol=1e-3)


def test_r_counts_answers_in_top_k(tiny_llama) -> None:
    p = build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=3)[0]
    cfg = BeamConfig(num_beams=6, max_new_tokens=4, min_token_prob=1e-4, min_beam_prob=1e-6,
                     terminator=_terminator_for(tiny_llama, p.text))
    outputs = enumerate_outputs(tiny_llama, p.text, cfg)
    top = list(outputs.items())
    # Fake scores: make two task answers exactly the two best outputs, the third improbable.
    tasks = list(p.answers)
    scores = pd.DataFrame([
        {"prompt_id": p.prompt_id, "task": tasks[0], "answer": top[0][0], "share": 1 / 3, "prob": top[0][1]},
        {"prompt_id": p.prompt_id, "task": tasks[1], "answer": top[1][0], "share": 1 / 3, "prob": top[1][1]},
        {"prompt_id": p.prompt_id, "task": tasks[2], "answer": "zzz", "share": 1 / 3, "prob": 0.0},
    ])
    result = topk_counts(tiny_llama, [p], scores, cfg, show_progress=False)
    assert result["K"][0] == 3
    # The improbable third answer is outside the top K unless the K-th output is itself ~0.
    expected = 2 if len(top) < 3 or top[2][1] > 1e-5 else 3
    assert result["r"][0] == expected


def test_search_reusing_the_scoring_pass_equals_a_fresh_search(tiny_llama) -> None:
    # Two prompts of different lengths in one padded batch: states are sliced per prompt.
    prompts = build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=3, seed=5)
    prompts += build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=6, seed=6)
    prompts[1].prompt_id = 1
    cfg = BeamConfig(num_beams=6, max_new_tokens=4, min_token_prob=1e-4, min_beam_prob=1e-6,
                     terminator=_terminator_for(tiny_llama, prompts[0].text))
    reused: dict[int, dict[str, float]] = {}
    score_prompts(tiny_llama, prompts, batch_size=2, show_progress=False,
                  on_prompt=lambda p, state: reused.__setitem__(p.prompt_id, enumerate_outputs(tiny_llama, p.text, cfg, state)))
    for p in prompts:
        fresh = enumerate_outputs(tiny_llama, p.text, cfg)
        assert list(reused[p.prompt_id]) == list(fresh)
        for text, prob in fresh.items():
            assert math.isclose(reused[p.prompt_id][text], prob, rel_tol=1e-4)
    assert reused[0], "the search found outputs to compare"


def test_packed_beam_distributions_equal_plain_forwards_of_prompt_and_prefix(tiny_llama) -> None:
    # The search scores all beams in one packed (tree-attention) forward over the prompt's cache;
    # each beam's next-token distribution must be the one a plain forward of prompt + beam gives.
    from interp.scoring import run_prompts_with_cache
    from interp.topk import _next_distributions

    p = build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=3)[0]
    ids = tiny_llama.encode_prompt(p.text)
    _, kv, mask = run_prompts_with_cache(tiny_llama, [ids])
    prefixes = [[5, 9, 11], [5, 9, 12], [7, 3, 3], [40, 2, 8]]
    packed = _next_distributions(tiny_llama, kv, mask, prefixes)
    for prefix, got in zip(prefixes, packed, strict=True):
        with torch.no_grad():
            logits = tiny_llama.hf_model(torch.tensor([ids + prefix])).logits[0, -1].float()
        assert torch.allclose(got, torch.log_softmax(logits, dim=-1), atol=1e-4)
