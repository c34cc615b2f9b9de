"""Does superposition survive decoding? Greedy and sampled continuations after a superposed prompt.

The paper measures the first-pass distribution: one forward pass puts probability on every
in-context task's answer. What happens when the model then *generates*? For every superposed
prompt this analysis

* decodes the greedy continuation and ``n_samples`` sampled ones (temperature ``temperature``,
  one seeded :class:`torch.Generator` per prompt, so the same seed gives the same samples) until
  the answer delimiter (a newline: examples are one per line), the end-of-sequence token, or
  ``max_new_tokens`` (default: the prompt's longest answer in tokens + ``margin``);
* classifies each continuation as one task's answer (``exact``: its text, stripped, equals the
  answer), a ``prefix`` of one or several answers (which tasks are still consistent), or
  ``other``;
* compares the fraction of samples that give task k's answer with the teacher-forced first-pass
  probabilities of :mod:`interp.scoring`: ``p_task`` = P(answer) (the paper's quantity) and
  ``p_task_delimited`` = P(answer + delimiter), which is what a sample that *stops* after the
  answer measures; every sampled fraction has a Clopper–Pearson interval, every mean over prompts
  a bootstrap interval (:mod:`interp.stats`);
* follows the mixture token by token: after ``t`` generated tokens, the tasks whose answer tokens
  begin with those tokens are still consistent; their conditional probabilities
  P(answer_k | prompt, first t tokens), renormalised, have an entropy (bits). When only one task is
  left the mixture has collapsed;
* scores conditionally: with the first generated token fixed (the greedy one, or each task's own
  first token), the probability that survives on each task's answer.

Every probability of an answer is computed as :mod:`interp.scoring` does it (one forward of the
prompt, the answers packed over its key/value cache), from the per-token log-probs of the
answer's canonical tokenization, so P(answer_k | prompt, first token x) =
P(answer_k) / P(x) when x is answer_k's first token and 0 otherwise (a continuation that spells
the answer with other tokens is not counted, as in first-pass scoring). Sampling reuses the
prompt's key/value cache too: at each step the distinct prefixes of all live samples go through
one packed forward over that cache (no copy per sample), and each distinct prefix draws all its
samples' next tokens at once.

Python::

    from analyses.decoding import DecodingOptions, analyse
    result = analyse(model, prompts, DecodingOptions(n_samples=20))

CLI (:mod:`interp_app.commands.decoding`):
``interp run decoding --model smollm2-135m --task-set country --n-prompts 10 --n-samples 20``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.errors import InterpError
from interp.models import LoadedModel
from interp.progress import progress
from interp.prompts import Prompt
from interp.scoring import (
    _check_context,
    check_scoring_inputs,
    continuation_logprobs,
    natural_split,
    packed_logprobs,
    run_prompts_with_cache,
    tokenize_answers,
)
from interp.stats import SEED, bootstrap_diff, bootstrap_mean, clopper_pearson, format_ci
from interp.validate import Validated, check_float, check_int, refuse_if_too_big

CATEGORIES = ("exact", "prefix", "other")
GREEDY = "greedy"
SAMPLE = "sample"
STOP_DELIMITER = "delimiter"
STOP_EOS = "eos"
STOP_MAX = "max_tokens"


@dataclass
class DecodingOptions(Validated):
    """decoding options"""

    n_samples: int = field(default=20, metadata={"help": "sampled continuations per prompt", "min": 1})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (0: every sample is the greedy "
                                                              "continuation)", "min": 0})
    sample_seed: int = field(default=0, metadata={"help": "seed of the sampling generators (one per prompt: same "
                                                          "seed, same samples)"})
    max_new_tokens: int = field(default=0, metadata={"help": "longest continuation in tokens (0: the prompt's "
                                                             "longest answer + --margin)", "min": 0})
    margin: int = field(default=3, metadata={"help": "tokens allowed beyond the longest answer when "
                                                     "--max-new-tokens is 0", "min": 0})
    delimiter: str = field(default="\n", metadata={"help": "text that ends an answer (default: a newline, as "
                                                           "between examples)"})
    include_mismatches: bool = field(default=False, metadata={"help": "keep prompts with a tokenization-boundary "
                                                                      "mismatch in the summaries"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples of prompts for the intervals", "min": 1})
    ci_level: float = field(default=0.95, metadata={"help": "level of every interval", "gt": 0, "lt": 1})

    def _validate(self) -> None:
        if not isinstance(self.delimiter, str) or not self.delimiter:
            raise InterpError("--delimiter must be non-empty text that ends an answer, e.g. a newline (the default)")
        if isinstance(self.sample_seed, int) and self.sample_seed < 0:
            raise InterpError(f"--sample-seed must be a non-negative whole number, got {self.sample_seed}")
        # Every sample keeps its tokens and a table row: refuse a count that cannot fit before a model loads.
        refuse_if_too_big(self.n_samples * 2000.0, f"{self.n_samples} samples per prompt", "lower --n-samples")


# ------------------------------------------------------------------------------ classification


@dataclass(frozen=True)
class Classification:
    """``category``: exact / prefix / other; ``task``: the task answered exactly ("" otherwise);
    ``consistent``: every task whose answer begins with the continuation (in task order)."""

    category: str
    task: str
    consistent: tuple[str, ...]


def classify_continuation(text: str, answers: dict[str, str]) -> Classification:
    """Classify one continuation's text (cut at the delimiter) against the tasks' answers.

    Leading and trailing whitespace is ignored on both sides (a continuation ``" Dublin"`` after
    ``"Ireland:"`` answers ``"Dublin"``). ``exact``: equal to one task's answer; ``prefix``: a
    non-empty proper beginning of one or several answers; ``other``: anything else, including an
    empty continuation (the model ended the line at once).
    """
    norm = text.strip()
    targets = {task: answer.strip() for task, answer in answers.items()}
    consistent = tuple(task for task, target in targets.items() if norm and target.startswith(norm))
    exact = [task for task, target in targets.items() if norm and target == norm]
    if exact:
        return Classification("exact", exact[0], consistent)
    if consistent:
        return Classification("prefix", "", consistent)
    return Classification("other", "", ())


# ------------------------------------------------------------------------------ sampling


@dataclass
class Continuation:
    """One decoded continuation: its tokens (the stopping token excluded), text (cut at the
    delimiter) and why it stopped (delimiter, eos or max_tokens)."""

    kind: str
    index: int
    tokens: list[int]
    text: str
    stop: str


def prompt_generator(sample_seed: int, prompt_id: int) -> torch.Generator:
    """The sampling generator of one prompt: a function of the seed and the prompt id only, so a
    prompt's samples do not depend on which other prompts are decoded or in which order."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(sample_seed) * 1_000_003 + int(prompt_id) * 7_919 + 17)
    return generator


