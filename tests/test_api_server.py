"""API scoring against a real OpenAI-compatible server: llama.cpp's (llama-cpp-python) serving the SmolLM2 GGUF.

The server is built by ``make api-server`` into ``.venv-api-server`` (compiles llama.cpp: about 4 minutes
idle, 15 under load); without it these tests skip with that reason. The server runs on a free loopback
port with the same GGUF the in-process ``smollm2-135m`` is dequantised from, so the exact mode differs
from in-process only by how llama.cpp computes (quantised weights and activations): the tolerance below
was measured (docs/api-models.md).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from interp.api_scoring import ApiError, ApiSettings, ScoreStore, score_prompts_api
from interp.scoring import score_prompts

ROOT = Path(__file__).resolve().parents[1]
SERVER_PYTHON = Path(os.environ.get("INTERP_API_SERVER_PYTHON", ROOT / ".venv-api-server" / "bin" / "python"))
MODEL_ALIAS = "smollm2-135m"
# Measured on 8 ab + 8 country prompts (docs/api-models.md): the largest |Δ log P(answer)| between llama.cpp's
# exact scores and in-process was 0.59 (a 4-token answer); per token at most ~0.25. Twice the worst, rounded.
EXACT_LOGP_TOLERANCE = 1.2


def _server_available() -> str | None:
    if not SERVER_PYTHON.exists():
        return f"llama.cpp server not built ({SERVER_PYTHON} missing): run `make api-server` (about 4 minutes)"
    probe = subprocess.run([str(SERVER_PYTHON), "-c", "import llama_cpp.server"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        return f"llama_cpp.server does not import in {SERVER_PYTHON}: rebuild with `make api-server`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, started and waited for."""

    def __init__(self, port: int | None = None) -> None:
        from interp.models import find_smollm2_gguf

        self.port = port or _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(os.devnull, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(SERVER_PYTHON), "-m", "llama_cpp.server", "--model", str(find_smollm2_gguf()), "--model_alias",
             MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", "1",
             "--n_threads_batch", "1", "--n_ctx", "2048"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError("llama.cpp server did not answer within 120 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="module")
def llama_server() -> Iterator[LlamaServer]:
    reason = _server_available()
    if reason:
        pytest.skip(reason)
    server = LlamaServer()
    try:
        yield server
    finally:
        server.stop()


def _prompts(task_set: str, n: int = 2, per_task: int = 5):  # noqa: ANN202
    from interp.prompts import build_prompts
    from interp.tasks import get_task_set

    return build_prompts(get_task_set(task_set), n_prompts=n, examples_per_task=per_task, seed=3)


def _settings(server: LlamaServer, **kw: object) -> ApiSettings:
    return ApiSettings(api_base=server.base_url, api_model=MODEL_ALIAS, api_concurrency=1, **kw)  # type: ignore[arg-type]


def test_exact_and_beam_agree_with_in_process(llama_server: LlamaServer, smollm2) -> None:  # noqa: ANN001
    prompts = _prompts("ab")
    inproc = score_prompts(smollm2, prompts, show_progress=False)
    exact = score_prompts_api(prompts, _settings(llama_server, api_method="exact"), show_progress=False)
    beam = score_prompts_api(prompts, _settings(llama_server), show_progress=False)
    assert (exact["answer"].tolist(), beam["answer"].tolist()) == (inproc["answer"].tolist(),) * 2
    assert not exact["boundary_mismatch"].any()
    assert exact["n_tokens"].tolist() == inproc["n_tokens"].tolist()  # the same tokens on both sides
    gap = (exact["logprob"] - inproc["logprob"]).abs()
    assert gap.max() < EXACT_LOGP_TOLERANCE, gap.tolist()
    assert gap.max() > 0  # quantised arithmetic: never bit-equal to the dequantised fp32 model
    # The beam's numbers are the same server's per-token numbers: a reached single-path answer equals exact.
    reached = beam["prob"] > 0
    assert reached.any()
    close = [math.isclose(b, e, rel_tol=0.05) or b > e for b, e in zip(beam.loc[reached, "prob"],
                                                                        exact.loc[reached, "prob"])]
    assert all(close), list(zip(beam["prob"], exact["prob"]))


def test_echo_on_llama_cpp_is_refused_as_shifted(llama_server: LlamaServer) -> None:
    with pytest.raises(ApiError, match="shifted by one token.*--api-exact-via steps"):
        score_prompts_api(_prompts("ab", 1), _settings(llama_server, api_method="exact", api_exact_via="echo"),
                          show_progress=False)


def test_slow_answer_is_one_timeout_line(llama_server: LlamaServer) -> None:
    with pytest.raises(ApiError) as err:
        score_prompts_api(_prompts("country", 1, per_task=20), _settings(llama_server, api_timeout=0.001, api_retries=1,
                                                                         api_backoff=0.01, api_max_steps=1),
                          show_progress=False)
    assert "--api-timeout" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fix, words", [
    ({"api_model": "gpt-3.5-turbo-instruct"}, "does not serve model 'gpt-3.5-turbo-instruct'.*it serves: smollm2"),
    ({"api_base": "{root}"}, "--api-base must end in the API's /v1"),
])
def test_wrong_model_or_base_is_one_line(llama_server: LlamaServer, fix: dict[str, str], words: str) -> None:
    settings = _settings(llama_server)
    root = llama_server.base_url[: -len("/v1")]
    settings = replace(settings, **{k: v.format(root=root) for k, v in fix.items()})
    with pytest.raises(ApiError, match=words):
        score_prompts_api(_prompts("ab", 1), settings, show_progress=False)


def test_server_killed_mid_run_resumes_and_loses_nothing(tmp_path: Path) -> None:
    reason = _server_available()
    if reason:
        pytest.skip(reason)
    store = tmp_path / "api_scores.jsonl"
    prompts = _prompts("country", 4)
    server = LlamaServer()
    settings = _settings(server, api_method="exact", api_retries=1, api_backoff=0.2)
    failure: list[BaseException] = []

    def score() -> None:
        try:
            score_prompts_api(prompts, settings, store, show_progress=False)
        except ApiError as exc:
            failure.append(exc)

    worker = threading.Thread(target=score)
    try:
        worker.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(ScoreStore(store).done) < 3:
            time.sleep(0.1)
        server.kill()
        worker.join(timeout=120)
    finally:
        server.stop()
    assert failure and "\n" not in str(failure[0]) and "rerun" in str(failure[0]), failure
    kept = ScoreStore(store).done
    assert 3 <= len(kept) < 12
    restarted = LlamaServer(server.port)  # the same URL: the same command resumes
    try:
        scores = score_prompts_api(prompts, settings, store, show_progress=False)
    finally:
        restarted.stop()
    lines = [json.loads(line) for line in store.read_text().splitlines()]
    assert len(lines) == len({r["key"] for r in lines}) == 12  # nothing asked twice, nothing missing
    assert all(ScoreStore(store).done[k] == v for k, v in kept.items())  # what was scored before is kept as is
    assert scores["prob"].gt(0).all() and len(scores) == 12
