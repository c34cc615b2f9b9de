import json
from collections import Counter

import pytest

from interp.errors import InterpError
from interp.prompts import build_prompts, load_prompts, mixture_counts, parse_mixture, save_prompts
from interp.tasks import get_task_set


def test_exact_counts_random_order_and_shares() -> None:
    ts = get_task_set("country")
    prompts = build_prompts(ts, {"capital": 0.5, "upper": 0.25, "continent": 0.25}, n_prompts=5, n_examples=40)
    orders = set()
    for p in prompts:
        counts = Counter(e.task for e in p.examples)
        assert counts == {"capital": 20, "upper": 10, "continent": 10}
        assert p.shares == {"capital": 0.5, "upper": 0.25, "continent": 0.25}
        orders.add(tuple(e.task for e in p.examples))
    assert len(orders) == 5  # random order, different per prompt


def test_no_query_leakage_distinct_inputs_and_answers() -> None:
    for name in ("ab", "country", "word", "add-translate"):
        ts = get_task_set(name)
        for p in build_prompts(ts, n_prompts=10, examples_per_task=5, seed=3):
            inputs = [e.input for e in p.examples]
            assert len(set(inputs)) == len(inputs)
            assert all(p.query not in x for x in inputs)
            assert len(set(p.answers.values())) == len(p.answers)
            assert p.text.endswith(p.query + p.separator)
            assert all(p.text[o: o + len(p.separator)] == p.separator for o in p.separator_offsets)
            for e in p.examples:
                assert f"{e.input}{p.separator}{e.answer}\n" in p.text


def test_same_seed_byte_identical(tmp_path) -> None:
    ts = get_task_set("ab")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    save_prompts(build_prompts(ts, n_prompts=7, seed=11), a)
    save_prompts(build_prompts(ts, n_prompts=7, seed=11), b)
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.jsonl"
    save_prompts(build_prompts(ts, n_prompts=7, seed=12), c)
    assert a.read_bytes() != c.read_bytes()
    loaded = load_prompts(a)
    assert loaded[0].text == json.loads(a.read_text().splitlines()[0])["text"]


def test_largest_remainder_counts() -> None:
    assert mixture_counts({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 10, 20) == {"a": 4, "b": 3, "c": 3}
    assert mixture_counts({"a": 0.75, "b": 0.25}, None, 20) == {"a": 30, "b": 10}
    assert mixture_counts({"a": 10, "b": 30}, None, 20) == {"a": 10, "b": 30}
    assert mixture_counts({"a": 1.0, "b": 0.0}, None, 20) == {"a": 20, "b": 0}


def test_zero_share_task_is_scored_not_shown() -> None:
    ts = get_task_set("country")
    p = build_prompts(ts, {"capital": 1.0, "upper": 0.0}, n_prompts=1, examples_per_task=4)[0]
    assert set(p.answers) == {"capital", "upper"} and p.shares["upper"] == 0.0
    assert all(e.task == "capital" for e in p.examples)


@pytest.mark.parametrize(
    "text, message",
    [
        ("capital=0.5,upper=0.4", "sum to 0.9"),
        ("capital=0.5,capital=0.5", "twice"),
        ("capital", "task=share"),
        ("capital=abc", "bad share"),
    ],
)
def test_bad_mixtures(text: str, message: str) -> None:
    with pytest.raises(InterpError, match=message):
        mixture_counts(parse_mixture(text), None, 20)


def test_unknown_task_and_too_many_examples() -> None:
    ts = get_task_set("country")
    with pytest.raises(InterpError, match="unknown task 'capitol'.*capital"):
        build_prompts(ts, {"capitol": 1.0}, n_prompts=1)
    with pytest.raises(InterpError, match="distinct inputs"):
        build_prompts(ts, n_prompts=1, examples_per_task=100)


def test_coinciding_answers_cannot_be_resampled() -> None:
    ts = get_task_set("word")
    # Two tasks whose answers always coincide: no query can separate them.
    from interp.tasks import Task

    ts = ts.with_task(Task("first_again", lambda w: w[0]))
    with pytest.raises(InterpError, match="answers differ"):
        build_prompts(ts, {"first": 0.5, "first_again": 0.5}, n_prompts=1, examples_per_task=2)