def _stop_text(model: LoadedModel, tokens: list[int], delimiter: str) -> tuple[str, bool]:
    text = model.tokenizer.decode(tokens, skip_special_tokens=True)
    if delimiter in text:
        return text.split(delimiter, 1)[0], True
    return text, False


@torch.no_grad()
def decode_continuations(
    model: LoadedModel,
    last_logits: Float[Tensor, "1 d_vocab"],
    kv: list[tuple[Tensor, Tensor]],
    mask: Int[Tensor, "1 pos"],
    n_samples: int,
    temperature: float,
    generator: torch.Generator,
    max_new_tokens: int,
    delimiter: str = "\n",
) -> list[Continuation]:
    """The greedy continuation and ``n_samples`` sampled ones after one prompt's cached forward pass.

    All continuations share the prompt's key/value cache: at each step the distinct live prefixes
    go through one packed forward (tree attention, :func:`interp.scoring.packed_logprobs`), and
    each distinct prefix draws the next tokens of all samples that share it with one
    ``torch.multinomial`` call on ``generator`` (so samples depend only on the seed). Temperature
    0 makes every sample greedy.
    """
    check_int(n_samples, "n_samples", min=1)
    check_float(temperature, "temperature", min=0)
    check_int(max_new_tokens, "max_new_tokens", min=1)
    eos = model.tokenizer.eos_token_id
    n = n_samples + 1  # index 0: greedy
    tokens: list[list[int]] = [[] for _ in range(n)]
    stops: list[str | None] = [None] * n
    texts = [""] * n
    dists: dict[tuple[int, ...], Tensor] = {(): torch.log_softmax(last_logits[0].float(), dim=-1).cpu()}
    first_row = [(k[:1], v[:1]) for k, v in kv]
    for _step in range(max_new_tokens):
        live = [i for i in range(n) if stops[i] is None]
        if not live:
            break
        prefixes = list(dict.fromkeys(tuple(tokens[i]) for i in live))
        todo = [p for p in prefixes if p not in dists]
        if todo:
            logp, where = packed_logprobs(model, first_row, mask[:1], [0] * len(todo), [list(p) for p in todo],
                                          last_only=True)
            for r, p in enumerate(todo):
                dists[p] = logp[0, where[(r, len(p) - 1)][1]].cpu()
        # Draw per distinct prefix, samples in index order: deterministic for a given generator state.
        members: dict[tuple[int, ...], list[int]] = {}
        for i in live:
            members.setdefault(tuple(tokens[i]), []).append(i)
        for prefix, rows in members.items():
            dist = dists[prefix]
            greedy_token = int(dist.argmax())
            sampled = [r for r in rows if r != 0]
            if 0 in rows:
                tokens[0].append(greedy_token)
            if sampled:
                if temperature == 0:
                    draws = [greedy_token] * len(sampled)
                else:
                    probs = torch.softmax(dist.double() / temperature, dim=-1)
                    draws = torch.multinomial(probs, len(sampled), replacement=True, generator=generator).tolist()
                for r, tok in zip(sampled, draws):
                    tokens[r].append(int(tok))
        for i in live:
            if eos is not None and tokens[i][-1] == eos:
                tokens[i].pop()
                texts[i], _ = _stop_text(model, tokens[i], delimiter)
                stops[i] = STOP_EOS
                continue
            text, ended = _stop_text(model, tokens[i], delimiter)
            texts[i] = text
            if ended:
                tokens[i].pop()  # the token that carries the delimiter is not part of the answer
                stops[i] = STOP_DELIMITER
        # Drop distributions no live prefix can need again (memory stays O(live prefixes)).
        keep = {tuple(tokens[i]) for i in range(n) if stops[i] is None}
        dists = {p: d for p, d in dists.items() if p in keep}
    return [Continuation(GREEDY if i == 0 else SAMPLE, i - 1 if i else 0, tokens[i], texts[i], stops[i] or STOP_MAX)
            for i in range(n)]


