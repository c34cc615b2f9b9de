"""Baseline prompts on exactly the same queries as a set of superposed prompts.

A superposed P(answer_k) means little without knowing what the model gives answer k when the
context does *not* demonstrate task k. For every prompt and task k we build, keeping the query,
the answers and the remaining examples' order:

* ``share-0:<k>`` — task k's examples removed, the other tasks' kept: the prior for answer k
  given the rest of the context (on ``ab``, SmolLM2 copies an operand whether or not a copy task
  is shown);
* ``single:<k>`` — only task k's examples: how well the model does task k at all;
* ``zero-shot`` — no examples, the query alone.

``lift`` (superposed − share-0, paired by prompt) is then what showing task k adds.
Prompt ids are those of the superposed prompts, so rows pair up by ``prompt_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.prompts import Example, Prompt, render_prompt

SUPERPOSED = "superposed"
ZERO_SHOT = "zero-shot"
SHARE0 = "share-0"
SINGLE = "single-task"


def condition_name(kind: str, task: str | None = None) -> str:
    """``superposed``, ``zero-shot``, ``share-0:<task>`` or ``single-task:<task>``."""
    return kind if task is None else f"{kind}:{task}"


def with_examples(prompt: Prompt, examples: list[Example]) -> Prompt:
    """``prompt`` with its examples replaced (same id, query, answers; shares and counts recomputed)."""
    text, offsets = render_prompt(examples, prompt.query, prompt.separator)
    counts = {t: sum(e.task == t for e in examples) for t in prompt.answers}
    total = sum(counts.values())
    shares = {t: (c / total if total else 0.0) for t, c in counts.items()}
    return Prompt(prompt_id=prompt.prompt_id, task_set=prompt.task_set, text=text, query=prompt.query,
                  answers=dict(prompt.answers), shares=shares, counts=counts, examples=list(examples),
                  separator=prompt.separator, separator_offsets=offsets)


def baseline_prompts(prompts: Sequence[Prompt], zero_shot: bool = True, share0: bool = True,
                     single: bool = True) -> dict[str, list[Prompt]]:
    """Condition name → prompts (one per superposed prompt, same ``prompt_id`` and query).

    Tasks are those each prompt scores (``prompt.answers``); a task absent from a prompt's context
    has a share-0 prompt equal to the superposed one.
    """
    out: dict[str, list[Prompt]] = {}
    if zero_shot:
        out[ZERO_SHOT] = [with_examples(p, []) for p in prompts]
    tasks = list(dict.fromkeys(t for p in prompts for t in p.answers))
    for task in tasks:
        if share0:
            out[condition_name(SHARE0, task)] = [
                with_examples(p, [e for e in p.examples if e.task != task]) for p in prompts if task in p.answers]
        if single:
            out[condition_name(SINGLE, task)] = [
                with_examples(p, [e for e in p.examples if e.task == task]) for p in prompts if task in p.answers]
    return out


def recency_features(prompt: Prompt, task: str, last_n: int = 5) -> dict[str, float]:
    """What the context shows of ``task``: its share, whether the last example is of it, and its share
    among the last ``last_n`` examples (0 when there are no examples)."""
    ex = prompt.examples
    tail = ex[-last_n:] if last_n > 0 else []
    return {
        "share": (sum(e.task == task for e in ex) / len(ex)) if ex else 0.0,
        "last_is_task": float(bool(ex) and ex[-1].task == task),
        f"share_last{last_n}": (sum(e.task == task for e in tail) / len(tail)) if tail else 0.0,
    }
