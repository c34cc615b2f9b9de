"""Task definitions and the paper's task sets.

A :class:`TaskSet` is a family of tasks that share one input distribution (so one query has an
answer under every task), e.g. ``country``: capital / continent / UPPER-CASE name. Each
:class:`Task` is just a name and an answer function. Adding a task is a few lines::

    from interp.tasks import Task, get_task_set
    country = get_task_set("country")
    country.add(Task("lower", lambda c: c["name"].lower()))

and a new task set is one :func:`register_task_set` call.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from num2words import num2words

from interp.errors import InterpError


@dataclass(frozen=True)
class Task:
    """One in-context task: ``answer(x)`` is the correct output string for input ``x``."""

    name: str
    answer: Callable[[Any], str]
    description: str = ""


@dataclass
class TaskSet:
    """Tasks sharing an input space and a prompt format.

    Attributes:
        name: registry name (``ab``, ``country``, ...).
        tasks: the tasks, in their canonical order.
        inputs: every possible input (finite; used for sampling without replacement).
        format_input: how an input is written before the separator.
        separator: between input and answer (``->``; ``=`` for ``ab``).
        default_tasks: the tasks mixed by default (the paper's set; extras stay opt-in).
        examples_per_task: the paper's default number of in-context examples per task.
    """

    name: str
    tasks: list[Task]
    inputs: Callable[[], list[Any]]
    format_input: Callable[[Any], str] = str
    separator: str = "->"
    default_tasks: list[str] | None = None
    examples_per_task: int = 20
    description: str = ""
    _index: dict[str, Task] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {t.name: t for t in self.tasks}
        if len(self._index) != len(self.tasks):
            raise ValueError(f"task set {self.name!r} has duplicate task names")

    def add(self, task: Task, default: bool = False) -> None:
        """Add a task to this set (optionally to the default mix)."""
        if task.name in self._index:
            raise InterpError(f"task {task.name!r} already exists in {self.name!r}: pick another name")
        self.tasks.append(task)
        self._index[task.name] = task
        if default and self.default_tasks is not None:
            self.default_tasks.append(task.name)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def default_task_names(self) -> list[str]:
        return list(self.default_tasks) if self.default_tasks is not None else self.task_names

    def task(self, name: str) -> Task:
        if name not in self._index:
            raise InterpError(
                f"unknown task {name!r} in task set {self.name!r}: use one of {', '.join(self.task_names)}"
            )
        return self._index[name]

    def answers(self, x: Any, task_names: Iterable[str]) -> dict[str, str]:
        return {name: self.task(name).answer(x) for name in task_names}


_REGISTRY: dict[str, Callable[[], TaskSet]] = {}
_INSTANCES: dict[str, TaskSet] = {}


def register_task_set(name: str) -> Callable[[Callable[[], TaskSet]], Callable[[], TaskSet]]:
    """Decorator registering a factory for a task set (built lazily, once per process)."""

    def wrap(factory: Callable[[], TaskSet]) -> Callable[[], TaskSet]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def known_task_sets() -> list[str]:
    return sorted(_REGISTRY)


def get_task_set(name: str) -> TaskSet:
    """Return the registered task set ``name`` (one shared instance per process)."""
    if name not in _REGISTRY:
        raise InterpError(f"unknown task set {name!r}: use one of {', '.join(known_task_sets())}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _REGISTRY[name]()
    return _INSTANCES[name]


# ------------------------------------------------------------------ the paper's task sets


def _operand_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(10, 100) for b in range(10, 100)]


@register_task_set("ab")
def _ab() -> TaskSet:
    return TaskSet(
        name="ab",
        description="copy(op1), copy(op2), op1+op2 on `73@12=73` (operands 10-99)",
        tasks=[
            Task("copy_op1", lambda x: str(x[0]), "first operand"),
            Task("copy_op2", lambda x: str(x[1]), "second operand"),
            Task("add", lambda x: str(x[0] + x[1]), "sum"),
        ],
        inputs=_operand_pairs,
        format_input=lambda x: f"{x[0]}@{x[1]}",
        separator="=",
    )


def _words(n: int, lang: str) -> str:
    return str(num2words(n, lang=lang))


@register_task_set("add-translate")
def _add_translate() -> TaskSet:
    return TaskSet(
        name="add-translate",
        description="op1+op2 written as digits, English, French, Spanish on `57+35->ninety-two`",
        tasks=[
            Task("digits", lambda x: str(x[0] + x[1])),
            Task("en", lambda x: _words(x[0] + x[1], "en")),
            Task("fr", lambda x: _words(x[0] + x[1], "fr")),
            Task("es", lambda x: _words(x[0] + x[1], "es")),
        ],
        inputs=_operand_pairs,
        format_input=lambda x: f"{x[0]}+{x[1]}",
    )


@cache
def load_countries() -> list[dict[str, str]]:
    """Countries with capital, continent and currency (shipped JSON; see its ``source`` field)."""
    text = resources.files("interp").joinpath("data/countries.json").read_text(encoding="utf-8")
    return list(json.loads(text)["countries"])


@register_task_set("country")
def _country() -> TaskSet:
    return TaskSet(
        name="country",
        description="capital, continent, UPPER-CASE name (currency as an extra task) on `Kenya->Nairobi`",
        tasks=[
            Task("capital", lambda c: c["capital"]),
            Task("continent", lambda c: c["continent"]),
            Task("upper", lambda c: c["name"].upper()),
            Task("currency", lambda c: c["currency"], "ISO-4217 code (extra task)"),
        ],
        inputs=load_countries,
        format_input=lambda c: c["name"],
        default_tasks=["capital", "continent", "upper"],
    )


@cache
def load_words() -> list[str]:
    """English words (``english-words`` package, web2 ∩ gcide), 3-9 letters, first ≠ last letter."""
    from english_words import get_english_words_set

    common = get_english_words_set(["web2"], lower=True, alpha=True) & get_english_words_set(
        ["gcide"], lower=True, alpha=True
    )
    return sorted(w for w in common if 3 <= len(w) <= 9 and w.isascii() and w[0] != w[-1])


@register_task_set("word")
def _word() -> TaskSet:
    return TaskSet(
        name="word",
        description="first letter, last letter and their upper-case variants on `apple->a`",
        tasks=[
            Task("first", lambda w: w[0]),
            Task("last", lambda w: w[-1]),
            Task("first_upper", lambda w: w[0].upper()),
            Task("last_upper", lambda w: w[-1].upper()),
        ],
        inputs=load_words,
    )


# ------------------------------------------------------------------ from-scratch task sets

RETRIEVAL_LENGTH = 8


def _retrieval_inputs() -> list[str]:
    # A fixed, seeded pool of 8-distinct-letter strings (the space is too large to enumerate).
    rng = random.Random(1234)
    pool: set[str] = set()
    while len(pool) < 20000:
        pool.add("".join(rng.sample(string.ascii_letters, RETRIEVAL_LENGTH)))
    return sorted(pool)


@register_task_set("retrieval")
def _retrieval() -> TaskSet:
    return TaskSet(
        name="retrieval",
        description="8 distinct letters; task h answers the letter at position h (from-scratch models)",
        tasks=[Task(f"ret{h}", (lambda s, h=h: s[h]), f"letter at 0-based position {h}") for h in range(8)],
        inputs=_retrieval_inputs,
        separator=">",
    )


@register_task_set("bias-add")
def _bias_add() -> TaskSet:
    return TaskSet(
        name="bias-add",
        description="digit x; task h answers (x + h) mod 10 (from-scratch models)",
        tasks=[Task(f"plus{h}", (lambda x, h=h: str((int(x) + h) % 10)), f"(x+{h}) mod 10") for h in range(10)],
        inputs=lambda: [str(d) for d in range(10)],
        separator=">",
    )