# ------------------------------------------------------------------------------ per-prompt scoring


@dataclass
class AnswerTokens:
    """One task's answer on one prompt: canonical token ids and their teacher-forced log-probs."""

    task: str
    answer: str
    ids: list[int]
    logprobs: list[float]
    delimited_logprob: float
    boundary_mismatch: bool

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))


def conditional_logprob(answer: AnswerTokens, prefix: Sequence[int]) -> float | None:
    """log P(answer | prompt, prefix) when the answer's tokens begin with ``prefix`` (None otherwise).

    The teacher-forced product over the answer's remaining tokens: P(answer) / P(prefix).
    """
    t = len(prefix)
    if t > len(answer.ids) or list(answer.ids[:t]) != list(prefix):
        return None
    return float(sum(answer.logprobs[t:]))


def mixture_entropy(answers: Sequence[AnswerTokens], prefix: Sequence[int]) -> tuple[int, float, float, str]:
    """After ``prefix``: (tasks still consistent, entropy in bits of their renormalised conditional
    probabilities — NaN when none is left, 0 when one is —, the conditional mass they hold, the most likely one)."""
    logps = {a.task: lp for a in answers if (lp := conditional_logprob(a, prefix)) is not None}
    if not logps:
        return 0, math.nan, 0.0, ""
    p = np.exp(np.array(list(logps.values()), dtype=float))
    mass = float(p.sum())
    top = list(logps)[int(np.argmax(p))]
    if mass <= 0:
        return len(logps), math.nan, 0.0, top
    w = p / mass
    w = w[w > 0]
    entropy = float(-(w * np.log2(w)).sum()) if len(w) > 1 else 0.0
    return len(logps), max(entropy, 0.0), mass, top


