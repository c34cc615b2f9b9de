"""Decoding after the first token: classifier, seeded sampling, conditional scoring, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import small_prompts

from analyses.decoding import (
    AnswerTokens,
    DecodingOptions,
    analyse,
    classify_continuation,
    conditional_logprob,
    decode_continuations,
    mixture_entropy,
    prompt_generator,
)
from interp.scoring import natural_split, run_prompts_with_cache, score_prompts

ANSWERS = {"copy": "12", "add": "123", "other": "45"}


# ------------------------------------------------------------------------------ the classifier


@pytest.mark.parametrize(("text", "category", "task", "consistent"), [
    ("45", "exact", "other", ("other",)),
    (" 45 ", "exact", "other", ("other",)),  # whitespace around the answer is ignored
    ("12", "exact", "copy", ("copy", "add")),  # exact for one task, still a prefix of another
    ("123", "exact", "add", ("add",)),
    ("4", "prefix", "", ("other",)),  # a prefix of one answer
    ("1", "prefix", "", ("copy", "add")),  # a prefix of several
    ("1234", "other", "", ()),
    ("5", "other", "", ()),
    ("", "other", "", ()),  # the line ended at once
    ("   ", "other", "", ()),
])
def test_classifier_on_hand_made_continuations(text: str, category: str, task: str, consistent: tuple) -> None:
    c = classify_continuation(text, ANSWERS)
    assert (c.category, c.task, c.consistent) == (category, task, consistent)


def test_classifier_strips_the_moved_whitespace_of_answers() -> None:
    assert classify_continuation(" Dub", {"capital": " Dublin", "upper": " IRELAND"}).consistent == ("capital",)
    assert classify_continuation("Dublin", {"capital": " Dublin"}).category == "exact"


# ------------------------------------------------------------------------------ mixture arithmetic


def _answer(task: str, ids: list[int], probs: list[float]) -> AnswerTokens:
    return AnswerTokens(task, task, ids, [math.log(p) for p in probs], math.log(np.prod(probs)), False)


def test_mixture_entropy_follows_the_consistent_tasks() -> None:
    a = _answer("a", [1, 2], [0.4, 0.5])  # P(a) = .2
    b = _answer("b", [1, 3], [0.4, 0.25])  # P(b) = .1, same first token as a
    c = _answer("c", [4], [0.3])
    n, h, mass, top = mixture_entropy([a, b, c], [])
    w = np.array([0.2, 0.1, 0.3]) / 0.6
    assert n == 3 and top == "c" and mass == pytest.approx(0.6)
    assert h == pytest.approx(float(-(w * np.log2(w)).sum()))
    # After token 1: a and b survive with P(rest) = .5 and .25 (= P(answer) / P(first token)).
    n, h, mass, top = mixture_entropy([a, b, c], [1])
    w = np.array([0.5, 0.25]) / 0.75
    assert (n, top) == (2, "a") and mass == pytest.approx(0.75)
    assert h == pytest.approx(float(-(w * np.log2(w)).sum()))
    assert mixture_entropy([a, b, c], [1, 2])[:3] == (1, 0.0, pytest.approx(1.0))
    n, h, mass, _ = mixture_entropy([a, b, c], [9])
    assert n == 0 and math.isnan(h) and mass == 0.0
    assert conditional_logprob(a, [1]) == pytest.approx(math.log(0.5))
    assert conditional_logprob(a, [1, 2, 5]) is None


# ------------------------------------------------------------------------------ sampling


def _state(model, prompt):  # noqa: ANN001, ANN202
    split = natural_split(model, prompt.text, prompt.answers)
    return run_prompts_with_cache(model, [split.ids])


def test_sampling_is_deterministic_per_seed(tiny_llama) -> None:  # noqa: ANN001
    prompt = small_prompts("ab", n=1)[0]
    logits, kv, mask = _state(tiny_llama, prompt)

    def draw(seed: int) -> list[list[int]]:
        out = decode_continuations(tiny_llama, logits, kv, mask, 8, 1.0, prompt_generator(seed, prompt.prompt_id), 4)
        return [c.tokens for c in out]

    first = draw(0)
    assert draw(0) == first
    assert draw(1) != first
    assert first[0] == draw(1)[0]  # index 0 is the greedy continuation: no randomness
    # Temperature 0: every sample is the greedy continuation.
    greedy = decode_continuations(tiny_llama, logits, kv, mask, 5, 0.0, prompt_generator(0, 0), 4)
    assert all(c.tokens == greedy[0].tokens for c in greedy)


def test_samples_of_a_prompt_do_not_depend_on_the_other_prompts(tiny_llama) -> None:  # noqa: ANN001
    prompts = small_prompts("ab", n=2)
    options = DecodingOptions(n_samples=4, max_new_tokens=3, n_boot=50)
    both = analyse(tiny_llama, prompts, options, show_progress=False).continuations
    alone = analyse(tiny_llama, prompts[1:], options, show_progress=False).continuations
    cols = ["kind", "sample", "tokens", "text", "stop", "category"]
    pd.testing.assert_frame_equal(both[both["prompt_id"] == 1][cols].reset_index(drop=True),
                                  alone[cols].reset_index(drop=True))
    other_seed = analyse(tiny_llama, prompts[1:], DecodingOptions(n_samples=4, max_new_tokens=3, n_boot=50,
                                                                  sample_seed=5), show_progress=False).continuations
    assert list(other_seed["tokens"]) != list(alone["tokens"])


def test_first_sampled_tokens_follow_the_model_distribution(tiny_llama) -> None:  # noqa: ANN001
    """4,000 one-token samples: each likely token's count within 5 binomial sds of N·p (p at temperature T)."""
    prompt = small_prompts("ab", n=1)[0]
    logits, kv, mask = _state(tiny_llama, prompt)
    n = 4000
    eos = tiny_llama.tokenizer.eos_token_id
    for temperature in (1.0, 0.5):
        # A delimiter no token decodes to, so that no drawn token is removed as the answer's end.
        out = decode_continuations(tiny_llama, logits, kv, mask, n, temperature, prompt_generator(3, 0), 1,
                                   delimiter="\x01")
        drawn = [c.tokens[0] for c in out[1:] if c.tokens]
        probs = torch.softmax(logits[0].double() / temperature, dim=-1)
        top = torch.topk(probs, 5)
        for p, tok in zip(top.values.tolist(), top.indices.tolist()):
            if tok == eos:  # an EOS draw ends the continuation and is not kept among its tokens
                continue
            count = drawn.count(tok)
            assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1, (temperature, tok, count, n * p)


