"""The top-K count ``r``: how many task answers are among the model's K most likely outputs.

Complete outputs are enumerated by a bounded beam search over the prompt's cached keys/values,
following the authors' ``get_top_probs2``:

* a prefix counts as a finished output when the most likely next token is the terminator
  (newline); its probability is recorded *without* multiplying by P(terminator);
* a prefix whose P(terminator) > 0.5 is not expanded further;
* at most ``num_beams`` live prefixes are kept per step, each expanded by its ``num_beams``
  most likely tokens with probability ≥ ``min_token_prob``;
* the search stops after ``max_new_tokens`` steps or when the best live prefix has probability
  below ``min_beam_prob``.

Task k counts as solved when P(answer_k) ≥ p_K − 1e-5, p_K being the K-th largest enumerated
output probability (K = number of tasks in context). When fewer than K outputs are found, a
task counts only if its answer is among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Prompt
from interp.scoring import PromptState, packed_logprobs, run_prompts_with_cache


@dataclass
class BeamConfig:
    num_beams: int = 10
    max_new_tokens: int = 8
    min_token_prob: float = 1e-3
    min_beam_prob: float = 0.01
    terminator: str = "\n"


@torch.no_grad()
def enumerate_outputs(model: LoadedModel, prompt_text: str, config: BeamConfig | None = None,
                      state: PromptState | None = None) -> dict[str, float]:
    """Most likely complete outputs (text -> probability) after ``prompt_text``.

    ``state`` (from ``score_prompts(..., on_prompt=...)``) reuses an earlier forward pass of
    the same prompt instead of running it again.
    """
    cfg = config or BeamConfig()
    stop_ids = model.encode_continuation(cfg.terminator)
    stop = stop_ids[0] if len(stop_ids) == 1 else None
    if state is None:
        last_logits, kv, mask = run_prompts_with_cache(model, [model.encode_prompt(prompt_text)])
    else:
        last_logits, kv, mask = state.last_logits, state.kv, state.mask
    first = torch.log_softmax(last_logits[0], dim=-1)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: dict[str, float] = {}
    dists = [first]
    for step in range(cfg.max_new_tokens):
        candidates: list[tuple[list[int], float]] = []
        for (tokens, lp), dist in zip(beams, dists):
            probs = dist.exp()
            if tokens and stop is not None and int(dist.argmax()) == stop:
                text = model.tokenizer.decode(tokens)
                finished[text] = max(finished.get(text, 0.0), float(torch.tensor(lp).exp()))
                if float(probs[stop]) > 0.5:
                    continue
            top = torch.topk(probs, min(cfg.num_beams + 1, probs.numel()))
            for p, tok in zip(top.values.tolist(), top.indices.tolist()):
                if tok == stop or p < cfg.min_token_prob:
                    continue
                candidates.append((tokens + [tok], lp + float(torch.tensor(p).log())))
        candidates.sort(key=lambda c: -c[1])
        beams = candidates[: cfg.num_beams]
        if not beams or float(torch.tensor(beams[0][1]).exp()) < cfg.min_beam_prob:
            break
        if step == cfg.max_new_tokens - 1:
            break
        # Next-token distributions of all live beams in one batched continuation.
        dists = _next_distributions(model, kv, mask, [b[0] for b in beams])
    return dict(sorted(finished.items(), key=lambda kv_: -kv_[1]))


def _next_distributions(model: LoadedModel, kv: list, mask: torch.Tensor,
                        prefixes: list[list[int]]) -> list[torch.Tensor]:
    """log-softmax over the vocabulary after each prefix of the prompt's first row.

    The prefixes go through one packed forward over the prompt's cache (tree attention), so the
    cache is not copied per beam — copying it was most of the search's time on long prompts.
    """
    first_row = [(k[:1], v[:1]) for k, v in kv]
    logp, where = packed_logprobs(model, first_row, mask[:1], [0] * len(prefixes), prefixes, last_only=True)
    return [logp[0, where[(r, len(p) - 1)][1]] for r, p in enumerate(prefixes)]


def topk_counts(model: LoadedModel, prompts: Sequence[Prompt], scores: pd.DataFrame,
                config: BeamConfig | None = None, show_progress: bool = True,
                enumerated: dict[int, dict[str, float]] | None = None) -> pd.DataFrame:
    """Per prompt: ``r`` (tasks whose answer is in the top-K outputs), K, p_K and the top outputs.

    ``enumerated`` maps prompt ids to outputs already found by :func:`enumerate_outputs`
    (e.g. during scoring); other prompts are searched here.
    """
    rows = []
    by_prompt = {pid: g for pid, g in scores.groupby("prompt_id")}
    enumerated = enumerated or {}
    todo = [p for p in prompts if p.prompt_id not in enumerated]
    for p in progress(todo, desc="top-K search", disable=not show_progress or not todo):
        enumerated[p.prompt_id] = enumerate_outputs(model, p.text, config)
    for p in prompts:
        outputs = enumerated[p.prompt_id]
        k = sum(1 for s in p.shares.values() if s > 0)
        probs = sorted(outputs.values(), reverse=True)
        group = by_prompt[p.prompt_id]
        in_context = group[group["share"] > 0]
        if len(probs) >= k:
            p_k = probs[k - 1]
            solved = int((in_context["prob"] >= p_k - 1e-5).sum())
        else:
            p_k = float("nan")
            solved = int(sum(a in outputs for a in in_context["answer"]))
        top = list(outputs.items())[:k]
        rows.append({"prompt_id": p.prompt_id, "K": k, "r": solved, "p_K": p_k,
                     "top_outputs": " | ".join(f"{t!r}:{v:.3f}" for t, v in top)})
    return pd.DataFrame(rows)