# ------------------------------------------------------------------------------ the analysis


@dataclass
class DecodingResult:
    """Tidy tables of the decoding analysis.

    ``continuations``: one row per (prompt, greedy or sample): tokens, text, stop reason, category,
    exact task, consistent tasks. ``scores``: per (prompt, task): the teacher-forced
    ``p_task``/``p_task_delimited``/``p_first_token``, the sample count and fraction with its
    Clopper–Pearson interval, whether the greedy continuation gives it. ``summary``: per task,
    means over prompts with bootstrap intervals (fraction of samples vs P, their paired difference,
    how often P lies inside the sampled fraction's interval, greedy rate). ``categories``: exact /
    prefix / other fractions beside their teacher-forced counterparts. ``positions``: per
    (prompt, continuation, generated position t): tasks still consistent, entropy over them (bits),
    conditional mass. ``position_summary``: per t, means over prompts with intervals.
    ``conditional``: per (prompt, fixed first token, task): P(fixed token), P(answer | fixed token).
    ``conditional_summary``: its means over prompts. ``metrics``: scalars for the run's JSON.
    """

    continuations: pd.DataFrame
    scores: pd.DataFrame
    summary: pd.DataFrame
    categories: pd.DataFrame
    positions: pd.DataFrame
    position_summary: pd.DataFrame
    conditional: pd.DataFrame
    conditional_summary: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def analyse(model: LoadedModel, prompts: list[Prompt], options: DecodingOptions,
            show_progress: bool = True) -> DecodingResult:
    """Decode, classify and score every prompt (no files written). See the module docstring."""
    if not isinstance(options, DecodingOptions):
        raise InterpError(f"options must be DecodingOptions, got {type(options).__name__}")
    check_scoring_inputs(model, prompts, 1, options.delimiter)
    longest = max(len(model.encode_continuation(a)) for p in prompts for a in p.answers.values())
    budget = options.max_new_tokens or longest + options.margin
    refuse_if_too_big(len(prompts) * (options.n_samples + 1) * (budget + 1) * 200.0,
                      f"{len(prompts)} prompts x {options.n_samples} samples of up to {budget} tokens",
                      "lower --n-samples or --n-prompts")
    cont_rows: list[dict[str, Any]] = []
    score_rows: list[dict[str, Any]] = []
    position_rows: list[dict[str, Any]] = []
    conditional_rows: list[dict[str, Any]] = []
    for prompt in progress(prompts, desc="decoding", unit="prompt", disable=not show_progress):
        split = natural_split(model, prompt.text, prompt.answers)
        delimited = tokenize_answers(model, split.text, split.ids, prompt.answers, options.delimiter, prefix=split.moved)
        max_tokens = options.max_new_tokens or max(len(a.ids) for a in split.answers) + options.margin
        _check_context(model, len(split.ids), max(max_tokens, *(len(a.ids) for a in delimited)), prompt.prompt_id)
        last_logits, kv, mask = run_prompts_with_cache(model, [split.ids])
        seqs = [a.ids for a in split.answers] + [d.ids for d in delimited]
        lps = continuation_logprobs(model, last_logits, kv, mask, [0] * len(seqs), seqs)
        k = len(split.answers)
        answers = [AnswerTokens(a.task, a.answer, list(a.ids), lps[i], float(sum(lps[k + i])),
                                a.boundary_mismatch or delimited[i].boundary_mismatch)
                   for i, a in enumerate(split.answers)]
        first_lp = torch.log_softmax(last_logits[0].float(), dim=-1).cpu()
        generator = prompt_generator(options.sample_seed, prompt.prompt_id)
        continuations = decode_continuations(model, last_logits, kv, mask, options.n_samples, options.temperature,
                                             generator, max_tokens, options.delimiter)
        answer_text = {a.task: split.moved + a.answer for a in answers}
        classes = [classify_continuation(c.text, answer_text) for c in continuations]
        for c, cls in zip(continuations, classes):
            # Per generated position: which tasks are still consistent, and how mixed they are.
            collapse = math.nan  # stays NaN when the continuation ended with >= 2 tasks still consistent
            for t in range(0, min(len(c.tokens), max(len(a.ids) for a in answers)) + 1):
                n_consistent, entropy, mass, top = mixture_entropy(answers, c.tokens[:t])
                position_rows.append({"prompt_id": prompt.prompt_id, "kind": c.kind, "sample": c.index,
                                      "position": t, "n_consistent": n_consistent, "entropy_bits": entropy,
                                      "consistent_mass": mass, "top_task": top})
                if n_consistent <= 1:
                    collapse = t
                    break
            cont_rows.append({"prompt_id": prompt.prompt_id, "kind": c.kind, "sample": c.index,
                              "tokens": " ".join(map(str, c.tokens)), "n_tokens": len(c.tokens), "text": c.text,
                              "stop": c.stop, "category": cls.category, "task": cls.task,
                              "consistent_tasks": "|".join(cls.consistent),
                              "first_token": c.tokens[0] if c.tokens else -1, "collapse_position": collapse})
        sampled = [(c, cls) for c, cls in zip(continuations, classes) if c.kind == SAMPLE]
        greedy, greedy_cls = continuations[0], classes[0]
        for a in answers:
            count = sum(1 for _, cls in sampled if cls.task == a.task)
            first = sum(1 for c, _ in sampled if c.tokens[:1] == a.ids[:1])
            freq, lo, hi = clopper_pearson(count, len(sampled), options.ci_level)
            p_delim = math.exp(a.delimited_logprob)
            score_rows.append({
                "prompt_id": prompt.prompt_id, "task": a.task, "answer": a.answer,
                "share": prompt.shares.get(a.task, 0.0), "n_tokens": len(a.ids),
                "p_task": math.exp(a.logprob), "p_task_delimited": p_delim,
                "p_first_token": math.exp(a.logprobs[0]),
                "n_samples": len(sampled), "count": count, "freq": freq, "freq_ci_low": lo, "freq_ci_high": hi,
                "first_token_freq": first / len(sampled),
                "delimited_inside_ci": bool(lo <= p_delim <= hi),
                "greedy": greedy_cls.task == a.task, "boundary_mismatch": a.boundary_mismatch,
            })
        # Conditional scoring: the first generated token fixed to the greedy one, or to each task's own.
        fixed = [(GREEDY, greedy.tokens[0] if greedy.tokens else int(first_lp.argmax()))]
        fixed += [(f"first:{a.task}", a.ids[0]) for a in answers]
        for label, token in fixed:
            p_token = float(first_lp[token].exp())
            for a in answers:
                lp = conditional_logprob(a, [token])
                conditional_rows.append({
                    "prompt_id": prompt.prompt_id, "fixed": label, "fixed_token": token,
                    "fixed_text": model.tokenizer.decode([token]), "p_fixed_token": p_token, "task": a.task,
                    "own": label == f"first:{a.task}", "consistent": lp is not None,
                    "p_task": math.exp(a.logprob), "p_conditional": math.exp(lp) if lp is not None else 0.0,
                })
    return summarise(pd.DataFrame(cont_rows), pd.DataFrame(score_rows), pd.DataFrame(position_rows),
                     pd.DataFrame(conditional_rows), options, budget)