# ------------------------------------------------------------------------------ conditional scoring


def test_conditional_scoring_is_consistent_with_full_answer_probabilities(tiny_model) -> None:  # noqa: ANN001
    prompts = small_prompts("country", n=2)
    result = analyse(tiny_model, prompts, DecodingOptions(n_samples=3, max_new_tokens=2, n_boot=50), show_progress=False)
    reference = score_prompts(tiny_model, prompts, show_progress=False).set_index(["prompt_id", "task"])
    delimited = score_prompts(tiny_model, prompts, end_of_answer="\n", show_progress=False).set_index(["prompt_id", "task"])
    scores = result.scores.set_index(["prompt_id", "task"])
    np.testing.assert_allclose(scores["p_task"], reference.loc[scores.index, "prob"], rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(scores["p_task_delimited"], delimited.loc[scores.index, "prob"], rtol=1e-4, atol=1e-12)
    cond = result.conditional
    own = cond[cond["own"]]
    # P(first token) · P(rest | first token) = P(answer), for every task's own first token.
    np.testing.assert_allclose(own["p_fixed_token"] * own["p_conditional"], own["p_task"], rtol=1e-4, atol=1e-15)
    # A task not consistent with the fixed token keeps nothing; probabilities stay in [0, 1].
    assert (cond.loc[~cond["consistent"], "p_conditional"] == 0).all()
    assert cond["p_conditional"].between(0, 1).all()
    # The conditional probability equals a direct forward of prompt + fixed token (no cache reuse).
    model = tiny_model
    p = prompts[0]
    split = natural_split(model, p.text, p.answers)
    row = own[own["prompt_id"] == p.prompt_id].iloc[0]
    ids = next(a.ids for a in split.answers if a.task == row["task"])
    with torch.no_grad():
        logits = model.hf_model(input_ids=torch.tensor([split.ids + ids])).logits.float()
    logp = torch.log_softmax(logits[0, len(split.ids): -1], dim=-1)
    direct = float(logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum().exp())
    assert row["p_conditional"] == pytest.approx(direct, rel=1e-4, abs=1e-12)


def test_summaries_have_intervals_and_counts_add_up(tiny_llama) -> None:  # noqa: ANN001
    prompts = small_prompts("ab", n=3)
    result = analyse(tiny_llama, prompts, DecodingOptions(n_samples=6, n_boot=100), show_progress=False)
    conts = result.continuations
    assert (conts.groupby("prompt_id").size() == 7).all()  # greedy + 6 samples
    assert set(conts["category"]) <= {"exact", "prefix", "other"}
    assert set(conts["stop"]) <= {"delimiter", "eos", "max_tokens"}
    s = result.scores
    assert (s["freq_ci_low"] <= s["freq"]).all() and (s["freq"] <= s["freq_ci_high"]).all()
    assert (s["count"] <= s["n_samples"]).all()
    assert len(result.summary) == 3
    assert (result.summary["freq_low"] <= result.summary["freq_high"]).all()
    assert result.categories["freq"].sum() == pytest.approx(1.0)
    assert result.position_summary["position"].iloc[0] == 0
    assert result.position_summary["mixed_fraction"].iloc[0] == pytest.approx(1.0)  # every task consistent at t=0


# ------------------------------------------------------------------------------ the CLI


def test_cli_end_to_end_on_a_tiny_model(tmp_path: Path) -> None:
    from interp_app.cli import main

    argv = ["run", "decoding", "--model", "tiny-llama", "--task-set", "ab", "--n-prompts", "2",
            "--examples-per-task", "3", "--n-samples", "4", "--n-boot", "50", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out = tmp_path / "run"
    for name in ("continuations", "scores", "summary", "categories", "positions", "position_summary", "conditional",
                 "conditional_summary"):
        assert (out / f"{name}.csv").exists() and (out / f"{name}.parquet").exists(), name
    assert (out / "decoding.png").exists() and (out / "metrics.json").exists()
    first = pd.read_csv(out / "continuations.csv")
    assert len(first) == 2 * 5
    assert main(argv) == 0  # same command, same seed: the same continuations
    pd.testing.assert_frame_equal(pd.read_csv(out / "continuations.csv"), first)


def test_report_section_calls_the_same_analysis(tmp_path: Path) -> None:
    import re

    from interp_app.report import ReportConfig, build_report

    out = tmp_path / "rep"
    build_report(ReportConfig(model="tiny-llama", out=str(out), n_prompts=2, task_sets="ab", sections="decoding",
                              options=["decoding.n_samples=3", "decoding.n_prompts=2"]),
                 show_progress=False, log=lambda line: None)
    html = (out / "index.html").read_text()
    assert '<section id="decoding"' in html and "This section failed" not in html
    summary = pd.read_csv(out / "decoding-ab-summary.csv")
    assert set(summary["task"]) == {"copy_op1", "copy_op2", "add"}
    conts = pd.read_csv(out / "decoding-ab-continuations.csv")
    assert len(conts) == 2 * 4  # greedy + 3 samples per prompt
    for link in re.findall(r'href="([^"#]+\.csv)"', html):
        assert (out / link).exists(), link
