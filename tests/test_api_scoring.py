"""API scoring (interp.api_scoring) against a fake OpenAI-compatible server in a thread.

The fake's probabilities are known exactly (tests/fake_completions.py), so the beam method is
checked against an exhaustive enumeration of token paths and the exact mode against a hand-computed
teacher-forced product; faults (429/5xx, timeouts, malformed JSON, missing logprobs/echo, context
overflow, wrong model, missing key) must each end in one line, and an interrupted run must resume
without asking again for what was scored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from interp.api_scoring import (
    ApiError,
    ApiSettings,
    CompletionsClient,
    ScoreStore,
    beam_answer_probs,
    score_prompts_api,
)
from interp.errors import InterpError
from interp.prompts import Prompt
from tests.fake_completions import FakeBehaviour, FakeModel, FakeServer


def _prompt(pid: int, text: str, answers: dict[str, str]) -> Prompt:
    shares = {t: 1 / len(answers) for t in answers}
    return Prompt(prompt_id=pid, task_set="fake", text=text, query=text, answers=answers, shares=shares,
                  counts=dict.fromkeys(answers, 1), examples=[], separator="=")


PROMPTS = [
    _prompt(0, "1=", {"copy": "1", "double": "2", "long": "123"}),
    _prompt(1, "12=", {"copy": "12", "double": "24", "letters": "ab"}),
    _prompt(2, "3=", {"copy": "3", "double": "x", "long": "3a"}),
]


def _settings(server: FakeServer, **kw: object) -> ApiSettings:
    base = {"api_base": server.base_url, "api_model": "fake-model", "api_backoff": 0.01, "api_timeout": 5.0}
    return ApiSettings(**{**base, **kw})  # type: ignore[arg-type]


def test_beam_exhaustive_equals_every_token_path() -> None:
    """Thresholds 0, all alternatives, wide beam: the search sums exactly every path spelling an answer."""
    model = FakeModel()
    answers = ["2", "12", "123", "ab", "3a"]

    def top(text: str) -> dict[str, float]:
        return {t: math.log(p) for t, p in model.next_probs(text).items()}

    outcome = beam_answer_probs(top, "x=", answers, max_steps=3, beam_width=10_000, step_threshold=0.0,
                                cumulative_threshold=0.0)
    reference = model.all_paths_prob("x=", answers, 3)
    for a in answers:
        assert outcome.probs[a] == pytest.approx(reference[a], rel=1e-12), a
    # "ab" has two tokenizations (a|b, ab): the sum exceeds the canonical path alone.
    canonical = math.exp(model.exact_logprob("x=", "ab"))
    assert outcome.probs["ab"] > canonical
    # Reaching an answer ends its path (the authors' rule): with "1" an answer, "123" is reached only through
    # the tokens 12|3, never 1|2|3 or 1|23 — and with "12" an answer too, never at all.
    cut = beam_answer_probs(top, "x=", ["1", "123"], 3, 10_000, 0.0, 0.0).probs["123"]
    p = model.next_probs
    assert cut == pytest.approx(p("x=")["12"] * p("x=12")["3"], rel=1e-12)
    assert beam_answer_probs(top, "x=", ["1", "12", "123"], 3, 10_000, 0.0, 0.0).probs["123"] == 0.0


def test_beam_with_thresholds_is_a_lower_bound_and_prunes() -> None:
    model = FakeModel(temperature=0.3)  # peaked: many continuations fall under the thresholds
    answers = ["1", "12", "123", "ab", "3a"]
    calls: list[str] = []

    def top(text: str) -> dict[str, float]:
        calls.append(text)
        ranked = sorted(model.next_probs(text).items(), key=lambda kv: -kv[1])[:3]
        return {t: math.log(p) for t, p in ranked}

    outcome = beam_answer_probs(top, "x=", answers, max_steps=4, beam_width=2)
    reference = model.all_paths_prob("x=", answers, 4)
    for a in answers:
        assert 0.0 <= outcome.probs[a] <= reference[a] + 1e-12
    assert outcome.requests == len(calls) <= 1 + 2 * 3  # at most beam_width requests per later step
    assert any(p == 0.0 for p in outcome.probs.values())  # some answer is never reached


def test_beam_mode_through_the_server_matches_the_search(tmp_path: Path) -> None:
    model = FakeModel()
    with FakeServer(model=model) as server:
        settings = _settings(server, api_beam_width=10_000, api_top_logprobs=100, api_step_threshold=0.0,
                             api_cumulative_threshold=0.0, api_max_steps=3, api_concurrency=2)
        scores = score_prompts_api(PROMPTS, settings, tmp_path / "store.jsonl", show_progress=False)
    assert list(scores["method"].unique()) == ["beam"]
    for p in PROMPTS:
        reference = model.all_paths_prob(p.text, list(p.answers.values()), 3)
        for task, answer in p.answers.items():
            row = scores[(scores["prompt_id"] == p.prompt_id) & (scores["task"] == task)].iloc[0]
            assert row["prob"] == pytest.approx(reference[answer], rel=1e-9)
            assert row["reached"] == (reference[answer] > 0)


def test_beam_steps_come_from_the_tokenize_endpoint() -> None:
    """Default steps: int(1.5 × the longest answer's token count) (here "123" = 12|3: 2 tokens -> 3 steps)."""
    with FakeServer() as server:
        scores = score_prompts_api(PROMPTS[:1], _settings(server, api_beam_width=10_000, api_top_logprobs=100,
                                                          api_step_threshold=0.0, api_cumulative_threshold=0.0),
                                   show_progress=False)
        longest = max(len(p) for p in server.prompts) - len(PROMPTS[0].text)
    assert longest == 2  # the last step extends two-character prefixes: 3 steps were run
    assert dict(zip(scores["answer"], scores["n_tokens"])) == {"1": 1, "2": 1, "123": 2}


def test_exact_mode_is_the_teacher_forced_product(tmp_path: Path) -> None:
    model = FakeModel()
    with FakeServer(model=model) as server:
        scores = score_prompts_api(PROMPTS, _settings(server, api_method="exact"), tmp_path / "s.jsonl",
                                   show_progress=False)
        assert server.requests == 2 + sum(len(set(p.answers.values())) for p in PROMPTS)  # 2: the echo check
    for p in PROMPTS:
        for task, answer in p.answers.items():
            row = scores[(scores["prompt_id"] == p.prompt_id) & (scores["task"] == task)].iloc[0]
            if p.text + answer == "3=3a" or answer == "ab":
                continue
            assert row["logprob"] == pytest.approx(model.exact_logprob(p.text, answer), abs=1e-12)
            assert row["n_tokens"] == len(model.tokenize(answer))
            assert not row["boundary_mismatch"]


def test_exact_steps_mode_equals_echo_and_the_product() -> None:
    """llama.cpp's way (whole next-token distribution per answer token) gives the same numbers as echo."""
    model = FakeModel()
    with FakeServer(FakeBehaviour(detokenize=True), model=model) as server:
        steps = score_prompts_api(PROMPTS[:2], _settings(server, api_method="exact"), show_progress=False)
        assert server.requests == int(steps.drop_duplicates(["prompt_id", "answer"])["n_tokens"].sum())
        echo = score_prompts_api(PROMPTS[:2], _settings(server, api_method="exact", api_exact_via="echo"),
                                 show_progress=False)
    clean = ~steps["boundary_mismatch"]
    assert clean.sum() >= 4
    assert steps.loc[clean, "logprob"].tolist() == pytest.approx(echo.loc[clean, "logprob"].tolist(), abs=1e-12)


def test_shifted_echo_is_detected() -> None:
    with FakeServer(FakeBehaviour(shifted_echo=True)) as server:
        with pytest.raises(ApiError, match="shifted by one token.*--api-exact-via steps"):
            score_prompts_api(PROMPTS[:1], _settings(server, api_method="exact", api_exact_via="echo"),
                              show_progress=False)


def test_exact_mode_flags_a_token_that_straddles_the_boundary() -> None:
    # The fake tokenizes "xa" + "b" as x|ab: no token starts where the answer starts.
    with FakeServer() as server:
        scores = score_prompts_api([_prompt(0, "xa", {"t": "b"})], _settings(server, api_method="exact"),
                                   show_progress=False)
    assert bool(scores["boundary_mismatch"].iloc[0])


def test_retries_on_429_and_503_then_succeed() -> None:
    for status in (429, 503):
        with FakeServer(FakeBehaviour(fail_status=status, fail_times=2)) as server:
            scores = score_prompts_api(PROMPTS[:1], _settings(server, api_method="exact", api_concurrency=1),
                                       show_progress=False)
            assert server.requests == 2 + 2 + 3  # two refused, the two-request echo check, three answers
        assert scores["prob"].gt(0).all()


def test_persistent_5xx_is_one_line_after_the_retries() -> None:
    with FakeServer(FakeBehaviour(fail_status=500, fail_times=100)) as server:
        with pytest.raises(ApiError) as err:
            score_prompts_api(PROMPTS[:1], _settings(server, api_method="exact", api_retries=2, api_concurrency=1),
                              show_progress=False)
        assert server.requests == 3
    assert "HTTP 500" in str(err.value) and "after 3 tries" in str(err.value) and "\n" not in str(err.value)


def test_timeout_is_one_line_naming_the_option() -> None:
    with FakeServer(FakeBehaviour(delay_s=1.0)) as server:
        with pytest.raises(ApiError) as err:
            score_prompts_api(PROMPTS[:1], _settings(server, api_method="exact", api_timeout=0.2, api_retries=1, api_concurrency=1),
                              show_progress=False)
    assert "--api-timeout" in str(err.value) and "after 2 tries" in str(err.value)


@pytest.mark.parametrize("behaviour, method, words", [
    (FakeBehaviour(malformed=True), "exact", "not JSON"),
    (FakeBehaviour(no_logprobs=True), "beam", "no top log-probabilities"),
    (FakeBehaviour(no_logprobs=True), "exact", "does not echo"),
    (FakeBehaviour(no_echo=True), "exact", "does not echo"),
    (FakeBehaviour(context_limit=2), "exact", "context"),
    (FakeBehaviour(tokenize=False), "beam", "--api-max-steps"),
], ids=["malformed-json", "no-logprobs-beam", "no-logprobs-exact", "no-echo", "context-overflow", "no-tokenizer"])
def test_server_faults_are_one_line(behaviour: FakeBehaviour, method: str, words: str) -> None:
    with FakeServer(behaviour) as server:
        with pytest.raises(ApiError) as err:
            score_prompts_api(PROMPTS[:1], _settings(server, api_method=method), show_progress=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_wrong_model_name_lists_what_is_served() -> None:
    with FakeServer() as server:
        with pytest.raises(ApiError, match="it serves: fake-model.*--api-model"):
            score_prompts_api(PROMPTS[:1], ApiSettings(api_base=server.base_url, api_model="gpt-9"), show_progress=False)


def test_unreachable_url_fails_fast() -> None:
    with FakeServer() as server:
        url = server.base_url
    with pytest.raises(ApiError, match="cannot reach .*--api-base"):
        score_prompts_api(PROMPTS[:1], ApiSettings(api_base=url, api_model="m", api_retries=5, api_backoff=5.0),
                          show_progress=False)


def test_key_is_sent_from_the_variable_and_written_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("FAKE_KEY", secret)
    store = tmp_path / "store.jsonl"
    with FakeServer(FakeBehaviour(require_key=secret)) as server:
        score_prompts_api(PROMPTS[:1], _settings(server, api_method="exact", api_key_env="FAKE_KEY"), store,
                          show_progress=False)
        assert set(server.auth_headers) == {f"Bearer {secret}"}
        with pytest.raises(ApiError, match=r"refused.*HTTP 401.*\$WRONG_KEY"):
            monkeypatch.setenv("WRONG_KEY", "nope")
            score_prompts_api(PROMPTS[1:2], _settings(server, api_method="exact", api_key_env="WRONG_KEY"),
                              show_progress=False)
    assert secret not in store.read_text()
    monkeypatch.delenv("FAKE_KEY")
    with pytest.raises(ApiError, match="FAKE_KEY.*not set"):
        CompletionsClient(ApiSettings(api_base="http://127.0.0.1:9/v1", api_model="m", api_key_env="FAKE_KEY"))


def test_resume_after_interruption_asks_only_for_what_is_missing(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"
    with FakeServer() as clean:
        expected = score_prompts_api(PROMPTS, _settings(clean, api_method="exact", api_concurrency=1), show_progress=False)
    with FakeServer(FakeBehaviour(fail_status=500, fail_after=6)) as server:
        with pytest.raises(ApiError):
            score_prompts_api(PROMPTS, _settings(server, api_method="exact", api_concurrency=1, api_retries=0), store,
                              show_progress=False)
        assert len(ScoreStore(store).done) == 4
        with open(store, "a") as handle:
            handle.write('{"format": 1, "key": "cut sho')  # a kill mid-append leaves a partial line
        server.behaviour.fail_after = -1
        before = server.requests
        resumed = score_prompts_api(PROMPTS, _settings(server, api_method="exact", api_concurrency=1), store,
                                    show_progress=False)
        assert server.requests - before == 2 + len(expected) - 4  # 2: the echo check
        again = server.requests
        score_prompts_api(PROMPTS, _settings(server, api_method="exact"), store, show_progress=False)
        assert server.requests == again  # everything is stored: no request at all
    assert resumed["prob"].tolist() == pytest.approx(expected["prob"].tolist(), abs=0)


def test_store_key_depends_on_the_method_parameters(tmp_path: Path) -> None:
    store = tmp_path / "store.jsonl"
    with FakeServer() as server:
        score_prompts_api(PROMPTS[:1], _settings(server, api_max_steps=2), store, show_progress=False)
        n = server.requests
        score_prompts_api(PROMPTS[:1], _settings(server, api_max_steps=2, api_beam_width=3), store, show_progress=False)
        assert server.requests > n  # another beam width is another number: asked again
    records = [json.loads(line) for line in store.read_text().splitlines()]
    assert len({r["key"] for r in records}) == 2


@pytest.mark.parametrize("kw, words", [
    ({"api_base": "localhost:8080", "api_model": "m"}, "not an http"),
    ({"api_base": "http://127.0.0.1:8080/v1"}, "--api-model"),
    ({"api_base": "http://h/v1", "api_model": "m", "api_method": "greedy"}, "--api-method"),
    ({"api_base": "http://h/v1", "api_model": "m", "api_beam_width": 0}, "--api-beam-width"),
    ({"api_base": "http://h/v1", "api_model": "m", "api_key_env": "sk-abc def"}, "never the key"),
])
def test_settings_refuse_bad_values(kw: dict[str, object], words: str) -> None:
    with pytest.raises(InterpError, match=words):
        ApiSettings(**kw)  # type: ignore[arg-type]


def test_superposition_command_scores_through_the_api_and_resumes(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_app.cli import main

    secret = "sk-never-written-0123"
    monkeypatch.setenv("FAKE_KEY", secret)
    out = tmp_path / "run"
    with FakeServer(FakeBehaviour(require_key=secret)) as server:
        argv = ["run", "superposition", "--api-base", server.base_url, "--api-model", "fake-model",
                "--api-key-env", "FAKE_KEY", "--task-set", "ab", "--n-prompts", "2", "--examples-per-task", "2",
                "--no-baselines", "--api-max-steps", "2", "--out", str(out)]
        assert main(argv) == 0
        first = server.requests
        assert first > 0
        # Another timeout is how the endpoint is reached, not what it computes: the same run, resumed.
        assert main([*argv, "--api-timeout", "30"]) == 0
        assert server.requests == first
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scoring"] == "api-beam" and metrics["requests"] == first
    import pandas as pd

    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["method"]) == {"beam"} and len(scores) == 2 * 3
    assert metrics["unreached_rows"] == int((~scores["reached"]).sum())
    for f in out.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
