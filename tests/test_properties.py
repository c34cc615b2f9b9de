"""Property-based tests (hypothesis) over option values of the prompt builder and the scoring API.

For any value a user can pass, the library either returns a well-formed result or raises one
:class:`InterpError` line — never another exception, never a result that breaks its invariants.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from interp.errors import InterpError
from interp.prompts import build_prompts, mixture_counts, mixture_is_counts, parse_mixture
from interp.tasks import get_task_set

AB = get_task_set("ab")
TASKS = AB.task_names
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.sampled_from([0, 0.5, 1, 1.0, 0.25, 2, 1e300]))
maybe_int = st.one_of(st.none(), st.integers(-3, 12), st.floats(-2, 12), st.text(max_size=2), st.booleans())
separators = st.one_of(st.none(), st.text(max_size=4), st.sampled_from(["=", "->", " = ", "\n", "1", "@", ":"]))
mixtures = st.one_of(st.none(), st.dictionaries(st.sampled_from([*TASKS, "nosuch"]), numbers, max_size=3))


def _one_line(exc: InterpError) -> None:
    assert str(exc) and "\n" not in str(exc)


@FAST
@given(n_prompts=maybe_int, examples_per_task=maybe_int, separator=separators, mixture=mixtures,
       seed=st.one_of(st.integers(0, 10**6), st.text(max_size=3)))
def test_build_prompts_returns_valid_prompts_or_one_error_line(n_prompts, examples_per_task, separator, mixture,
                                                               seed) -> None:
    try:
        prompts = build_prompts(AB, mixture=mixture, n_prompts=n_prompts, examples_per_task=examples_per_task,
                                seed=seed, separator=separator)
    except InterpError as exc:
        _one_line(exc)
        return
    # Accepted: exactly what was asked for, and unambiguous.
    assert isinstance(n_prompts, int) and not isinstance(n_prompts, bool) and n_prompts >= 1
    assert examples_per_task is None or (isinstance(examples_per_task, int) and examples_per_task >= 1)
    assert len(prompts) == n_prompts
    sep = AB.separator if separator is None else separator
    for p in prompts:
        assert p.text.endswith(p.query + sep)
        assert "\n" not in sep and sep
        assert len(p.examples) == sum(p.counts.values())
        assert len(set(p.answers.values())) == len(p.answers)
        for ex in p.examples:
            assert sep not in ex.input and sep not in ex.answer
        assert all(0 <= s <= 1 for s in p.shares.values())
        if p.examples:
            assert math.isclose(sum(p.shares.values()), 1.0)
    if mixture is not None:
        assert all(math.isfinite(v) and v >= 0 for v in mixture.values())
        if mixture_is_counts(mixture):  # counts are taken literally
            assert prompts[0].counts == {k: int(v) for k, v in mixture.items()}


@FAST
@given(st.text(max_size=30))
def test_parse_mixture_parses_or_refuses_in_one_line(text: str) -> None:
    try:
        mixture = parse_mixture(text)
    except InterpError as exc:
        _one_line(exc)
        return
    assert mixture and all(math.isfinite(v) and v >= 0 for v in mixture.values())


@FAST
@given(st.dictionaries(st.sampled_from(TASKS), numbers, min_size=1, max_size=3), st.integers(1, 30))
def test_one_rule_for_shares_and_counts(mixture, examples_per_task) -> None:
    """Values in [0, 1] summing to 1 are shares; otherwise whole-number counts; anything else is refused."""
    try:
        counts = mixture_counts(mixture, None, examples_per_task)
    except InterpError as exc:
        _one_line(exc)
        return
    values = list(mixture.values())
    if mixture_is_counts(mixture):
        assert all(float(v).is_integer() for v in values)
        assert counts == {k: int(v) for k, v in mixture.items()}
    else:
        assert all(0 <= v <= 1 for v in values) and math.isclose(sum(values), 1.0, abs_tol=1e-6)
        active = sum(1 for v in values if v > 0)
        assert sum(counts.values()) == examples_per_task * active


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    from tests.conftest import load_cached

    return load_cached("tiny-llama")


answers = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(a=answers, b=answers, batch_size=st.one_of(st.integers(-2, 3), st.floats(0, 3), st.none()),
       end_of_answer=st.one_of(st.none(), st.text(max_size=2), st.integers(0, 2)))
def test_score_prompts_scores_or_refuses_in_one_line(model, a, b, batch_size, end_of_answer) -> None:
    from interp.scoring import score_prompts

    (prompt,) = build_prompts(AB, n_prompts=1, examples_per_task=2)
    prompt.answers = {"add": a, "copy_op1": b}
    try:
        table = score_prompts(model, [prompt], batch_size=batch_size, end_of_answer=end_of_answer,
                              show_progress=False)
    except InterpError as exc:
        _one_line(exc)
        return
    assert a and b and isinstance(batch_size, int) and batch_size >= 1
    assert len(table) == 2
    assert ((table["prob"] >= 0) & (table["prob"] <= 1)).all()
    assert (table["n_tokens"] >= 1).all()


@FAST
@given(st.integers(-5, 5), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True))
def test_option_dataclasses_accept_only_valid_values(num_beams, top_k, ci) -> None:
    from analyses.logit_lens import LogitLensOptions
    from analyses.superposition import SuperpositionOptions

    try:
        SuperpositionOptions(num_beams=num_beams, ci_level=ci)
        ok = True
    except InterpError as exc:
        _one_line(exc)
        ok = False
    assert ok == (num_beams >= 1 and math.isfinite(ci) and 0 < ci < 1)
    try:
        LogitLensOptions(top_k=top_k)
        assert top_k >= 1
    except InterpError as exc:
        _one_line(exc)
        assert top_k < 1
