import pytest
import torch

from interp.errors import InterpError
from interp.prompts import Example, Prompt, build_prompts, render_prompt
from interp.scoring import score_prompts, score_prompts_naive
from interp.tasks import get_task_set


def _prompts(n: int = 4, examples: int = 3, task_set: str = "ab"):
    return build_prompts(get_task_set(task_set), n_prompts=n, examples_per_task=examples, seed=1)


def test_kv_reuse_equals_naive(tiny_model) -> None:
    prompts = _prompts()
    fast = score_prompts(tiny_model, prompts, show_progress=False)
    naive = score_prompts_naive(tiny_model, prompts)
    assert len(fast) == len(prompts) * 3
    assert (fast["logprob"] - naive["logprob"]).abs().max() < 1e-4
    assert (fast["prob"] - naive["prob"]).abs().max() < 1e-5
    assert fast["n_tokens"].tolist() == naive["n_tokens"].tolist()
    # A random model still gives non-trivial, distinct probabilities (the check can fail).
    assert fast["prob"].nunique() == len(fast)


def test_padded_batch_equals_one_at_a_time(tiny_model) -> None:
    # Prompts of different lengths so that the batch really is padded.
    prompts = _prompts(n=2, examples=3) + build_prompts(get_task_set("ab"), n_prompts=2, examples_per_task=6, seed=2)
    single = score_prompts(tiny_model, prompts, batch_size=1, show_progress=False)
    batched = score_prompts(tiny_model, prompts, batch_size=4, show_progress=False)
    assert (single["logprob"] - batched["logprob"]).abs().max() < 1e-4


def test_probabilities_are_products_of_token_probabilities(tiny_llama) -> None:
    """Hand-computed teacher forcing on one prompt and answer."""
    p = _prompts(n=1)[0]
    ids = tiny_llama.encode_prompt(p.text)
    answer = p.answers["add"]
    ans_ids = tiny_llama.encode_continuation(answer)
    with torch.no_grad():
        logits = tiny_llama.hf_model(torch.tensor([ids + ans_ids])).logits[0]
    logp = torch.log_softmax(logits, -1)
    expected = sum(float(logp[len(ids) - 1 + t, tok]) for t, tok in enumerate(ans_ids))
    got = score_prompts(tiny_llama, [p], show_progress=False).set_index("task").loc["add", "logprob"]
    assert got == pytest.approx(expected, abs=1e-4)


def test_end_of_answer_adds_the_newline(tiny_llama) -> None:
    prompts = _prompts(n=2)
    plain = score_prompts(tiny_llama, prompts, show_progress=False)
    with_nl = score_prompts(tiny_llama, prompts, end_of_answer="\n", show_progress=False)
    assert (with_nl["n_tokens"] == plain["n_tokens"] + 1).all()
    assert (with_nl["logprob"] < plain["logprob"]).all()


def test_prompt_longer_than_context_is_refused(tiny_llama) -> None:
    examples = [Example("ab" * 20, "t", "x")] * 60  # ~2600 characters > 2048 tokens
    text, offsets = render_prompt(examples, "q", "->")
    p = Prompt(0, "custom", text, "q", {"t": "x"}, {"t": 1.0}, {"t": 60}, examples, "->", offsets)
    with pytest.raises(InterpError, match="context of 2048.*examples"):
        score_prompts(tiny_llama, [p], show_progress=False)


def _bpe_model(tmp_path):  # noqa: ANN001, ANN202
    """A tiny random Llama with SmolLM2's byte-level BPE tokenizer (which merges a space into the next word)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from interp.home import interp_home
    from interp.models import load_model

    source = interp_home() / "models" / "smollm2-135m"
    if not (source / "tokenizer.json").is_file():
        pytest.skip("SmolLM2's tokenizer is not prepared (run `interp models` / the integration tier once)")
    tok = AutoTokenizer.from_pretrained(str(source))
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(tmp_path / "m"))
    tok.save_pretrained(str(tmp_path / "m"))
    return load_model(str(tmp_path / "m"))


def test_trailing_whitespace_moves_into_the_answer_and_equals_the_natural_split(tmp_path) -> None:  # noqa: ANN001
    model = _bpe_model(tmp_path)
    answers = {"capital": "Dublin", "continent": "Europe"}
    # Separator ": " ends the prompt in a space that this tokenizer merges into the answer ("ĠDublin").
    p = Prompt(0, "custom", "Kenya: Nairobi\nIreland: ", "Ireland", answers, {"capital": 1.0, "continent": 0.0},
               {"capital": 1, "continent": 0}, [Example("Kenya", "capital", "Nairobi")], ": ", [5, 22])
    written = score_prompts(model, [p], show_progress=False, move_whitespace=False)
    assert written["boundary_mismatch"].all()  # the unnatural split: "Ġ" then "Dublin"
    fast = score_prompts(model, [p], show_progress=False)
    assert fast["boundary_moved"].all() and not fast["boundary_mismatch"].any()
    natural = Prompt(0, "custom", "Kenya: Nairobi\nIreland:", "Ireland", {k: " " + v for k, v in answers.items()},
                     p.shares, p.counts, p.examples, ":", [5, 22])
    naive = score_prompts_naive(model, [natural], move_whitespace=False)
    assert not naive["boundary_mismatch"].any()
    assert (fast["logprob"].to_numpy() - naive["logprob"].to_numpy()).max() < 1e-4
    assert fast["n_tokens"].tolist() == naive["n_tokens"].tolist()
    # The reference scorer moves the whitespace the same way.
    assert (score_prompts_naive(model, [p])["logprob"] - fast["logprob"]).abs().max() < 1e-4


def test_prompts_without_a_merge_are_scored_as_written(tiny_llama) -> None:
    prompts = _prompts(n=2)
    scores = score_prompts(tiny_llama, prompts, show_progress=False)
    assert not scores["boundary_moved"].any() and not scores["boundary_mismatch"].any()