def _interval(values: Any, options: DecodingOptions) -> tuple[float, float, float]:
    return bootstrap_mean(np.asarray(values, dtype=float), options.ci_level, options.n_boot, SEED)


def _row(mean_lo_hi: tuple[float, float, float], prefix: str) -> dict[str, float]:
    m, lo, hi = mean_lo_hi
    return {prefix: m, f"{prefix}_low": lo, f"{prefix}_high": hi}


def summarise(continuations: pd.DataFrame, scores: pd.DataFrame, positions: pd.DataFrame,
              conditional: pd.DataFrame, options: DecodingOptions, max_new_tokens: int = 0) -> DecodingResult:
    """Intervals over prompts from the per-prompt tables (no model needed).

    Prompts with a tokenization-boundary mismatch are left out of the summaries unless
    ``options.include_mismatches`` (counted in ``metrics['excluded_prompts']``).
    """
    bad = set() if options.include_mismatches else set(scores.loc[scores["boundary_mismatch"], "prompt_id"])
    kept = scores[~scores["prompt_id"].isin(bad)]
    summary_rows = []
    for task, g in kept.groupby("task", sort=False):
        g = g.sort_values("prompt_id")
        greedy_rate = clopper_pearson(int(g["greedy"].sum()), len(g), options.ci_level)
        summary_rows.append({
            "task": task, "share": float(g["share"].mean()), "n_prompts": len(g),
            **_row(_interval(g["freq"], options), "freq"),
            **_row(_interval(g["p_task"], options), "p_task"),
            **_row(_interval(g["p_task_delimited"], options), "p_task_delimited"),
            **_row(bootstrap_diff(g["freq"].to_numpy(float), g["p_task_delimited"].to_numpy(float), True,
                                  options.ci_level, options.n_boot, SEED), "freq_minus_p_delimited"),
            **_row(_interval(g["first_token_freq"], options), "first_token_freq"),
            **_row(_interval(g["p_first_token"], options), "p_first_token"),
            "delimited_inside_ci": float(g["delimited_inside_ci"].mean()),
            **_row(greedy_rate, "greedy_rate"),
        })
    summary = pd.DataFrame(summary_rows)

    conts = continuations[~continuations["prompt_id"].isin(bad)]
    sampled = conts[conts["kind"] == SAMPLE]
    teacher = kept.groupby("prompt_id")["p_task_delimited"].sum()
    category_rows = []
    for category in CATEGORIES:
        per_prompt = sampled.groupby("prompt_id")["category"].apply(lambda s, c=category: float((s == c).mean()))
        row = {"category": category, **_row(_interval(per_prompt.to_numpy(), options), "freq"),
               "n_prompts": int(len(per_prompt))}
        if category == "exact":
            row.update(_row(_interval(teacher.to_numpy(), options), "teacher_forced"))
        elif category == "other":
            row.update(_row(_interval(1.0 - teacher.to_numpy(), options), "teacher_forced"))
        category_rows.append(row)
    categories = pd.DataFrame(category_rows)

    pos = positions[~positions["prompt_id"].isin(bad)]
    pos_samples = pos[pos["kind"] == SAMPLE]
    position_rows = []
    n_per_prompt = sampled.groupby("prompt_id").size()
    for t, g in pos_samples.groupby("position", sort=True):
        # Samples that already left every answer still count (as not mixed) in the alive fraction.
        alive = g.groupby("prompt_id")["n_consistent"].apply(lambda s: float((s >= 2).sum()))
        alive = (alive / n_per_prompt.reindex(alive.index)).to_numpy()
        entropy = g.dropna(subset=["entropy_bits"]).groupby("prompt_id")["entropy_bits"].mean()
        consistent = g.groupby("prompt_id")["n_consistent"].mean()
        position_rows.append({"position": int(t), "n_rows": int(len(g)), "n_prompts": int(g["prompt_id"].nunique()),
                              **_row(_interval(entropy.to_numpy(), options), "entropy_bits"),
                              **_row(_interval(consistent.to_numpy(), options), "n_consistent"),
                              **_row(_interval(alive, options), "mixed_fraction")})
    position_summary = pd.DataFrame(position_rows)

    cond = conditional[~conditional["prompt_id"].isin(bad)]
    cond_rows = []
    for (label, task), g in cond.groupby(["fixed", "task"], sort=False):
        cond_rows.append({"fixed": label, "task": task, "n_prompts": int(len(g)),
                          **_row(_interval(g["p_fixed_token"], options), "p_fixed_token"),
                          **_row(_interval(g["p_task"], options), "p_task"),
                          **_row(_interval(g["p_conditional"], options), "p_conditional")})
    conditional_summary = pd.DataFrame(cond_rows)

    collapse = sampled["collapse_position"].dropna().astype(int).tolist()
    metrics: dict[str, Any] = {
        "n_prompts": int(scores["prompt_id"].nunique()) if len(scores) else 0,
        "n_samples": int(options.n_samples), "temperature": float(options.temperature),
        "sample_seed": int(options.sample_seed), "max_new_tokens_bound": int(max_new_tokens),
        "excluded_prompts": len(bad),
        "exact_fraction": float((sampled["category"] == "exact").mean()) if len(sampled) else math.nan,
        "delimited_inside_ci": float(kept["delimited_inside_ci"].mean()) if len(kept) else math.nan,
        "median_collapse_position": float(np.median(collapse)) if len(collapse) else math.nan,
        "never_collapsed": int(sampled["collapse_position"].isna().sum()),
        "collapse_position_counts": {str(int(k)): int(v) for k, v in
                                     pd.Series(collapse).value_counts().sort_index().items()},
    }
    return DecodingResult(continuations, scores, summary, categories, positions, position_summary, conditional,
                          conditional_summary, metrics)


