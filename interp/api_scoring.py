"""Answer probabilities from a model behind an OpenAI-compatible ``/v1/completions`` endpoint.

Closed models (the paper's ``gpt-3.5-turbo-instruct``) and models in a lab's vLLM or llama.cpp
server are reachable only through a completions endpoint that returns the top-k log-probabilities
of each generated token. Two ways to get P(answer | prompt) from it:

* ``beam`` — the authors' method (``get_probs_openai``): a breadth-first expansion of the text after
  the prompt. Each step asks for one token (``max_tokens=1``, ``temperature=0``, top-k
  log-probabilities, ``k`` = the beam width as in their code) after ``prompt + prefix`` for every kept
  prefix. A continuation that equals an answer string adds its cumulative probability to that
  answer (and is not extended further); any other continuation is kept when its step probability
  and its cumulative probability both exceed the thresholds (0.001); the ``beam_width`` (10) most
  probable are kept. The search runs for ``int(1.5 × the longest answer's token count)`` steps and
  stops early when no kept prefix is the start of any answer. An answer never reached gets 0, so
  the estimate is a lower bound (every tokenization path is summed, not only the canonical one).
* ``exact`` — teacher forcing, one request per answer: ``prompt + answer`` with ``echo`` and
  ``logprobs`` returns the log-probability of every prompt token; the answer's tokens (those at or
  after the prompt's last character) give P(answer) exactly as the in-process scorer does. It needs
  a server that echoes prompt log-probabilities (llama.cpp's Python server with ``--logits_all
  true``, vLLM; OpenAI's legacy completions did).

Requests run in a bounded thread pool, are retried with exponential backoff on 429/5xx and lost
connections, and are time-limited. Every scored unit (a prompt for ``beam``, a prompt × answer for
``exact``) is appended to a JSONL store as soon as it is done, so a rerun after a kill or an error
skips what is done. The API key is read from the environment variable named by
``api_key_env`` and is never written to the store, a log or a message.

Stdlib HTTP only (``urllib``): no client package is needed to reach a server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from interp.errors import InterpError
from interp.progress import progress
from interp.prompts import Prompt, check_prompt_list
from interp.validate import Validated

_log = logging.getLogger(__name__)

METHODS = ("beam", "exact")
RETRY_STATUSES = (429, 500, 502, 503, 504)
STORE_FORMAT = 1


class ApiError(InterpError):
    """The server could not be used as asked (unreachable, refused, missing a feature): one line naming the fix."""


@dataclass
class ApiSettings(Validated):
    """Which endpoint and model, how to score, and how hard to try (see the module docstring).

    Field names are the command-line flags (``--api-base`` …), so messages name the flag to fix."""

    title: ClassVar[str] = "API model (OpenAI-compatible /v1/completions)"

    api_base: str = field(default="", metadata={"help": "OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1"})
    api_model: str = field(default="", metadata={"help": "model name the server serves (its /v1/models id)"})
    api_key_env: str = field(default="", metadata={"help": "environment variable holding the API key (never written "
                                                           "anywhere); empty: send no key"})
    api_method: str = field(default="beam", metadata={"help": "beam: the authors' top-k expansion; exact: teacher-forced "
                                                          "prompt+answer with echo (server must echo logprobs)",
                                                  "choices": METHODS})
    api_beam_width: int = field(default=10, metadata={"help": "prefixes kept per step (the authors' num_beams)", "min": 1})
    api_top_logprobs: int = field(default=0, metadata={"help": "alternatives asked per step (0: the beam width, as the "
                                                           "authors' code does)", "min": 0, "max": 100})
    api_step_threshold: float = field(default=0.001, metadata={"help": "drop a continuation whose token probability is "
                                                                   "not above this", "min": 0, "lt": 1})
    api_cumulative_threshold: float = field(default=0.001, metadata={"help": "drop a continuation whose cumulative "
                                                                         "probability is not above this",
                                                                 "min": 0, "lt": 1})
    api_length_factor: float = field(default=1.5, metadata={"help": "search steps = int(factor × longest answer's "
                                                                "tokens)", "gt": 0, "max": 20})
    api_max_steps: int = field(default=0, metadata={"help": "search steps (0: from the answers' token counts, asked of "
                                                        "the server)", "min": 0, "max": 256})
    api_exact_via: str = field(default="auto", metadata={
        "help": "exact mode: echo (one echoed request per answer; OpenAI, vLLM), steps (one request per answer token "
                "asking the whole next-token distribution; llama.cpp's Python server, whose echoed log-probabilities "
                "are shifted by one token) or auto (steps where the server has /extras/tokenize)",
        "choices": ("auto", "echo", "steps")})
    api_exact_top_logprobs: int = field(default=100_000, metadata={
        "help": "alternatives asked per answer token in exact steps mode (larger than the vocabulary: all)",
        "min": 1})
    api_concurrency: int = field(default=4, metadata={"help": "requests in flight at once", "min": 1, "max": 64})
    api_timeout: float = field(default=60.0, metadata={"help": "seconds one request may take", "gt": 0, "max": 3600})
    api_retries: int = field(default=4, metadata={"help": "retries of a request on 429/5xx/lost connection", "min": 0,
                                              "max": 20})
    api_backoff: float = field(default=0.5, metadata={"help": "first retry wait in seconds (doubles each retry)",
                                                  "min": 0, "max": 60})

    def _validate(self) -> None:
        if self.api_base:
            parsed = urllib.parse.urlparse(self.api_base)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise InterpError(f"--api-base {self.api_base!r} is not an http(s) URL: give e.g. "
                                  "http://127.0.0.1:8080/v1")
            if not self.api_model:
                raise InterpError("--api-base needs --api-model: the model name the server serves")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise InterpError(f"--api-key-env {self.api_key_env!r} is not an environment variable name: give the "
                              "variable's name (e.g. OPENAI_API_KEY), never the key itself")

    @property
    def k(self) -> int:
        """Alternatives requested per step."""
        return self.api_top_logprobs or self.api_beam_width

    def result_params(self) -> dict[str, Any]:
        """What changes a scored number (the store's key): not the URL, key, pool size or timeouts."""
        out: dict[str, Any] = {"model": self.api_model, "method": self.api_method}
        if self.api_method == "beam":
            out.update(beam_width=self.api_beam_width, k=self.k, step_threshold=self.api_step_threshold,
                       cumulative_threshold=self.api_cumulative_threshold, length_factor=self.api_length_factor,
                       max_steps=self.api_max_steps)
        else:
            out["via"] = self.api_exact_via
        return out


# ------------------------------------------------------------------------------ HTTP


def _short(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _server_message(body: bytes) -> str:
    """The error text a server put in its JSON body (OpenAI: ``{"error": {"message": ...}}``), else the raw text."""
    raw = body.decode("utf-8", errors="replace")
    try:
        payload = json.loads(raw)
    except ValueError:
        return _short(raw)
    if isinstance(payload, dict):
        err = payload.get("error", payload.get("detail", payload))
        if isinstance(err, dict):
            err = err.get("message", err)
        if isinstance(err, list) and err and isinstance(err[0], dict):
            err = err[0].get("msg", err[0])
        return _short(str(err))
    return _short(raw)


_CONTEXT_WORDS = ("context", "too long", "maximum length", "max_tokens", "exceeds", "n_ctx")


class CompletionsClient:
    """A minimal OpenAI-compatible client: JSON over ``urllib`` with retries, backoff and a timeout."""

    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self.base = settings.api_base.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env, "")
            if not key:
                raise ApiError(f"environment variable {settings.api_key_env} (named by --api-key-env) is not set or "
                               f"empty: export {settings.api_key_env}=<your key> or drop --api-key-env")
            self._headers["Authorization"] = f"Bearer {key}"
        self.requests = 0
        self._count_lock = threading.Lock()

    def _url(self, path: str) -> str:
        return self.base + path

    def _once(self, method: str, url: str, payload: dict[str, Any] | None) -> Any:
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(url, data=data, headers=self._headers, method=method)
        with self._count_lock:
            self.requests += 1
        with urllib.request.urlopen(request, timeout=self.settings.api_timeout) as response:  # noqa: S310 - http(s) checked
            body = response.read()
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(f"{url} answered with something that is not JSON ({_short(body.decode('utf-8', 'replace'), 60)!r}): "
                           "check that --api-base is an OpenAI-compatible /v1 endpoint") from None

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, retry: bool = True) -> Any:
        """One JSON request, retried on 429/5xx, timeouts and lost connections; every failure one line."""
        url = self._url(path)
        attempts = (self.settings.api_retries if retry else 0) + 1
        last = ""
        for attempt in range(attempts):
            wait_s = self.settings.api_backoff * (2 ** attempt)
            try:
                return self._once(method, url, payload)
            except urllib.error.HTTPError as exc:
                body = exc.read() if exc.fp is not None else b""
                message = _server_message(body)
                if exc.code in RETRY_STATUSES:
                    last = f"HTTP {exc.code} ({message})"
                    retry_after = exc.headers.get("Retry-After") if exc.headers else None
                    if retry_after and retry_after.strip().isdigit():
                        wait_s = max(wait_s, min(float(retry_after), 60.0))
                else:
                    raise self._refusal(exc.code, message, url, payload) from None
            except TimeoutError:
                last = f"no answer within {self.settings.api_timeout:g} s"
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, (TimeoutError, socket.timeout)):
                    last = f"no answer within {self.settings.api_timeout:g} s"
                elif isinstance(reason, socket.gaierror) or not retry:
                    raise ApiError(f"cannot reach {self.base} ({_short(str(reason), 60)}): start the server or fix "
                                   "--api-base") from None
                else:
                    last = f"connection failed ({_short(str(reason), 60)})"
            except (http.client.HTTPException, ConnectionError) as exc:
                last = f"connection lost ({type(exc).__name__})"
            if attempt + 1 < attempts:
                _log.info("%s %s: %s; retrying in %.1f s", method, path, last, wait_s)
                time.sleep(wait_s)
        if last.startswith("no answer"):
            raise ApiError(f"{url}: {last} (after {attempts} tries): raise --api-timeout or check the server; "
                           "rerun the same command to resume, scored answers are kept")
        raise ApiError(f"{url}: {last} (after {attempts} tries): check the server, then rerun the same command to "
                       "resume; scored answers are kept")

    def _refusal(self, code: int, message: str, url: str, payload: dict[str, Any] | None) -> ApiError:
        if code in (401, 403):
            var = self.settings.api_key_env
            fix = f"set a valid key in ${var}" if var else "pass --api-key-env NAME_OF_THE_VARIABLE_HOLDING_THE_KEY"
            return ApiError(f"{url} refused the request (HTTP {code}: {message}): {fix}")
        if code == 404 and url.endswith("/completions"):
            if "model" in message.lower():
                return ApiError(f"{url}: model {self.settings.api_model!r} not found ({message}): fix --api-model")
            return ApiError(f"{url} does not exist (HTTP 404): --api-base must end in the API's /v1 prefix")
        lowered = message.lower()
        if code in (400, 413, 422) and any(w in lowered for w in _CONTEXT_WORDS) and payload is not None:
            n = len(str(payload.get("prompt", "")))
            return ApiError(f"the prompt ({n} characters) does not fit the served model's context ({message}): lower "
                            "--examples-per-task or start the server with a larger context")
        if code in (400, 422) and "model" in lowered:
            return ApiError(f"{url}: the server rejects model {self.settings.api_model!r} ({message}): fix --api-model")
        return ApiError(f"{url} refused the request (HTTP {code}: {message}): check --api-base/--api-model and the "
                        "server's options")

    # -------------------------------------------------------------------------- endpoints

    def check_model(self) -> list[str]:
        """Fail fast (no retries on a refused connection) when the URL or the model name is wrong."""
        try:
            listing = self.call("GET", "/models", retry=False)
        except ApiError as exc:
            if "does not exist" in str(exc) or "HTTP 404" in str(exc) or "HTTP 405" in str(exc):
                return []  # a server without /models: the first completion tells
            raise
        data = listing.get("data") if isinstance(listing, dict) else None
        names = [str(m.get("id")) for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        if names and self.settings.api_model not in names:
            shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
            raise ApiError(f"{self.base} does not serve model {self.settings.api_model!r} (it serves: {shown}): fix "
                           "--api-model")
        return names

    def completion(self, **payload: Any) -> dict[str, Any]:
        """``choices[0]`` of one ``/completions`` request (model and temperature 0 filled in)."""
        body = {"model": self.settings.api_model, "temperature": 0, **payload}
        response = self.call("POST", "/completions", body)
        choices = response.get("choices") if isinstance(response, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ApiError(f"{self.base}/completions answered without choices ({_short(json.dumps(response), 60)}): "
                           "check that --api-base is an OpenAI-compatible completions endpoint")
        return choices[0]

    def next_token_logprobs(self, text: str) -> dict[str, float]:
        """Top-k next-token log-probabilities after ``text`` (one request, one generated token)."""
        choice = self.completion(prompt=text, max_tokens=1, logprobs=self.settings.k)
        logprobs = choice.get("logprobs")
        top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(top, list) or not top or not isinstance(top[0], dict):
            raise ApiError(f"{self.base} returns no top log-probabilities for /completions (logprobs={self.settings.k}): "
                           "the beam method needs them; use a server that supports `logprobs`")
        return {str(tok): float(lp) for tok, lp in top[0].items() if lp is not None}

    def echo_is_shifted(self, text: str = "1, 2, 3, 4, 5, 6") -> bool:
        """Whether echoed log-probabilities pair token i with the distribution *after* it (llama-cpp-python 0.3.x).

        Compares the echoed last token's alternatives with a plain request's next-token alternatives
        after the same text: in a correct server they are different distributions; shifted, they are
        the same numbers.
        """
        echoed = self.completion(prompt=text, echo=True, logprobs=5, max_tokens=1).get("logprobs")
        plain = self.completion(prompt=text, logprobs=5, max_tokens=1).get("logprobs")
        try:
            offsets, tops = echoed["text_offset"], echoed["top_logprobs"]
            last = max((i for i, o in enumerate(offsets) if o < len(text)), key=lambda i: offsets[i])
            mine, after = tops[last], plain["top_logprobs"][0]
        except (KeyError, TypeError, ValueError, IndexError):
            return False  # no echo at all: exact_answer_logprob says so in its own words
        shared = set(mine) & set(after) if isinstance(mine, dict) and isinstance(after, dict) else set()
        return len(shared) >= 2 and all(mine[k] == after[k] for k in shared)

    def has_llama_cpp_extras(self) -> bool:
        """Whether the server offers llama-cpp-python's /extras/tokenize and /extras/detokenize."""
        try:
            self.tokenize_ids("a")
            self.detokenize([0])
        except (ApiError, urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
            return False
        return True

    def _root(self) -> str:
        return self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base

    def tokenize_ids(self, text: str) -> list[int]:
        response = self._once("POST", self._root() + "/extras/tokenize", {"input": text, "model": self.settings.api_model})
        tokens = response.get("tokens") if isinstance(response, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ValueError("no tokens")
        return tokens

    def detokenize(self, ids: list[int]) -> str:
        response = self._once("POST", self._root() + "/extras/detokenize", {"tokens": ids,
                                                                            "model": self.settings.api_model})
        text = response.get("text") if isinstance(response, dict) else None
        if not isinstance(text, str):
            raise ValueError("no text")
        return text

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` without any BOS the server adds, via a tokenize endpoint (None when it has none)."""
        root = self._root()
        for url, make in ((root + "/extras/tokenize", lambda t: {"input": t, "model": self.settings.api_model}),
                          (root + "/tokenize", lambda t: {"prompt": t, "model": self.settings.api_model,
                                                          "add_special_tokens": False})):
            try:
                counts = []
                for t in (text, ""):
                    response = self._once("POST", url, make(t))
                    tokens = response.get("tokens") if isinstance(response, dict) else None
                    if not isinstance(tokens, list):
                        raise ValueError("no tokens")
                    counts.append(len(tokens))
            except (urllib.error.URLError, ApiError, ValueError, OSError, http.client.HTTPException):
                continue
            return counts[0] - counts[1]  # tokenizing "" shows the special tokens the endpoint adds
        return None


# ------------------------------------------------------------------------------ the two methods


@dataclass
class BeamOutcome:
    """Per answer string: summed probability (0 when never reached), steps run, requests made."""

    probs: dict[str, float]
    steps: int
    requests: int


def beam_answer_probs(next_logprobs: Callable[[str], dict[str, float]], prompt: str, answers: Sequence[str],
                      max_steps: int, beam_width: int = 10, step_threshold: float = 0.001,
                      cumulative_threshold: float = 0.001) -> BeamOutcome:
    """The authors' ``get_probs_openai`` search over any top-k next-token function (see the module docstring)."""
    targets = list(dict.fromkeys(answers))
    target_set = set(targets)
    beams: list[tuple[str, float]] = [("", 1.0)]
    found: dict[str, float] = {}
    steps = requests = 0
    for _ in range(max_steps):
        steps += 1
        candidates: list[tuple[str, float]] = []
        for context, prev in beams:
            top = next_logprobs(prompt + context)
            requests += 1
            for token, logprob in top.items():
                prob = math.exp(logprob)
                text = context + token
                if text in target_set:
                    # Reaching an answer ends that path (no thresholds), exactly as in the authors' code.
                    found[text] = found.get(text, 0.0) + prev * prob
                elif prob > step_threshold and prev * prob > cumulative_threshold:
                    candidates.append((text, prev * prob))
        if not candidates:
            break
        beams = sorted(candidates, key=lambda c: c[1], reverse=True)[:beam_width]
        if not any(t.startswith(context) for context, _ in beams for t in targets):
            break
    return BeamOutcome({t: found.get(t, 0.0) for t in targets}, steps, requests)


@dataclass
class ExactOutcome:
    logprob: float
    n_tokens: int
    boundary_mismatch: bool
    boundary_moved: bool


def _echoed_tokens(logprobs: Any, full: str, base: str) -> tuple[list[str], list[float | None], list[int]]:
    missing = (f"{base} does not echo prompt log-probabilities (echo + logprobs): use --api-method beam, or a server "
               "that echoes them (llama.cpp's Python server: --logits_all true)")
    if not isinstance(logprobs, dict):
        raise ApiError(missing)
    tokens, values, offsets = logprobs.get("tokens"), logprobs.get("token_logprobs"), logprobs.get("text_offset")
    if not (isinstance(tokens, list) and isinstance(values, list) and len(tokens) == len(values)):
        raise ApiError(missing)
    if not isinstance(offsets, list) or len(offsets) != len(tokens):
        offsets, at = [], 0  # no offsets given: rebuild them from the token strings
        for tok in tokens:
            offsets.append(at)
            at += len(str(tok))
    echoed = [i for i, o in enumerate(offsets) if isinstance(o, int) and o < len(full)]
    if not echoed or "".join(str(tokens[i]) for i in echoed) != full[offsets[echoed[0]]:]:
        raise ApiError(missing)
    return [str(tokens[i]) for i in echoed], [values[i] for i in echoed], [int(offsets[i]) for i in echoed]


def exact_answer_logprob(client: CompletionsClient, prompt: str, answer: str) -> ExactOutcome:
    """log P(answer | prompt) from one teacher-forced request (``echo`` + ``logprobs``).

    The answer's tokens are those of the joint text starting at the prompt's end. When no token
    starts there (the tokenizer merges across the boundary) and the prompt ends in whitespace, the
    split is moved before the whitespace (the in-process scorer's natural split); failing that, the
    token that straddles the boundary is scored with the answer and the row is flagged.
    """
    full = prompt + answer
    # max_tokens=1: some servers read 0 as "no limit"; the one generated token is ignored.
    choice = client.completion(prompt=full, echo=True, logprobs=2, max_tokens=1)
    tokens, values, offsets = _echoed_tokens(choice.get("logprobs"), full, client.base)
    start, moved, mismatch = len(prompt), False, False
    if start not in offsets:
        stripped = prompt.rstrip()
        if stripped != prompt and len(stripped) in offsets:
            start, moved = len(stripped), True
        else:
            start = max(o for o in offsets if o < len(prompt))
            mismatch = True
    picked = [v for v, o in zip(values, offsets) if o >= start]
    if not picked or any(v is None for v in picked):
        raise ApiError(f"{client.base} returned no log-probability for the answer's first token: it does not score "
                       "the echoed prompt; use --api-method beam")
    return ExactOutcome(float(sum(float(v) for v in picked)), len(picked), mismatch, moved)


def stepwise_answer_logprob(client: CompletionsClient, prompt: str, answer: str) -> ExactOutcome:
    """log P(answer | prompt) token by token: the server's whole next-token distribution after each prefix.

    The answer's tokens come from the server's tokenization of ``prompt + answer`` (llama-cpp-python's
    ``/extras/tokenize``); each step sends the prompt plus the answer's earlier tokens as text and
    reads the next token's log-probability among ``api_exact_top_logprobs`` alternatives (all of
    them by default). The row is flagged ``boundary_mismatch`` when the prompt's tokens are not a
    prefix of the joint tokens or a prefix's text re-tokenizes differently (then the numbers are
    those of another token path).
    """
    try:
        joint = client.tokenize_ids(prompt + answer)
        head = client.tokenize_ids(prompt)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        raise ApiError(f"{client.base} has no /extras/tokenize (llama-cpp-python's): use --api-exact-via echo") from None
    common = 0
    while common < min(len(joint), len(head)) and joint[common] == head[common]:
        common += 1
    mismatch = common != len(head)
    if common == len(joint):
        raise InterpError(f"the answer {answer!r} adds no token after the prompt: every answer needs text")
    context = prompt if not mismatch else client.detokenize(joint[:common])
    pieces = [client.detokenize([t]) for t in joint[common:]]
    logprob, text = 0.0, context
    for j, piece in enumerate(pieces):
        if j and client.tokenize_ids(text) != joint[: common + j]:
            mismatch = True  # the prefix re-tokenizes differently: this step conditions on another path
        choice = client.completion(prompt=text, max_tokens=1, logprobs=client.settings.api_exact_top_logprobs)
        logprobs = choice.get("logprobs")
        top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(top, list) or not top or not isinstance(top[0], dict):
            raise ApiError(f"{client.base} returns no top log-probabilities for /completions: exact steps mode needs "
                           "them; use --api-exact-via echo")
        if piece not in top[0]:
            raise ApiError(f"answer token {piece!r} is not among the {client.settings.api_exact_top_logprobs} "
                           "log-probabilities the server returned: raise --api-exact-top-logprobs")
        logprob += float(top[0][piece])
        text += piece
    return ExactOutcome(logprob, len(pieces), mismatch, False)


# ------------------------------------------------------------------------------ resumable store


class ScoreStore:
    """Append-only JSONL of scored units, keyed by what determines the number.

    Appends are flushed and fsynced one line at a time (a journal, not a file rewritten through
    :mod:`interp.io`): a kill can only cut the last line, which is skipped on reading and redone.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.done: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._cut = False  # the file ends in a partial line: start the next record on a new line
        if self.path is not None and self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            self._cut = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # the line a kill cut short
                if isinstance(record, dict) and record.get("format") == STORE_FORMAT and isinstance(record.get("key"), str):
                    self.done[record["key"]] = record

    def add(self, record: dict[str, Any]) -> None:
        record = {"format": STORE_FORMAT, **record}
        with self._lock:
            self.done[record["key"]] = record
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(("\n" if self._cut else "") + json.dumps(record, sort_keys=True) + "\n")
                self._cut = False
                handle.flush()
                os.fsync(handle.fileno())


def unit_key(params: dict[str, Any], prompt: str, answers: Sequence[str]) -> str:
    blob = json.dumps([params, prompt, sorted(set(answers))], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------ scoring prompts


SCORE_COLUMNS = ["prompt_id", "task", "answer", "share", "prob", "logprob", "n_tokens", "boundary_mismatch",
                 "boundary_moved", "method", "reached", "requests"]


def _max_steps(client: CompletionsClient, settings: ApiSettings, prompts: Sequence[Prompt]) -> tuple[int, dict[str, int]]:
    """Search steps (the authors': int(1.5 × longest answer in tokens)) and each answer's token count."""
    counts: dict[str, int] = {}
    if settings.api_max_steps:
        return settings.api_max_steps, counts
    for answer in sorted({a for p in prompts for a in p.answers.values()}):
        n = client.count_tokens(answer)
        if n is None:
            raise ApiError(f"{client.base} has no tokenize endpoint to count the answers' tokens: pass --api-max-steps "
                           "N (the authors use int(1.5 × the longest answer's token count))")
        counts[answer] = n
    return max(1, int(settings.api_length_factor * max(counts.values()))), counts


def score_prompts_api(prompts: Sequence[Prompt], settings: ApiSettings, store_path: str | Path | None = None,
                      show_progress: bool = True, client: CompletionsClient | None = None) -> pd.DataFrame:
    """Score every prompt's answers through the endpoint in ``settings`` (columns: :data:`SCORE_COLUMNS`).

    ``store_path``: the JSONL store; units found there are not requested again (resume). A failure
    raises one :class:`ApiError` after the units already finished are on disk.
    """
    check_prompt_list(prompts)
    if not settings.api_base:
        raise InterpError("no API to score with: pass --api-base URL and --api-model NAME")
    client = client or CompletionsClient(settings)
    store = ScoreStore(store_path)
    params = settings.result_params()
    units: list[tuple[str, Prompt, list[str]]] = []
    for p in prompts:
        answers = list(dict.fromkeys(p.answers.values()))
        if settings.api_method == "beam":
            units.append((unit_key(params, p.text, answers), p, answers))
        else:
            units.extend((unit_key(params, p.text, [a]), p, [a]) for a in answers)
    todo = [u for u in units if u[0] not in store.done]
    if todo:
        client.check_model()
    steps, token_counts = (0, {})
    via = settings.api_exact_via
    if todo and settings.api_method == "exact" and via == "auto":
        via = "steps" if client.has_llama_cpp_extras() else "echo"
    if todo and settings.api_method == "exact" and via == "echo" and client.echo_is_shifted():
        raise ApiError(f"{client.base} echoes log-probabilities shifted by one token (a llama-cpp-python bug): use "
                       "--api-exact-via steps")
    if todo and settings.api_method == "beam":
        steps, token_counts = _max_steps(client, settings, [u[1] for u in todo])
    if len(todo) < len(units):
        _log.info("api scoring: %d of %d units already scored in %s", len(units) - len(todo), len(units), store_path)

    def work(unit: tuple[str, Prompt, list[str]]) -> None:
        key, p, answers = unit
        if settings.api_method == "beam":
            outcome = beam_answer_probs(client.next_token_logprobs, p.text, answers, steps, settings.api_beam_width,
                                        settings.api_step_threshold, settings.api_cumulative_threshold)
            store.add({"key": key, "prompt_id": p.prompt_id, "method": "beam", "probs": outcome.probs,
                       "steps": outcome.steps, "requests": outcome.requests,
                       "n_tokens": {a: token_counts.get(a) for a in answers}})
        else:
            score = stepwise_answer_logprob if via == "steps" else exact_answer_logprob
            ex = score(client, p.text, answers[0])
            store.add({"key": key, "prompt_id": p.prompt_id, "method": "exact", "answer": answers[0],
                       "logprob": ex.logprob, "n_tokens": ex.n_tokens, "boundary_mismatch": ex.boundary_mismatch,
                       "boundary_moved": ex.boundary_moved, "via": via,
                       "requests": ex.n_tokens if via == "steps" else 1})

    if todo:
        _run_pool(work, todo, settings.api_concurrency, show_progress, f"api {settings.api_method} scoring")
    return _rows(units, store)


def _run_pool(work: Callable[[Any], None], items: list[Any], concurrency: int, show_progress: bool, desc: str) -> None:
    """Run ``work`` over ``items`` with at most ``concurrency`` in flight; on the first failure stop queueing,
    let running items finish (their results reach the store), and raise that failure."""
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="interp-api")
    futures: list[Future[None]] = []
    failed = threading.Event()

    def guarded(item: Any) -> None:
        if failed.is_set():
            return  # another unit failed: start nothing new (a started unit finishes and is stored)
        try:
            work(item)
        except BaseException:
            failed.set()
            raise

    try:
        futures = [pool.submit(guarded, item) for item in items]
        for _ in progress(_completed(futures), desc=desc, unit="unit", total=len(futures), disable=not show_progress):
            pass
    finally:
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)


def _completed(futures: list[Future[None]]) -> Any:
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for f in done:
            exc = f.exception()
            if exc is not None:
                raise exc
            yield f


def _rows(units: list[tuple[str, Prompt, list[str]]], store: ScoreStore) -> pd.DataFrame:
    rows = []
    by_prompt: dict[int, dict[str, dict[str, Any]]] = {}
    for key, p, answers in units:
        record = store.done[key]
        for a in answers:
            by_prompt.setdefault(p.prompt_id, {})[a] = record
    seen: set[int] = set()
    for _key, p, _answers in units:
        if p.prompt_id in seen:
            continue
        seen.add(p.prompt_id)
        for task, answer in p.answers.items():
            record = by_prompt[p.prompt_id][answer]
            if record["method"] == "beam":
                prob = float(record["probs"][answer])
                n_tokens = record.get("n_tokens", {}).get(answer)
                logprob = math.log(prob) if prob > 0 else -math.inf
                mismatch = moved = False
            else:
                logprob = float(record["logprob"])
                prob, n_tokens = math.exp(logprob), record["n_tokens"]
                mismatch, moved = bool(record["boundary_mismatch"]), bool(record["boundary_moved"])
            rows.append({"prompt_id": p.prompt_id, "task": task, "answer": answer,
                         "share": p.shares.get(task, 0.0), "prob": prob, "logprob": logprob,
                         "n_tokens": n_tokens if n_tokens is not None else -1, "boundary_mismatch": mismatch,
                         "boundary_moved": moved, "method": record["method"], "reached": prob > 0,
                         "requests": int(record.get("requests", 0))})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def describe(settings: ApiSettings) -> dict[str, Any]:
    """What a run directory records about the endpoint: never the key, only the variable's name."""
    out = asdict(settings)
    out["key_sent"] = bool(settings.api_key_env)
    return out
