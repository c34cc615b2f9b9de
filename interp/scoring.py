"""Exact multi-token answer probabilities, computed once per prompt.

P(answer | prompt) is the product of the answer's token probabilities under teacher forcing.
Instead of one full forward of ``prompt + answer`` per answer (the paper's code), we run the
prompt once (batched, left-padded, ``sdpa`` attention, no hooks), keep its key/value cache, and
score all K answers of the prompt in one short batched continuation over that cache.

Tokenization boundary: an answer's tokens are taken from the tokenization of
``prompt + answer`` when the prompt's tokens are a prefix of it (the usual case). When the prompt
ends in whitespace that the tokenizer merges into the answer (separator ``": "``: ``"Ġ"`` then
``"Dublin"`` is not how the text ``": Dublin"`` tokenizes), the whitespace is moved from the prompt
into the answer before scoring (score ``" Dublin"`` after ``":"``, the natural split) and the row
records it in ``boundary_moved``. Only when no such split exists (a true merge across the
separator) do we score prompt tokens + the answer's own tokens and flag the row
``boundary_mismatch``; summaries exclude those prompts by default and count them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformers import DynamicCache

from interp.errors import InterpError
from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Prompt, check_prompt_list


@dataclass
class PromptState:
    """One prompt's forward pass: last-position logits, its key/value cache and attention mask.

    Handed to ``score_prompts(..., on_prompt=...)`` so that later steps (e.g. the top-K search)
    reuse the pass instead of running the prompt again.
    """

    last_logits: Float[Tensor, "1 d_vocab"]
    kv: list[tuple[Tensor, Tensor]]
    mask: Int[Tensor, "1 pos"]


@dataclass
class TokenizedAnswer:
    task: str
    answer: str
    ids: list[int]
    boundary_mismatch: bool


def tokenize_answers(model: LoadedModel, prompt_text: str, prompt_ids: list[int], answers: dict[str, str],
                     end_of_answer: str | None = None, prefix: str = "") -> list[TokenizedAnswer]:
    """Answer token ids for each task, with explicit tokenization-boundary handling.

    ``prefix`` is text moved from the prompt's end into every answer (see :func:`natural_split`);
    the tokens returned are those of ``prefix + answer (+ end_of_answer)``.
    """
    out = []
    for task, answer in answers.items():
        target = prefix + answer + (end_of_answer or "")
        joint = model.encode_prompt(prompt_text + target)
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            out.append(TokenizedAnswer(task, answer, joint[len(prompt_ids):], False))
        else:
            out.append(TokenizedAnswer(task, answer, model.encode_continuation(target), True))
    return out


@dataclass
class ScoredSplit:
    """Where one prompt is split from its answers for scoring.

    ``text``/``ids``: the prompt as scored; ``moved``: trailing whitespace moved from the prompt into
    every answer (``""`` when the prompt is scored as written); ``answers``: the tokenized answers.
    """

    text: str
    ids: list[int]
    moved: str
    answers: list[TokenizedAnswer]


def natural_split(model: LoadedModel, prompt_text: str, answers: dict[str, str],
                  end_of_answer: str | None = None, move_whitespace: bool = True) -> ScoredSplit:
    """Split ``prompt_text + answer`` where the tokenizer itself would.

    As written when every answer's tokens follow the prompt's tokens. Otherwise, when the prompt
    ends in whitespace (``"Ireland: "``) and removing it from the prompt and prefixing it to every
    answer gives clean splits for more answers, that split is used (``":"`` then ``" Dublin"``):
    this is the probability of the same text under the tokenization the model was trained on.
    Answers that still do not split cleanly stay flagged ``boundary_mismatch``.
    """
    ids = model.encode_prompt(prompt_text)
    tokenized = tokenize_answers(model, prompt_text, ids, answers, end_of_answer)
    bad = sum(a.boundary_mismatch for a in tokenized)
    stripped = prompt_text.rstrip()
    if move_whitespace and bad and stripped and stripped != prompt_text:
        moved = prompt_text[len(stripped):]
        moved_ids = model.encode_prompt(stripped)
        moved_answers = tokenize_answers(model, stripped, moved_ids, answers, end_of_answer, prefix=moved)
        if sum(a.boundary_mismatch for a in moved_answers) < bad:
            return ScoredSplit(stripped, moved_ids, moved, moved_answers)
    return ScoredSplit(prompt_text, ids, "", tokenized)


def _left_pad(seqs: Sequence[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def pad_token_id(model: LoadedModel) -> int:
    tok = model.tokenizer
    for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _check_context(model: LoadedModel, prompt_len: int, answer_len: int, prompt_id: int | str) -> None:
    if prompt_len + answer_len > model.n_ctx:
        raise InterpError(
            f"prompt {prompt_id} needs {prompt_len + answer_len} tokens but {model.name} has a context of "
            f"{model.n_ctx}: lower --examples-per-task"
        )


@torch.no_grad()
def run_prompts_with_cache(
    model: LoadedModel, prompt_ids: Sequence[list[int]]
) -> tuple[Float[Tensor, "batch d_vocab"], list[tuple[Tensor, Tensor]], Int[Tensor, "batch pos"]]:
    """One batched, left-padded forward over prompts; returns last-position logits and the KV cache."""
    ids, mask = _left_pad(prompt_ids, pad_token_id(model), model.device)
    if bool(mask.all()):
        # No padding: let the model take its fast causal path (no explicit mask).
        out = model.hf_model(input_ids=ids, past_key_values=full_cache(), use_cache=True, logits_to_keep=1)
    else:
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model.hf_model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                             past_key_values=full_cache(), use_cache=True, logits_to_keep=1)
    if getattr(out, "past_key_values", None) is None:
        raise InterpError(f"{model.name} ({type(model.hf_model).__name__}) returns no key/value cache: it is not a causal "
                          "decoder the toolkit can score with; use a decoder-only language model")
    kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    return out.logits[:, -1].float(), kv, mask


def full_cache() -> DynamicCache:
    """An empty cache that keeps every position in every layer.

    Without a config, ``DynamicCache`` does not trim sliding-window layers to their window, so
    the prompt's keys/values can be reused under masks we build ourselves (the window is then
    applied by :meth:`interp.adapter.ModelAdapter.attention_mask`).
    """
    return DynamicCache()


@torch.no_grad()
def continuation_logprobs(
    model: LoadedModel,
    last_logits: Float[Tensor, "batch d_vocab"],
    kv: list[tuple[Tensor, Tensor]],
    mask: Int[Tensor, "batch pos"],
    row_prompt: list[int],
    continuations: list[list[int]],
) -> list[list[float]]:
    """Per-token log-probs of each continuation given its prompt's cached keys/values.

    ``row_prompt[r]`` is the batch index of the prompt continued by ``continuations[r]``.
    All continuations of one prompt are packed into a single row with a block ("tree")
    attention mask — each continuation sees the prompt and its own earlier tokens only — so
    the prompt's cache is never copied per answer.
    """
    rows = torch.tensor(row_prompt, dtype=torch.long, device=model.device)
    first_lp = torch.log_softmax(last_logits, dim=-1).index_select(0, rows)  # [R, vocab]
    result = [[float(first_lp[r, c[0]])] for r, c in enumerate(continuations)]
    # The distribution after token t of a continuation scores its token t + 1: pack all but the last.
    heads = [c[:-1] for c in continuations]
    if not any(heads):
        return result
    logp, where = packed_logprobs(model, kv, mask, row_prompt, heads)
    for r, c in enumerate(continuations):
        for t in range(1, len(c)):
            b, j = where[(r, t - 1)]
            result[r].append(float(logp[b, j, c[t]]))
    return result


@torch.no_grad()
def packed_logprobs(
    model: LoadedModel,
    kv: list[tuple[Tensor, Tensor]],
    mask: Int[Tensor, "batch pos"],
    row_prompt: list[int],
    sequences: list[list[int]],
    last_only: bool = False,
) -> tuple[Float[Tensor, "batch packed d_vocab"], dict[tuple[int, int], tuple[int, int]]]:
    """Next-token log-probs after every token of every sequence, each sequence continuing its prompt.

    All sequences of one prompt are packed into a single row with a block ("tree") attention
    mask — each sees the prompt's cached keys/values and its own earlier tokens only — so the
    prompt's cache is never copied per sequence. Returns the log-probs and ``where``:
    ``(sequence r, token t) -> (prompt row b, packed index)``. ``last_only`` (one prompt row):
    compute the unembedding only after each sequence's last token; ``where`` then maps
    ``(r, len - 1) -> (0, r)``.
    """
    device = model.device
    batch, prompt_width = mask.shape
    tokens: list[list[int]] = [[] for _ in range(batch)]
    offsets: list[list[int]] = [[] for _ in range(batch)]  # position within its sequence
    owners: list[list[int]] = [[] for _ in range(batch)]  # which sequence a token belongs to
    where: dict[tuple[int, int], tuple[int, int]] = {}
    for r, seq in enumerate(sequences):
        b = row_prompt[r]
        for t, tok in enumerate(seq):
            where[(r, t)] = (b, len(tokens[b]))
            tokens[b].append(tok)
            offsets[b].append(t)
            owners[b].append(r)
    width = max(len(t) for t in tokens)
    feed = torch.full((batch, width), pad_token_id(model), dtype=torch.long)
    offset = torch.zeros((batch, width), dtype=torch.long)
    owner = torch.full((batch, width), -1, dtype=torch.long)
    for b in range(batch):
        n = len(tokens[b])
        feed[b, :n] = torch.tensor(tokens[b], dtype=torch.long)
        offset[b, :n] = torch.tensor(offsets[b], dtype=torch.long)
        owner[b, :n] = torch.tensor(owners[b], dtype=torch.long)
    same = (owner[:, :, None] == owner[:, None, :]) & (offset[:, None, :] <= offset[:, :, None])
    same |= torch.eye(width, dtype=torch.bool)[None]  # padding slots attend to themselves (no empty rows)
    allowed = torch.cat([mask.bool().cpu()[:, None, :].expand(batch, width, prompt_width), same], dim=-1)
    position_ids = mask.sum(-1, keepdim=True).cpu() + offset
    # Absolute positions of every key (left-padded prompt, then the packed tokens) for windowed layers.
    key_pos = torch.cat([mask.cpu().cumsum(-1) - 1, position_ids], dim=-1)
    attention_mask = model.adapter.attention_mask(allowed, position_ids, key_pos, model.dtype)
    if isinstance(attention_mask, dict):
        attention_mask = {k: m.to(device) for k, m in attention_mask.items()}
    else:
        attention_mask = attention_mask.to(device)
    cache = DynamicCache([(k, v) for k, v in kv])
    keep: int | Tensor = 0  # 0: every position
    if last_only:
        if batch != 1:
            raise ValueError("last_only packs the sequences of one prompt row")
        last = [(r, len(seq) - 1) for r, seq in enumerate(sequences)]
        keep = torch.tensor([where[key][1] for key in last], device=device)
        where = {key: (0, i) for i, key in enumerate(last)}
    logits = model.hf_model(input_ids=feed.to(device), attention_mask=attention_mask, logits_to_keep=keep,
                            position_ids=position_ids.to(device), past_key_values=cache, use_cache=True).logits
    return torch.log_softmax(logits.float(), dim=-1), where


def unencodable(model: LoadedModel, text: str) -> str | None:
    """The characters of ``text`` the model's tokenizer can only encode as its unknown token (None if all encode)."""
    tok = model.tokenizer
    unk = getattr(tok, "unk_token_id", None)
    if unk is None or not text or (tok.unk_token and tok.unk_token in text):
        return None
    if unk not in model.encode_continuation(text):
        return None
    bad = sorted({c for c in set(text) if unk in model.encode_continuation(c)})
    return "".join(bad) or text