def format_result(result: DecodingResult) -> str:
    """The per-task comparison, the categories and the per-position mixture, as text."""
    s = result.summary
    lines = [f"sampled fraction vs teacher-forced P, mean over {int(s['n_prompts'].max()) if len(s) else 0} prompts "
             f"({result.metrics.get('n_samples')} samples each, [95% CI])"]
    if len(s):
        table = pd.DataFrame({
            "task": s["task"], "share": s["share"].round(3),
            "sampled": [format_ci(r.freq, r.freq_low, r.freq_high, 3) for r in s.itertuples()],
            "P(answer)": [format_ci(r.p_task, r.p_task_low, r.p_task_high, 3) for r in s.itertuples()],
            "P(answer+delim)": [format_ci(r.p_task_delimited, r.p_task_delimited_low, r.p_task_delimited_high, 3)
                                for r in s.itertuples()],
            "sampled-P(delim)": [format_ci(r.freq_minus_p_delimited, r.freq_minus_p_delimited_low,
                                           r.freq_minus_p_delimited_high, 3) for r in s.itertuples()],
            "P in CP-CI": s["delimited_inside_ci"].round(2),
            "greedy": [format_ci(r.greedy_rate, r.greedy_rate_low, r.greedy_rate_high, 2) for r in s.itertuples()],
        })
        lines.append(table.to_string(index=False))
    c = result.categories
    if len(c):
        lines.append("  ".join(f"{r.category}={format_ci(r.freq, r.freq_low, r.freq_high, 3)}" for r in c.itertuples()))
    p = result.position_summary
    if len(p):
        lines.append("per generated position t: entropy over consistent tasks (bits), mixed fraction (>= 2 tasks left)")
        lines.append("  ".join(f"t={int(r.position)}: H={format_ci(r.entropy_bits, r.entropy_bits_low, r.entropy_bits_high)} "
                               f"mixed={r.mixed_fraction:.2f}" for r in p.itertuples()))
    m = result.metrics
    lines.append(f"collapse position (first t with <= 1 task left): median {m.get('median_collapse_position')}, "
                 f"counts {m.get('collapse_position_counts')}, ended still mixed {m.get('never_collapsed')}; excluded prompts {m.get('excluded_prompts', 0)}")
    return "\n".join(lines)
