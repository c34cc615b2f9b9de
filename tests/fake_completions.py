"""A small OpenAI-compatible ``/v1/completions`` server in a thread, over a made-up language model.

The "model" has a tiny vocabulary of token strings; its next-token distribution after any text is
a fixed pseudo-random function of that text (sha256), so tests can compute every probability the
server reports by hand: :meth:`FakeModel.next_probs`, :meth:`FakeModel.tokenize` (greedy longest
match) and :meth:`FakeModel.exact_logprob`. Faults are switched on per test through
:class:`FakeBehaviour` (status codes, delays, malformed bodies, missing logprobs or echo, a context
limit, a required key).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VOCAB = ("1", "2", "3", "12", "23", "4", "a", "b", "ab", "\n", "=", "x")


class FakeModel:
    """Deterministic next-token probabilities over :data:`VOCAB`."""

    def __init__(self, vocab: tuple[str, ...] = VOCAB, temperature: float = 1.0) -> None:
        self.vocab = vocab
        self.temperature = temperature

    def next_probs(self, text: str) -> dict[str, float]:
        scores = []
        for tok in self.vocab:
            digest = hashlib.sha256(f"{text}\x00{tok}".encode()).digest()
            scores.append(int.from_bytes(digest[:4], "big") / 2**32 * 6.0 / self.temperature)
        top = max(scores)
        weights = [math.exp(s - top) for s in scores]
        total = sum(weights)
        return {tok: w / total for tok, w in zip(self.vocab, weights)}

    def tokenize(self, text: str) -> list[str]:
        out, i = [], 0
        by_length = sorted(self.vocab, key=len, reverse=True)
        while i < len(text):
            tok = next((t for t in by_length if text.startswith(t, i)), text[i])
            out.append(tok)
            i += len(tok)
        return out

    def ids(self, text: str) -> list[int]:
        return [self.vocab.index(t) if t in self.vocab else 1000 + ord(t) for t in self.tokenize(text)]

    def text(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] if i < 1000 else chr(i - 1000) for i in ids)

    def exact_logprob(self, prompt: str, answer: str) -> float:
        """log P(answer | prompt) under the greedy tokenization of prompt + answer (a clean boundary assumed)."""
        lp, text = 0.0, prompt
        for tok in self.tokenize(answer):
            lp += math.log(self.next_probs(text)[tok])
            text += tok
        return lp

    def all_paths_prob(self, prompt: str, answers: list[str], max_steps: int) -> dict[str, float]:
        """Every token path spelling an answer within ``max_steps`` (the beam's exhaustive limit)."""
        found = dict.fromkeys(answers, 0.0)

        def walk(context: str, prob: float, depth: int) -> None:
            if depth == max_steps:
                return
            for tok, p in self.next_probs(prompt + context).items():
                text = context + tok
                if text in found:
                    found[text] += prob * p
                elif any(a.startswith(text) for a in answers):
                    walk(text, prob * p, depth + 1)

        walk("", 1.0, 0)
        return found


@dataclass
class FakeBehaviour:
    """What the server does wrong (all off by default)."""

    fail_status: int = 0  # answer this HTTP status ...
    fail_times: int = 0  # ... to this many completion requests (then behave)
    fail_after: int = -1  # answer fail_status to every completion request after this many good ones
    delay_s: float = 0.0  # sleep before answering a completion
    malformed: bool = False  # answer completions with text that is not JSON
    no_logprobs: bool = False
    no_echo: bool = False  # ignore echo: return only the generated token's logprobs
    context_limit: int = 0  # refuse prompts longer than this many characters (400, llama.cpp's wording)
    models: list[str] = field(default_factory=lambda: ["fake-model"])
    require_key: str = ""
    tokenize: bool = True  # offer llama-cpp-python's /extras/tokenize
    detokenize: bool = False  # ... and /extras/detokenize (then exact mode "auto" goes token by token)
    shifted_echo: bool = False  # llama-cpp-python 0.3.x: echoed token i paired with the distribution after it


class FakeServer:
    """``with FakeServer() as server: server.base_url``; ``server.requests`` counts completion requests."""

    def __init__(self, behaviour: FakeBehaviour | None = None, model: FakeModel | None = None) -> None:
        self.behaviour = behaviour or FakeBehaviour()
        self.model = model or FakeModel()
        self.requests = 0
        self.good = 0
        self.prompts: list[str] = []
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def completion(self, body: dict[str, Any]) -> tuple[int, Any]:
        b, m = self.behaviour, self.model
        prompt = str(body.get("prompt", ""))
        if body.get("model") not in b.models:
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist"}}
        if b.context_limit and len(prompt) > b.context_limit:
            return 400, {"error": {"message": f"Requested tokens ({len(prompt)}) exceed context window of "
                                              f"{b.context_limit}"}}
        probs = m.next_probs(prompt)
        generated = max(probs, key=probs.__getitem__)
        k = int(body.get("logprobs") or 0)
        top = dict(sorted(((t, math.log(p)) for t, p in probs.items()), key=lambda kv: -kv[1])[:k])
        logprobs: Any = {"tokens": [generated], "token_logprobs": [math.log(probs[generated])],
                         "top_logprobs": [top], "text_offset": [len(prompt)]}
        if body.get("echo") and not b.no_echo:
            toks = m.tokenize(prompt)
            values: list[float | None] = [None]
            offsets, at = [0], len(toks[0]) if toks else 0
            tops: list[Any] = [None]
            for tok in toks[1:]:
                before = m.next_probs(prompt[:at])
                values.append(math.log(before.get(tok, 1e-9)))
                tops.append({**dict(sorted(((t, math.log(p)) for t, p in before.items()), key=lambda kv: -kv[1])[:k]),
                             tok: math.log(before.get(tok, 1e-9))})
                offsets.append(at)
                at += len(tok)
            if b.shifted_echo:  # the distribution after each token, read at that token (the bug)
                tops, at = [None], 0
                for i, tok in enumerate(toks):
                    at += len(tok)
                    if i == 0:
                        continue
                    after = m.next_probs(prompt[:at])
                    values[i] = math.log(after.get(tok, 1e-9))
                    tops.append({**dict(sorted(((t, math.log(p)) for t, p in after.items()),
                                               key=lambda kv: -kv[1])[:k]), tok: math.log(after.get(tok, 1e-9))})
            logprobs = {"tokens": toks + [generated], "token_logprobs": values + [math.log(probs[generated])],
                        "top_logprobs": tops + [{**top, generated: math.log(probs[generated])}],
                        "text_offset": offsets + [len(prompt)]}
        if b.no_logprobs:
            logprobs = None
        text = (prompt if body.get("echo") else "") + generated
        return 200, {"object": "text_completion", "model": body.get("model"),
                     "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": "length"}]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                server.auth_headers.append(self.headers.get("Authorization", ""))
                want = server.behaviour.require_key
                if want and self.headers.get("Authorization") != f"Bearer {want}":
                    self._send(401, {"error": {"message": "Incorrect API key provided"}})
                    return False
                return True

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": n} for n in server.behaviour.models]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self._authorised():
                    return
                b = server.behaviour
                if self.path == "/extras/tokenize" and b.tokenize:
                    self._send(200, {"tokens": server.model.ids(body.get("input", ""))})
                    return
                if self.path == "/extras/detokenize" and b.detokenize:
                    self._send(200, {"text": server.model.text(body.get("tokens", []))})
                    return
                if self.path != "/v1/completions":
                    self._send(404, {"detail": "Not Found"})
                    return
                with server._lock:
                    server.requests += 1
                    server.prompts.append(str(body.get("prompt", "")))
                    failing = (server.requests <= b.fail_times) or (0 <= b.fail_after <= server.good)
                    if not failing:
                        server.good += 1
                if b.delay_s:
                    time.sleep(b.delay_s)
                if failing and b.fail_status:
                    self._send(b.fail_status, {"error": {"message": "server busy"}})
                    return
                if b.malformed:
                    self._send(200, None, raw=b"<html>502 Bad Gateway</html>")
                    return
                status, payload = server.completion(body)
                self._send(status, payload)

        return Handler
