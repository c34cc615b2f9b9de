"""Superposed prompts: in-context examples of several tasks mixed in one prompt.

The scheme is the paper's: a mixture gives *exact* per-task example counts, the examples are
placed in random order, the query's input never appears in the examples (unless the task set
says its inputs may repeat, as ``bias-add``'s ten digits must), and the query is resampled until
every scored task gives a different answer. Each prompt is a structured,
JSON-serialisable :class:`Prompt`; the same seed gives byte-identical prompts.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import InterpError
from interp.io import atomic_write_text
from interp.tasks import TaskSet, get_task_set
from interp.validate import check_int, refuse_if_too_big

MAX_QUERY_RESAMPLES = 1000


@dataclass
class Example:
    input: str
    task: str
    answer: str


@dataclass
class Prompt:
    """One superposed prompt.

    ``text`` ends with the query's separator, where every task's answer is predicted.
    ``answers`` holds the query's answer under each scored task; ``shares`` the in-context
    share of each scored task (0 for a task scored as a control but absent from the context).
    ``separator_offsets`` are character offsets of every separator in ``text`` (examples
    first, the query's last), used to find token positions by role.
    """

    prompt_id: int
    task_set: str
    text: str
    query: str
    answers: dict[str, str]
    shares: dict[str, float]
    counts: dict[str, int]
    examples: list[Example]
    separator: str
    separator_offsets: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prompt:
        d = dict(d)
        d["examples"] = [Example(**e) for e in d["examples"]]
        return cls(**d)


def parse_mixture(text: str) -> dict[str, float]:
    """Parse ``capital=0.5,upper=0.5`` (shares) or ``capital=10,upper=30`` (exact counts).

    See :func:`mixture_counts` for the one rule that tells shares from counts.
    """
    mixture: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise InterpError(f"bad mixture item {part!r}: write task=share, e.g. capital=0.5,upper=0.5")
        name = name.strip()
        if name in mixture:
            raise InterpError(f"mixture names task {name!r} twice: give each task once")
        try:
            mixture[name] = float(value)
        except ValueError:
            raise InterpError(f"bad share {value!r} for task {name!r}: use a number such as 0.5") from None
    if not mixture:
        raise InterpError("empty mixture: write e.g. capital=0.5,upper=0.5")
    check_mixture_values(mixture)
    return mixture


def mixture_is_counts(mixture: dict[str, float]) -> bool:
    """The one rule telling shares from counts: values in [0, 1] summing to 1 are shares; otherwise
    every value must be a whole number (a count); anything else is refused by :func:`check_mixture_values`.

    So ``{task: 1}`` is a share (all examples of that task) and ``{task: 2}`` two examples.
    """
    values = [float(v) for v in mixture.values()]
    return not (all(0 <= v <= 1 for v in values) and abs(sum(values) - 1.0) <= 1e-6)


def check_mixture_values(mixture: Any) -> dict[str, float]:
    """Refuse a mixture that is not ``{task name: finite non-negative number}`` under the share/count rule."""
    if not isinstance(mixture, dict) or not mixture:
        raise InterpError(f"mixture must be a non-empty dict task -> share or count, got {mixture!r}")
    for name, value in mixture.items():
        if not isinstance(name, str) or not name:
            raise InterpError(f"mixture task names must be strings, got {name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InterpError(f"mixture value {value!r} for task {name!r} is not a finite number: use e.g. 0.5 or 10")
        if value < 0:
            raise InterpError(f"mixture value {value!r} for task {name!r} is negative: shares and counts are >= 0")
    values = [float(v) for v in mixture.values()]
    if mixture_is_counts(mixture):
        if not all(v.is_integer() for v in values):
            if all(v <= 1 for v in values):
                raise InterpError(f"mixture shares sum to {sum(values):.4g}, not 1: fix the shares or give "
                                  "whole-number counts")
            raise InterpError("mixture mixes shares and counts (or gives fractional counts): give shares in [0, 1] "
                              "summing to 1, or whole-number counts")
        if sum(values) < 1:
            raise InterpError("mixture gives no examples at all: give at least one task a positive share or count")
    return mixture


def mixture_counts(mixture: dict[str, float], n_examples: int | None, examples_per_task: int) -> dict[str, int]:
    """Exact example counts per task from shares (largest remainder) or from integer counts.

    The rule (:func:`mixture_is_counts`): values in [0, 1] summing to 1 are shares; otherwise every
    value must be a whole number, read as an exact count; a mix of the two is refused. Tasks with
    share 0 are scored but get no examples.
    """
    check_mixture_values(mixture)
    if mixture_is_counts(mixture):
        return {k: int(v) for k, v in mixture.items()}
    active = [k for k, v in mixture.items() if v > 0]
    total = n_examples if n_examples is not None else examples_per_task * len(active)
    raw = {k: mixture[k] * total for k in mixture}
    counts = {k: math.floor(v + 1e-9) for k, v in raw.items()}
    remainder = total - sum(counts.values())
    # Give the remainder to the tasks with the largest fractional parts (ties: mixture order).
    for k in sorted(active, key=lambda k: -(raw[k] - counts[k]))[:remainder]:
        counts[k] += 1
    return counts


def check_separator_text(separator: Any) -> str:
    """A separator on its own: a non-empty string without a newline (examples are one per line)."""
    if not isinstance(separator, str):
        raise InterpError(f"separator must be a string, got {separator!r}")
    if not separator:
        raise InterpError("separator must be non-empty: e.g. --separator '->'")
    if "\n" in separator or "\r" in separator:
        raise InterpError(f"separator {separator!r} contains a line break, which separates examples: "
                          "use e.g. --separator '->'")
    return separator


def check_separator(task_set: TaskSet, separator: str, tasks: list[str]) -> None:
    """Refuse a separator that makes prompts ambiguous for this task set: one that occurs inside an
    input or an answer, or has digits when inputs or answers have digits."""
    check_separator_text(separator)
    inputs = task_set.inputs()
    texts = [task_set.format_input(x) for x in inputs]
    for name in tasks:
        task = task_set.task(name)
        for x in inputs:
            try:
                texts.append(str(task.answer(x)))
            except Exception:  # noqa: BLE001 - an answer that cannot be computed is not ours to judge here
                continue
    if any(separator in t for t in texts):
        raise InterpError(f"separator {separator!r} occurs inside inputs or answers of task set {task_set.name!r}, "
                          f"so prompts would be ambiguous: choose another (the set's own is {task_set.separator!r})")
    if any(c.isdigit() for c in separator) and any(c.isdigit() for t in texts for c in t):
        raise InterpError(f"separator {separator!r} has digits and task set {task_set.name!r} has digits in its "
                          "inputs or answers: choose a separator without digits")


def default_mixture(task_set: TaskSet, tasks: list[str] | None = None) -> dict[str, float]:
    """Uniform mixture over ``tasks`` (default: the task set's default tasks)."""
    names = tasks or task_set.default_task_names
    return {name: 1.0 / len(names) for name in names}


def _leaks(query: str, example_input: str) -> bool:
    return query in example_input


def build_prompts(
    task_set: TaskSet,
    mixture: dict[str, float] | None = None,
    n_prompts: int = 100,
    examples_per_task: int | None = None,
    n_examples: int | None = None,
    seed: int = 0,
    separator: str | None = None,
    with_replacement: bool | None = None,
    allow_query_in_examples: bool | None = None,
) -> list[Prompt]:
    """Build ``n_prompts`` superposed prompts.

    Args:
        task_set: the task family (see :func:`interp.tasks.get_task_set`).
        mixture: task -> share (summing to 1) or exact counts; default uniform over the set's
            default tasks. A share of 0 scores that task as a control without showing examples.
        n_prompts: number of prompts.
        examples_per_task: examples per active task when shares are given (default: the set's, 20).
        n_examples: total examples instead (overrides ``examples_per_task``).
        seed: same seed, same prompts, byte for byte.
        separator: overrides the task set's separator (``->``, ``=``, ...).
        with_replacement: allow the same input in several examples (needed for tiny input spaces
            such as ``bias-add``); default: the task set's ``inputs_may_repeat`` (distinct inputs
            for every paper task set but ``bias-add``).
        allow_query_in_examples: allow the query input among the examples; default: the task
            set's ``query_may_repeat`` (otherwise the query never leaks into the examples).
    """
    if isinstance(task_set, str):
        task_set = get_task_set(task_set)
    if not isinstance(task_set, TaskSet):
        raise InterpError(f"task_set must be a TaskSet or a task-set name, got {type(task_set).__name__}")
    n_prompts = check_int(n_prompts, "n_prompts", min=1)
    if examples_per_task is not None:
        check_int(examples_per_task, "examples_per_task", min=1)
    if n_examples is not None:
        check_int(n_examples, "n_examples", min=0)
    if isinstance(seed, bool) or not isinstance(seed, (int, str)):
        raise InterpError(f"--seed must be a whole number, got {seed!r}")
    if mixture is not None:
        check_mixture_values(mixture)
    if with_replacement is None:
        with_replacement = task_set.inputs_may_repeat
    if allow_query_in_examples is None:
        allow_query_in_examples = task_set.query_may_repeat
    mixture = mixture or default_mixture(task_set)
    for name in mixture:
        task_set.task(name)  # raises a clear error for unknown task names
    counts = mixture_counts(mixture, n_examples, examples_per_task or task_set.examples_per_task)
    total = sum(counts.values())
    sep = task_set.separator if separator is None else separator
    if separator is not None:
        check_separator(task_set, sep, list(counts))
    inputs = task_set.inputs()
    formatted = [task_set.format_input(x) for x in inputs]
    # Refuse sizes that cannot fit before trying them: each example costs its text plus object overhead.
    per_example = sum(len(f) for f in formatted[:200]) / max(1, min(len(formatted), 200)) + len(sep) + 400
    refuse_if_too_big(n_prompts * (total + 1) * per_example, f"{n_prompts} prompts of {total} examples",
                      "lower --n-prompts or --examples-per-task")
    if not with_replacement and total > len(inputs) - 1:
        raise InterpError(
            f"{total} examples requested but task set {task_set.name!r} has only {len(inputs)} distinct inputs "
            "(one is kept for the query): lower --examples-per-task"
        )
    if total > 0:
        shares = {k: counts[k] / total for k in counts}
    else:
        shares = {k: 0.0 for k in counts}
    labels = [name for name, c in counts.items() for _ in range(c)]
    scored = list(counts)

    prompts = []
    for pid in range(n_prompts):
        rng = random.Random(f"{seed}:{task_set.name}:{pid}")
        for _ in range(MAX_QUERY_RESAMPLES):
            qi = rng.randrange(len(inputs))
            answers = task_set.answers(inputs[qi], scored)
            if len(set(answers.values())) == len(answers):
                break
        else:
            raise InterpError(
                f"could not find a query whose answers differ across tasks {scored} in {MAX_QUERY_RESAMPLES} tries: "
                "mix tasks whose answers can differ"
            )
        query = formatted[qi]
        if allow_query_in_examples:
            pool = list(range(len(inputs)))
        else:
            pool = [i for i in range(len(inputs)) if i != qi and not _leaks(query, formatted[i])]
        if with_replacement:
            chosen = [rng.choice(pool) for _ in range(total)]
        else:
            if total > len(pool):
                raise InterpError(
                    f"only {len(pool)} inputs do not contain the query {query!r}, {total} examples needed: "
                    "lower --examples-per-task"
                )
            chosen = rng.sample(pool, total)
        order = labels[:]
        rng.shuffle(order)
        examples = [Example(formatted[i], task, task_set.task(task).answer(inputs[i])) for i, task in zip(chosen, order)]
        text, offsets = render_prompt(examples, query, sep)
        prompts.append(
            Prompt(
                prompt_id=pid,
                task_set=task_set.name,
                text=text,
                query=query,
                answers=answers,
                shares=dict(shares),
                counts=dict(counts),
                examples=examples,
                separator=sep,
                separator_offsets=offsets,
            )
        )
    return prompts


def render_prompt(examples: list[Example], query: str, separator: str) -> tuple[str, list[int]]:
    """Examples one per line, then the query and its separator (the paper's template)."""
    parts: list[str] = []
    offsets: list[int] = []
    pos = 0
    for ex in examples:
        offsets.append(pos + len(ex.input))
        line = f"{ex.input}{separator}{ex.answer}\n"
        parts.append(line)
        pos += len(line)
    offsets.append(pos + len(query))
    parts.append(f"{query}{separator}")
    return "".join(parts), offsets


def save_prompts(prompts: list[Prompt], path: str | Path) -> None:
    """Write prompts as JSON lines, atomically (a reader never sees half a file)."""
    atomic_write_text(path, "".join(p.to_json() + "\n" for p in prompts))


def load_prompts(path: str | Path) -> list[Prompt]:
    """Prompts from a JSON-lines file; a damaged file is one InterpError line naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [Prompt.from_dict(json.loads(line)) for line in lines if line.strip()]
    except OSError as exc:
        raise InterpError(f"cannot read prompts file {path} ({exc.strerror or type(exc).__name__})") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise InterpError(f"prompts file {path} is damaged ({type(exc).__name__}): rebuild it") from None


def check_prompt_list(prompts: Any) -> None:
    """Refuse, in one line, what no scorer can score: not a list of Prompt, an empty list, a prompt without
    answers or with an empty answer."""
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise InterpError(f"prompts must be a list of Prompt (from build_prompts), got {type(prompts).__name__}")
    if not prompts:
        raise InterpError("no prompts to score: build at least one with build_prompts")
    for p in prompts:
        if not isinstance(p, Prompt):
            raise InterpError(f"prompts must be Prompt objects (from build_prompts), got {type(p).__name__}")
        if not p.answers:
            raise InterpError(f"prompt {p.prompt_id} has no answers to score")
        for task, answer in p.answers.items():
            if not isinstance(answer, str) or not answer:
                raise InterpError(f"prompt {p.prompt_id}: the answer of task {task!r} is empty: every answer needs text")
