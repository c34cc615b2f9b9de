"""SmolLM2-135M (the real model, offline). Marked `integration`; still part of `make test`."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from interp.prompts import Prompt, build_prompts
from interp.scoring import score_prompts, score_prompts_naive
from interp.tasks import get_task_set

pytestmark = pytest.mark.integration


def test_logits_match_plain_hf(smollm2) -> None:
    plain = AutoModelForCausalLM.from_pretrained(str(smollm2.path), dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    ids = torch.tensor([smollm2.encode_prompt("Kenya->Nairobi\nPeru->Lima\nChad->")])
    with torch.no_grad():
        ref = plain(ids).logits
        assert (smollm2.bridge(ids) - ref).abs().max() <= 1e-4
        assert (smollm2.hf_model(ids).logits - ref).abs().max() <= 1e-4
    assert smollm2.n_layers == 30 and smollm2.n_heads == 9 and smollm2.d_model == 576


def test_no_bos_and_known_tokenization(smollm2) -> None:
    assert not smollm2.prepend_bos
    ids = smollm2.encode_prompt("Country: France -> Paris\n12+35 -> 47")
    assert ids == [33911, 42, 4649, 4722, 7042, 198, 33, 34, 27, 35, 37, 4722, 216, 36, 39]
    assert smollm2.bridge.cfg.default_prepend_bos is False


def test_scoring_matches_naive_and_superposes(smollm2) -> None:
    prompts = build_prompts(get_task_set("ab"), n_prompts=1, examples_per_task=20, seed=0)
    fast = score_prompts(smollm2, prompts, show_progress=False)
    naive = score_prompts_naive(smollm2, prompts)
    assert (fast["prob"] - naive["prob"]).abs().max() <= 1e-5
    assert fast["prob"].sum() <= 1.0
    # The real model puts mass on more than one task's answer (the paper's effect).
    assert (fast["prob"] > 1e-2).sum() >= 2, fast


def test_boundary_mismatch_is_flagged(smollm2) -> None:
    # The prompt ends inside the separator: '-' then the answer '>Nairobi' merges into '->'.
    p = Prompt(0, "custom", "Kenya-", "Kenya", {"capital": ">Nairobi"}, {"capital": 1.0}, {"capital": 0}, [], "-", [5])
    scores = score_prompts(smollm2, [p], show_progress=False)
    assert bool(scores["boundary_mismatch"][0])
    assert 0 < scores["prob"][0] < 1


def test_space_before_the_answer_is_moved_into_it(smollm2) -> None:
    """Separator ": " — the space is scored as part of " Dublin" (the natural split), equal to a naive
    scorer given that split, and about as likely as the model's own continuation suggests."""
    answers = {"capital": "Dublin", "upper": "IRELAND"}
    text = "Kenya: Nairobi\nPeru: Lima\nIreland: "
    p = Prompt(0, "custom", text, "Ireland", answers, {"capital": 1.0, "upper": 0.0}, {"capital": 2, "upper": 0},
               [], ": ", [])
    fast = score_prompts(smollm2, [p], show_progress=False).set_index("task")
    assert fast["boundary_moved"].all() and not fast["boundary_mismatch"].any()
    natural = Prompt(0, "custom", text.rstrip(), "Ireland", {k: " " + v for k, v in answers.items()},
                     p.shares, p.counts, [], ":", [])
    naive = score_prompts_naive(smollm2, [natural], move_whitespace=False).set_index("task")
    assert (fast["logprob"] - naive["logprob"]).abs().max() < 1e-4
    unnatural = score_prompts(smollm2, [p], show_progress=False, move_whitespace=False).set_index("task")
    assert fast.loc["capital", "prob"] > 10 * unnatural.loc["capital", "prob"]