def check_scoring_inputs(model: LoadedModel, prompts: Any, batch_size: Any, end_of_answer: Any) -> None:
    """Refuse what scoring cannot measure, in one line: no prompts, wrong types, empty answers, characters
    the tokenizer cannot encode (they would be scored as ``<unk>``, a number that means nothing)."""
    from interp.validate import check_int

    check_int(batch_size, "batch_size", min=1)
    if end_of_answer is not None and not isinstance(end_of_answer, str):
        raise InterpError(f"end_of_answer must be a string, got {end_of_answer!r}")
    check_prompt_list(prompts)
    seen_text: set[str] = set()
    for p in prompts:
        for text in (p.text, *p.answers.values(), end_of_answer or ""):
            if text in seen_text:
                continue
            seen_text.add(text)
            bad = unencodable(model, text)
            if bad is not None:
                raise InterpError(f"prompt {p.prompt_id}: {model.name}'s tokenizer cannot encode {bad!r} (it would be "
                                  "scored as <unk>): use characters in its vocabulary")


def score_prompts(
    model: LoadedModel,
    prompts: Sequence[Prompt],
    batch_size: int = 1,
    end_of_answer: str | None = None,
    show_progress: bool = True,
    on_prompt: Callable[[Prompt, PromptState], None] | None = None,
    move_whitespace: bool = True,
) -> pd.DataFrame:
    """Score every prompt's answer under every task.

    Args:
        model: a loaded model.
        prompts: prompts from :func:`interp.prompts.build_prompts`.
        batch_size: prompts per forward pass (left-padded; results equal one-at-a-time scoring).
            On CPU 1 is fastest (padding costs more than batching saves); use 8+ on a GPU.
        end_of_answer: optional text appended to every answer (``"\\n"`` as the paper's
            from-scratch evaluation does), scored as part of it.
        show_progress: show a progress bar.
        on_prompt: called with each prompt and its :class:`PromptState` after scoring, to reuse
            the prompt's forward pass (of the prompt as scored: see :func:`natural_split`).
        move_whitespace: move trailing whitespace the tokenizer would merge into the answer
            from the prompt into the answer (:func:`natural_split`); False scores the split as written.

    Returns:
        One row per (prompt, task): ``prompt_id, task, answer, share, prob, logprob,
        n_tokens, boundary_mismatch, boundary_moved``.
    """
    check_scoring_inputs(model, prompts, batch_size, end_of_answer)
    rows = []
    batches = [prompts[i: i + batch_size] for i in range(0, len(prompts), batch_size)]
    for batch in progress(batches, desc="scoring", unit="batch", disable=not show_progress):
        splits = [natural_split(model, p.text, p.answers, end_of_answer, move_whitespace) for p in batch]
        prompt_ids = [s.ids for s in splits]
        answers = [s.answers for s in splits]
        for p, ids, ans in zip(batch, prompt_ids, answers):
            _check_context(model, len(ids), max(len(a.ids) for a in ans), p.prompt_id)
        last_logits, kv, mask = run_prompts_with_cache(model, prompt_ids)
        row_prompt = [b for b, ans in enumerate(answers) for _ in ans]
        flat = [a for ans in answers for a in ans]
        token_lps = continuation_logprobs(model, last_logits, kv, mask, row_prompt, [a.ids for a in flat])
        for b_index, a, lps in zip(row_prompt, flat, token_lps):
            p = batch[b_index]
            logprob = float(sum(lps))
            rows.append({
                "prompt_id": p.prompt_id,
                "task": a.task,
                "answer": a.answer,
                "share": p.shares.get(a.task, 0.0),
                "prob": float(torch.tensor(logprob).exp()),
                "logprob": logprob,
                "n_tokens": len(a.ids),
                "boundary_mismatch": a.boundary_mismatch,
                "boundary_moved": splits[b_index].moved != "",
            })
        if on_prompt is not None:
            for b, p in enumerate(batch):
                on_prompt(p, PromptState(last_logits[b: b + 1], [(k[b: b + 1], v[b: b + 1]) for k, v in kv],
                                         mask[b: b + 1]))
    return pd.DataFrame(rows)


@torch.no_grad()
def score_prompts_naive(model: LoadedModel, prompts: Sequence[Prompt], end_of_answer: str | None = None,
                        show_progress: bool = False, move_whitespace: bool = True) -> pd.DataFrame:
    """Reference scorer: one full forward of prompt + answer per answer (the paper's method)."""
    rows = []
    for p in progress(prompts, desc="naive scoring", disable=not show_progress):
        split = natural_split(model, p.text, p.answers, end_of_answer, move_whitespace)
        ids = split.ids
        for a in split.answers:
            full = torch.tensor([ids + a.ids], device=model.device)
            logits = model.hf_model(input_ids=full).logits.float()
            logp = torch.log_softmax(logits[0, len(ids) - 1: -1], dim=-1)
            lp = float(logp.gather(-1, torch.tensor(a.ids, device=model.device)[:, None]).sum())
            rows.append({"prompt_id": p.prompt_id, "task": a.task, "answer": a.answer,
                         "share": p.shares.get(a.task, 0.0), "prob": float(torch.tensor(lp).exp()),
                         "logprob": lp, "n_tokens": len(a.ids), "boundary_mismatch": a.boundary_mismatch,
                         "boundary_moved": split.moved != ""})
    return pd.DataFrame(rows)
