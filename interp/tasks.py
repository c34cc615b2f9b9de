"""Task definitions, the task-set registry and user task sets from files.

A :class:`TaskSet` is a family of tasks that share one input distribution (so one query has an
answer under every task), e.g. ``country``: capital / continent / UPPER-CASE name. Each
:class:`Task` is a name, an answer function and optional structured ``params`` (``ret3`` of
``retrieval`` has ``params={"position": 3}``). Registered task sets are immutable; extending one
gives a new set::

    from interp.tasks import Task, get_task_set, register_task_set
    country = get_task_set("country").with_task(Task("lower", lambda c: c["name"].lower()))
    register_task_set(country.renamed("country-lower"))   # optional: usable by name everywhere

A new task set is one :func:`register_task_set` call (a :class:`TaskSet` or a decorated
factory), in the package, in a user's Python file, or in a declarative JSON/TOML file loaded by
:func:`load_tasks_file` (see ``docs/task-sets.md``). Installed packages can ship task sets through
the ``interp.task_sets`` entry-point group, loaded when a name is not otherwise known.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import runpy
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, overload

from num2words import num2words

from interp.errors import InterpError

if TYPE_CHECKING:
    from torch import Generator, Tensor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "interp.task_sets"


def _frozen_mapping(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Task:
    """One in-context task: ``answer(x)`` is the correct output string for input ``x``.

    ``params`` holds the task's structured parameters (read-only), e.g. ``{"position": 3}`` for
    the retrieval task ``ret3``; code reads them instead of parsing the task's name.
    """

    name: str
    answer: Callable[[Any], str]
    description: str = ""
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InterpError(f"a task needs a non-empty name, got {self.name!r}")
        object.__setattr__(self, "params", _frozen_mapping(self.params))


@dataclass(frozen=True)
class TrainingSpec:
    """How ``interp train`` draws one-task training examples of a task set (vectorised, seeded).

    Every training example is ``input + separator + answer + "\\n"`` with a fixed-length input of
    ``input_length`` characters and a one-character answer, all drawn from ``alphabet``.

    Attributes:
        param: the :attr:`Task.params` key that is the hidden task parameter ``h`` the model must
            infer from the context (``"position"`` for retrieval, ``"bias"`` for bias-add).
        input_length: characters per input.
        alphabet: the characters of inputs and answers (the model's vocabulary needs them).
        sample: ``sample(h, n_examples, generator) -> (inputs, answers)``: ``h`` is a ``[batch, 1]``
            long tensor of task parameters; returns indices into ``alphabet`` of shape
            ``[batch, n_examples, input_length]`` and ``[batch, n_examples, 1]``.
    """

    param: str
    input_length: int
    alphabet: str
    sample: Callable[[Tensor, int, Generator], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class TaskSet:
    """Tasks sharing an input space and a prompt format (immutable; see :meth:`with_task`).

    Attributes:
        name: registry name (``ab``, ``country``, ...).
        tasks: the tasks, in their canonical order.
        inputs: returns every possible input (finite; used for sampling without replacement).
        format_input: how an input is written before the separator.
        separator: between input and answer (``->``; ``=`` for ``ab``).
        default_tasks: the tasks mixed by default (the paper's set; extras stay opt-in).
        examples_per_task: the default number of in-context examples per task.
        inputs_may_repeat: whether one input may appear in several examples of a prompt (needed
            for tiny input spaces such as ``bias-add``'s 10 digits); the default of
            :func:`interp.prompts.build_prompts`.
        query_may_repeat: whether the query's input may also appear among the examples.
        default_pair: the two tasks a two-task analysis (the mixture curve) mixes by default;
            ``None``: a random pair per prompt.
        training: how to train a model from scratch on this set (``None``: not trainable).
    """

    name: str
    tasks: tuple[Task, ...]
    inputs: Callable[[], Sequence[Any]]
    format_input: Callable[[Any], str] = str
    separator: str = "->"
    default_tasks: tuple[str, ...] | None = None
    examples_per_task: int = 20
    description: str = ""
    inputs_may_repeat: bool = False
    query_may_repeat: bool = False
    default_pair: tuple[str, str] | None = None
    training: TrainingSpec | None = None
    _index: Mapping[str, Task] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tasks = tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        index = {t.name: t for t in tasks}
        if len(index) != len(tasks):
            dupes = sorted({t.name for t in tasks if sum(u.name == t.name for u in tasks) > 1})
            raise InterpError(f"task set {self.name!r} has duplicate task names {dupes}: give each task its own name")
        object.__setattr__(self, "_index", MappingProxyType(index))
        if self.default_tasks is not None:
            object.__setattr__(self, "default_tasks", tuple(self.default_tasks))
            self._check_known(self.default_tasks, "default tasks")
        if self.default_pair is not None:
            pair = tuple(self.default_pair)
            if len(pair) != 2 or pair[0] == pair[1]:
                raise InterpError(f"task set {self.name!r}: default_pair must name two different tasks")
            self._check_known(pair, "default_pair")
            object.__setattr__(self, "default_pair", pair)
        if not callable(self.inputs):
            # A plain sequence of inputs is accepted too (kept as a tuple).
            values = tuple(self.inputs)
            object.__setattr__(self, "inputs", lambda: values)
        if not self.separator:
            raise InterpError(f"task set {self.name!r}: the separator must be non-empty")
        if self.training is not None:
            missing = [t.name for t in tasks if self.training.param not in t.params]
            if missing:
                raise InterpError(f"task set {self.name!r}: tasks {missing} lack the training parameter "
                                  f"{self.training.param!r} in Task.params")

    def _check_known(self, names: Iterable[str], what: str) -> None:
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise InterpError(f"task set {self.name!r}: {what} {unknown} are not tasks of the set "
                              f"({', '.join(self._index)})")

    # ---------------------------------------------------------------- non-mutating extension

    def with_task(self, task: Task, default: bool = False) -> TaskSet:
        """A new task set with ``task`` appended (and in the default mix if ``default``)."""
        if task.name in self._index:
            raise InterpError(f"task {task.name!r} already exists in {self.name!r}: pick another name")
        defaults = self.default_tasks
        if default and defaults is not None:
            defaults = (*defaults, task.name)
        training = self.training
        if training is not None and training.param not in task.params:
            training = None  # training samples every task by its parameter; this one has none
        return replace(self, tasks=(*self.tasks, task), default_tasks=defaults, training=training)

    def without_tasks(self, *names: str) -> TaskSet:
        """A new task set without the named tasks."""
        self._check_known(names, "tasks")
        keep = tuple(t for t in self.tasks if t.name not in names)
        defaults = None if self.default_tasks is None else tuple(n for n in self.default_tasks if n not in names)
        pair = self.default_pair if self.default_pair and not set(self.default_pair) & set(names) else None
        return replace(self, tasks=keep, default_tasks=defaults, default_pair=pair)

    def renamed(self, name: str, description: str | None = None) -> TaskSet:
        """The same task set under another name (e.g. to register an extended copy)."""
        return replace(self, name=name, description=self.description if description is None else description)

    # ---------------------------------------------------------------- lookups

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


# ---------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class _Entry:
    factory: Callable[[], TaskSet]
    origin: str  # where it was defined: a module, a file, an entry point
    digest: str | None = None  # declarative sets: a digest of their spec (an identical reload is a no-op)
    instance: TaskSet | None = None


_REGISTRY: dict[str, _Entry] = {}
_INSTANCES: dict[str, TaskSet] = {}
_LOADING: list[tuple[str, list[str]]] = []  # (origin, names registered) of the files being loaded
_ENTRY_POINTS_DONE: set[str] = set()
_BUILTIN_ORIGIN = "the built-in task sets (interp.tasks)"


def _caller_module() -> str:
    import sys

    return str(sys._getframe(2).f_globals.get("__name__", "?"))


def _clashes(name: str, origin: str, digest: str | None = None, instance: TaskSet | None = None) -> bool:
    """True if ``name`` is taken by an identical definition from elsewhere; raises if by a different one."""
    existing = _REGISTRY.get(name)
    if existing is None or existing.origin == origin:
        return False
    identical = (digest is not None and digest == existing.digest) or (
        instance is not None and instance is _INSTANCES.get(name))
    if not identical:
        raise InterpError(f"task set {name!r} is already defined by {existing.origin}: "
                          f"give yours another name (e.g. {name}-mine)")
    return True


def _register(name: str, factory: Callable[[], TaskSet], origin: str, digest: str | None = None,
              instance: TaskSet | None = None) -> None:
    if _LOADING:
        origin = _LOADING[-1][0]
    if _clashes(name, origin, digest, instance):
        if _LOADING and name not in _LOADING[-1][1]:
            _LOADING[-1][1].append(name)
        return
    # Same origin: re-running the same file or notebook cell replaces its own definition.
    _REGISTRY[name] = _Entry(factory, origin, digest, instance)
    _INSTANCES.pop(name, None)
    if instance is not None:
        _INSTANCES[name] = instance
    if _LOADING and name not in _LOADING[-1][1]:
        _LOADING[-1][1].append(name)


@overload
def register_task_set(target: str) -> Callable[[Callable[[], TaskSet]], Callable[[], TaskSet]]: ...


@overload
def register_task_set(target: TaskSet) -> TaskSet: ...


def register_task_set(target: str | TaskSet) -> Any:
    """Register a task set: ``register_task_set(ts)``, or ``@register_task_set("name")`` on a factory.

    A factory is called once, when the set is first requested. A name defined elsewhere (a
    built-in set, another file) is refused unless the definition is the same object; defining it
    again from the same module or file replaces the earlier definition.
    """
    origin = _caller_module()
    if origin == __name__:
        origin = _BUILTIN_ORIGIN
    if isinstance(target, TaskSet):
        _register(target.name, lambda: target, origin, instance=target)
        return target
    if not isinstance(target, str) or not target:
        raise InterpError(f"register_task_set needs a TaskSet or a non-empty name, got {target!r}")
    name = target

    def wrap(factory: Callable[[], TaskSet]) -> Callable[[], TaskSet]:
        _register(name, factory, origin)
        return factory

    return wrap


def unregister_task_set(name: str) -> None:
    """Forget a user-registered task set (built-in sets stay)."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return
    if entry.origin == _BUILTIN_ORIGIN:
        raise InterpError(f"task set {name!r} is built in and cannot be unregistered")
    del _REGISTRY[name]
    _INSTANCES.pop(name, None)


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def known_task_sets() -> list[str]:
    """Registered task sets and those installed packages offer (entry points, not yet loaded)."""
    try:
        offered = {ep.name for ep in _entry_points()}
    except Exception as exc:  # a broken installation must not hide the built-in sets
        log.warning("could not list %s entry points: %s", ENTRY_POINT_GROUP, exc)
        offered = set()
    return sorted(set(_REGISTRY) | offered)


def _register_result(result: Any, where: str) -> None:
    """Register what a user's factory returned: a TaskSet, several, or nothing (it registered them)."""
    if result is None:
        return
    items = [result] if isinstance(result, TaskSet) else result
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes, Mapping)):
        raise InterpError(f"{where} returned {type(result).__name__}: return a TaskSet, a list of them, or None")
    for ts in items:
        if not isinstance(ts, TaskSet):
            raise InterpError(f"{where} returned a {type(ts).__name__} among its task sets: return TaskSet objects")
        if _INSTANCES.get(ts.name) is not ts:
            register_task_set(ts)


@contextmanager
def _loading(origin: str) -> Any:
    names: list[str] = []
    _LOADING.append((origin, names))
    try:
        yield names
    finally:
        _LOADING.pop()
        if _LOADING:  # a file that loads another file defines what that one defines
            _LOADING[-1][1].extend(n for n in names if n not in _LOADING[-1][1])


def _load_entry_points(wanted: str) -> None:
    """Load the ``interp.task_sets`` entry points (the one named ``wanted`` first) until ``wanted`` exists."""
    try:
        eps = _entry_points()
    except Exception as exc:
        log.warning("could not list %s entry points: %s", ENTRY_POINT_GROUP, exc)
        return
    for ep in sorted(eps, key=lambda ep: ep.name != wanted):
        key = f"{ep.name}={ep.value}"
        if key in _ENTRY_POINTS_DONE:
            continue
        _ENTRY_POINTS_DONE.add(key)
        where = f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r}"
        try:
            obj = ep.load()
            with _loading(where):
                _register_result(obj() if callable(obj) and not isinstance(obj, TaskSet) else obj, where)
        except Exception as exc:
            message = f"{where} failed: {exc}: fix or uninstall the package that provides it"
            if ep.name == wanted:
                raise InterpError(message) from exc
            log.warning(message)  # another package's problem must not block this lookup
        if wanted in _REGISTRY:
            return


def get_task_set(name: str) -> TaskSet:
    """Return the registered task set ``name`` (one shared, immutable instance per process)."""
    if name not in _REGISTRY:
        _load_entry_points(name)
    if name not in _REGISTRY:
        raise InterpError(f"unknown task set {name!r}: use one of {', '.join(known_task_sets())}, or define your "
                          "own in a file loaded with --tasks-file / interp.tasks.load_tasks_file (docs/task-sets.md)")
    if name not in _INSTANCES:
        entry = _REGISTRY[name]
        ts = entry.factory()
        if not isinstance(ts, TaskSet):
            raise InterpError(f"the factory of task set {name!r} ({entry.origin}) returned {type(ts).__name__}, "
                              "not a TaskSet")
        if ts.name != name:
            raise InterpError(f"the factory registered as {name!r} ({entry.origin}) built a task set named "
                              f"{ts.name!r}: make the two names agree")
        _INSTANCES[name] = ts
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


@cache
def _retrieval_inputs() -> tuple[str, ...]:
    # A fixed, seeded pool of 8-distinct-letter strings (the space is too large to enumerate).
    # Built once per process (70 ms), read-only.
    rng = random.Random(1234)
    pool: set[str] = set()
    while len(pool) < 20000:
        pool.add("".join(rng.sample(string.ascii_letters, RETRIEVAL_LENGTH)))
    return tuple(sorted(pool))


def _sample_retrieval(h: Tensor, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
    """8 distinct letters per example (the first 8 of a random permutation); the answer at position h."""
    import torch

    b = h.shape[0]
    idx = torch.rand(b, n, len(string.ascii_letters), generator=generator).argsort(-1)[..., :RETRIEVAL_LENGTH]
    return idx, idx.gather(-1, h[:, :, None].expand(b, n, 1))


@register_task_set("retrieval")
def _retrieval() -> TaskSet:
    return TaskSet(
        name="retrieval",
        description="8 distinct letters; task h answers the letter at position h (from-scratch models)",
        tasks=tuple(Task(f"ret{h}", (lambda s, h=h: s[h]), f"letter at 0-based position {h}", {"position": h})
                    for h in range(RETRIEVAL_LENGTH)),
        inputs=_retrieval_inputs,
        separator=">",
        default_pair=("ret2", "ret6"),  # the authors' copy run
        training=TrainingSpec(param="position", input_length=RETRIEVAL_LENGTH, alphabet=string.ascii_letters,
                              sample=_sample_retrieval),
    )


def _sample_bias_add(h: Tensor, n: int, generator: Generator) -> tuple[Tensor, Tensor]:
    """A random digit x per example; the answer (x + h) mod 10."""
    import torch

    x = torch.randint(0, 10, (h.shape[0], n, 1), generator=generator)
    return x, (x + h[:, :, None]) % 10


@register_task_set("bias-add")
def _bias_add() -> TaskSet:
    return TaskSet(
        name="bias-add",
        description="digit x; task h answers (x + h) mod 10 (from-scratch models)",
        tasks=tuple(Task(f"plus{h}", (lambda x, h=h: str((int(x) + h) % 10)), f"(x+{h}) mod 10", {"bias": h})
                    for h in range(10)),
        inputs=lambda: [str(d) for d in range(10)],
        separator=">",
        # Ten inputs: a prompt of 20 examples must repeat them, and may show the query's digit.
        inputs_may_repeat=True,
        query_may_repeat=True,
        training=TrainingSpec(param="bias", input_length=1, alphabet=string.digits, sample=_sample_bias_add),
    )


# ------------------------------------------------------------------ the constructed model's task set

CONSTRUCTED_ALPHABET = "abcdefgh"
CONSTRUCTED_TASKS = 3
CONSTRUCTED_EXAMPLES = 12


def shift_task_set(name: str = "constructed", n_tasks: int = CONSTRUCTED_TASKS, alphabet: str = CONSTRUCTED_ALPHABET,
                   n_examples: int = CONSTRUCTED_EXAMPLES) -> TaskSet:
    """One-letter inputs from ``alphabet``; task ``shift{s}`` (s = 1..n_tasks) answers the letter ``s`` places
    further on (cyclically), e.g. ``c>e`` under ``shift2``.

    The task set of the hand-set model ``constructed-superposition`` (:mod:`interp.constructed`): every
    example is consistent with exactly one task (distinct shifts never agree), so a prompt's
    in-context shares are known exactly. ``n_examples`` is the examples of a default (uniform) prompt.
    """
    def shifted(letter: str, s: int) -> str:
        return alphabet[(alphabet.index(letter) + s) % len(alphabet)]

    return TaskSet(
        name=name,
        description=f"letter x in {alphabet!r}; task shift{{s}} answers the letter s places on "
                    "(the constructed superposition model's tasks)",
        tasks=tuple(Task(f"shift{s}", (lambda x, s=s: shifted(x, s)), f"the letter {s} places after x", {"shift": s})
                    for s in range(1, n_tasks + 1)),
        inputs=tuple(alphabet),
        separator=">",
        examples_per_task=max(1, n_examples // n_tasks),
        # A handful of one-letter inputs: examples repeat them and may show the query's letter.
        inputs_may_repeat=True,
        query_may_repeat=True,
    )


@register_task_set("constructed")
def _constructed() -> TaskSet:
    return shift_task_set()


# ------------------------------------------------------------------ task sets from files


def _reverse(s: str) -> str:
    return s[::-1]


#: Built-in string transforms a declarative task may name (composable: ``"reverse|upper"``).
TRANSFORMS: Mapping[str, Callable[[str], str]] = MappingProxyType({
    "identity": lambda s: s,
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "capitalize": str.capitalize,
    "swapcase": str.swapcase,
    "strip": str.strip,
    "reverse": _reverse,
    "first_char": lambda s: s[:1],
    "last_char": lambda s: s[-1:],
    "first_word": lambda s: s.split()[0] if s.split() else "",
    "last_word": lambda s: s.split()[-1] if s.split() else "",
    "length": lambda s: str(len(s)),
    "double": lambda s: s + s,
    "sorted": lambda s: "".join(sorted(s)),
})

_SET_KEYS = {"name", "description", "separator", "inputs", "tasks", "default", "default_tasks", "examples_per_task",
             "inputs_may_repeat", "query_may_repeat", "default_pair"}
_TASK_KEYS = {"name", "description", "answers", "transform", "field", "params"}


def _compose(spec: Any, where: str) -> Callable[[str], str]:
    if isinstance(spec, str):
        names = [p.strip() for p in spec.split("|")]
    elif isinstance(spec, list) and all(isinstance(p, str) for p in spec):
        names = [p.strip() for p in spec]
    else:
        raise InterpError(f"{where}: transform must be a name or a list of names, e.g. \"reverse|upper\"")
    unknown = [n for n in names if n not in TRANSFORMS]
    if unknown or not names:
        raise InterpError(f"{where}: unknown transform {unknown[0] if unknown else ''!r}: use one of "
                          f"{', '.join(TRANSFORMS)} (join several with '|')")
    funcs = [TRANSFORMS[n] for n in names]

    def apply(s: str) -> str:
        for f in funcs:
            s = f(s)
        return s

    return apply


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InterpError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    return str(value)


def _as_bool(spec: Mapping[str, Any], key: str, where: str) -> bool:
    value = spec.get(key, False)
    if not isinstance(value, bool):
        raise InterpError(f"{where}: {key} must be true or false")
    return value


def _parse_inputs(raw: Any, where: str) -> tuple[list[Any], bool]:
    """``(inputs, structured)``: a list of strings, or of read-only mappings with an ``input`` key."""
    if not isinstance(raw, list) or not raw:
        raise InterpError(f"{where}: 'inputs' must be a non-empty list of strings or of tables with an 'input' key")
    if all(isinstance(x, str) for x in raw):
        values: list[Any] = list(raw)
        shown = values
        structured = False
    elif all(isinstance(x, dict) for x in raw):
        values = []
        for i, x in enumerate(raw):
            if "input" not in x:
                raise InterpError(f"{where}: input #{i + 1} {x!r} has no 'input' key (the text shown in the prompt)")
            values.append(MappingProxyType({k: _text(v, f"{where}: input #{i + 1}, key {k!r}") for k, v in x.items()}))
        shown = [v["input"] for v in values]
        structured = True
    else:
        raise InterpError(f"{where}: 'inputs' mixes strings and tables: use one kind")
    dupes = sorted({s for s in shown if shown.count(s) > 1})
    if dupes:
        raise InterpError(f"{where}: inputs {dupes[:5]} appear more than once: list each input once")
    return values, structured


def _make_task(raw: Any, where: str, inputs: list[Any], structured: bool) -> Task:
    if not isinstance(raw, dict):
        raise InterpError(f"{where}: each task must be a table with a 'name' and an answer rule")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InterpError(f"{where}: a task lacks 'name'")
    where = f"{where}, task {name!r}"
    extra = sorted(set(raw) - _TASK_KEYS)
    if extra:
        raise InterpError(f"{where}: unknown keys {extra}: a task has {', '.join(sorted(_TASK_KEYS))}")
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise InterpError(f"{where}: 'params' must be a table")
    description = _text(raw.get("description", ""), where)
    key = (lambda x: x["input"]) if structured else (lambda x: x)
    if "answers" in raw:
        if "transform" in raw or "field" in raw:
            raise InterpError(f"{where}: give either 'answers' or 'transform'/'field', not both")
        answers = raw["answers"]
        if not isinstance(answers, dict):
            raise InterpError(f"{where}: 'answers' must map each input to its answer")
        table = {k: _text(v, f"{where}: answer for {k!r}") for k, v in answers.items()}
        shown = [key(x) for x in inputs]
        missing = [s for s in shown if s not in table]
        if missing:
            raise InterpError(f"{where}: 'answers' misses inputs {missing[:5]}"
                              f"{f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''}: add an answer for each")
        unused = sorted(set(table) - set(shown))
        if unused:
            raise InterpError(f"{where}: 'answers' names {unused[:5]}, which are not in 'inputs': add them there or "
                              "remove them")
        return Task(name, lambda x: table[key(x)], description, params)
    if "transform" not in raw and "field" not in raw:
        raise InterpError(f"{where}: give 'answers' (input -> answer), 'transform' (one of {', '.join(TRANSFORMS)}) "
                          "or 'field'")
    transform = _compose(raw["transform"], where) if "transform" in raw else TRANSFORMS["identity"]
    if "field" in raw:
        fld = raw["field"]
        if not structured:
            raise InterpError(f"{where}: 'field' needs inputs written as tables (e.g. {{input = \"dog\", {fld} = ...}})")
        lacking = [x["input"] for x in inputs if fld not in x]
        if lacking:
            raise InterpError(f"{where}: inputs {lacking[:5]} have no field {fld!r}: add it to every input")
        return Task(name, lambda x: transform(x[fld]), description, params)
    return Task(name, lambda x: transform(key(x)), description, params)


def _spec_digest(spec: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def task_set_from_dict(spec: Mapping[str, Any], source: str = "<dict>") -> TaskSet:
    """Build a task set from its declarative description (the JSON/TOML file format, docs/task-sets.md)."""
    if not isinstance(spec, Mapping):
        raise InterpError(f"{source}: a task set must be a table/object, got {type(spec).__name__}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InterpError(f"{source}: a task set lacks 'name' (e.g. name = \"animals\")")
    where = f"{source}: task set {name!r}"
    extra = sorted(set(spec) - _SET_KEYS)
    if extra:
        raise InterpError(f"{where}: unknown keys {extra}: a task set has {', '.join(sorted(_SET_KEYS))}")
    for required in ("inputs", "tasks"):
        if required not in spec:
            raise InterpError(f"{where}: missing {required!r}: see docs/task-sets.md for the file format")
    separator = spec.get("separator", "->")
    if not isinstance(separator, str) or not separator or "\n" in separator:
        raise InterpError(f"{where}: 'separator' must be a non-empty one-line string such as \"->\"")
    inputs, structured = _parse_inputs(spec["inputs"], where)
    shown = [x["input"] if structured else x for x in inputs]
    bad = [s for s in shown if separator in s or "\n" in s or not s]
    if bad:
        raise InterpError(f"{where}: inputs {bad[:5]} are empty or contain the separator {separator!r} or a "
                          "newline: change them or the separator")
    raw_tasks = spec["tasks"]
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise InterpError(f"{where}: 'tasks' must be a non-empty list of tables")
    tasks = [_make_task(t, where, inputs, structured) for t in raw_tasks]
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InterpError(f"{where}: task names {dupes} appear more than once: give each task its own name")
    # Evaluate every answer now: a broken rule fails at load time, naming the input.
    for task in tasks:
        for x, s in zip(inputs, shown):
            answer = task.answer(x)
            if not answer or "\n" in answer:
                raise InterpError(f"{where}, task {task.name!r}: the answer for {s!r} is {answer!r}; answers must "
                                  "be non-empty and on one line")
    default = spec.get("default", spec.get("default_tasks"))
    if default is not None and (not isinstance(default, list) or not all(isinstance(d, str) for d in default)
                                or not default):
        raise InterpError(f"{where}: 'default' must be a non-empty list of task names")
    pair = spec.get("default_pair")
    if pair is not None and (not isinstance(pair, list) or len(pair) != 2):
        raise InterpError(f"{where}: 'default_pair' must list two task names")
    inputs_may_repeat = _as_bool(spec, "inputs_may_repeat", where)
    query_may_repeat = _as_bool(spec, "query_may_repeat", where)
    n_mixed = len(default) if default else len(tasks)
    if "examples_per_task" in spec:
        per_task = spec["examples_per_task"]
        if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
            raise InterpError(f"{where}: 'examples_per_task' must be a positive integer")
    else:
        # As many as the distinct inputs allow (one is kept for the query), at most 20.
        per_task = 20 if inputs_may_repeat else max(1, min(20, (len(inputs) - 1) // n_mixed))
    frozen_inputs = tuple(inputs)
    try:
        return TaskSet(
            name=name,
            tasks=tuple(tasks),
            inputs=lambda: frozen_inputs,
            format_input=(lambda x: x["input"]) if structured else str,
            separator=separator,
            default_tasks=tuple(default) if default else None,
            examples_per_task=per_task,
            description=_text(spec.get("description", ""), where),
            inputs_may_repeat=inputs_may_repeat,
            query_may_repeat=query_may_repeat,
            default_pair=tuple(pair) if pair else None,
        )
    except InterpError as exc:
        raise InterpError(f"{source}: {exc}") from None


def _toml() -> Any:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, for Python 3.10
        except ModuleNotFoundError:
            raise InterpError("reading a TOML tasks file needs Python 3.11+ (or `pip install tomli`): "
                              "or write the file as JSON") from None
    return tomllib


def _read_declarative(path: Path) -> list[Mapping[str, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data: Any = _toml().loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, json.JSONDecodeError) as exc:  # TOMLDecodeError is a ValueError
        raise InterpError(f"{path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if isinstance(data, list):
        sets = data
    elif isinstance(data, dict) and "task_sets" in data:
        if set(data) != {"task_sets"}:
            raise InterpError(f"{path}: a file with 'task_sets' holds nothing else: move the other keys into a set")
        sets = data["task_sets"]
    else:
        sets = [data]
    if not isinstance(sets, list) or not sets:
        raise InterpError(f"{path}: defines no task set: see docs/task-sets.md for the file format")
    return sets


def _load_declarative(path: Path) -> list[str]:
    built = [(spec, task_set_from_dict(spec, str(path))) for spec in _read_declarative(path)]
    names = [ts.name for _, ts in built]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InterpError(f"{path}: task sets {dupes} are defined more than once: give each its own name")
    digests = [_spec_digest(spec) for spec, _ in built]
    for (_, ts), digest in zip(built, digests):
        _clashes(ts.name, str(path), digest)  # all or nothing: refuse before registering any
    with _loading(str(path)) as registered:
        for (_, ts), digest in zip(built, digests):
            _register(ts.name, lambda ts=ts: ts, str(path), digest=digest, instance=ts)
    return registered


def _load_python(path: Path) -> list[str]:
    with _loading(str(path)) as registered:
        try:
            namespace = runpy.run_path(str(path), run_name=f"interp_tasks_file_{path.stem}")
        except InterpError:
            raise
        except SyntaxError as exc:
            raise InterpError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
        except Exception as exc:
            raise InterpError(f"{path}: running it raised {type(exc).__name__}: {exc}: fix the file") from exc
        if not registered:
            # A file that registers nothing: register the TaskSet objects it defines at module level.
            found = [v for k, v in namespace.items() if isinstance(v, TaskSet) and not k.startswith("_")]
            _register_result(found, str(path))
    return registered


def load_tasks_file(path: str | Path) -> list[str]:
    """Register the task sets a file defines and return their names (in definition order).

    ``.py``: the file is run (it is the user's own code); it calls :func:`register_task_set`, or
    else every :class:`TaskSet` it defines at module level is registered. ``.json`` / ``.toml``:
    a declarative description (no code is run): name, separator, inputs and per task a name plus
    an answer mapping, a built-in transform (:data:`TRANSFORMS`) or a field of the input; see
    ``docs/task-sets.md``. Loading the same file again is harmless. A bad file raises one
    :class:`InterpError` line naming the file and the fix.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InterpError(f"tasks file {str(path)!r} does not exist: give the path of a .py, .json or .toml file")
    p = p.resolve()
    try:
        if p.suffix == ".py":
            names = _load_python(p)
        elif p.suffix in (".json", ".toml"):
            names = _load_declarative(p)
        else:
            raise InterpError(f"{p}: unknown tasks file type {p.suffix!r}: use .py, .json or .toml")
    except InterpError as exc:
        if str(exc).startswith(str(p)):
            raise
        raise InterpError(f"{p}: {exc}") from exc
    if not names:
        raise InterpError(f"{p}: defines no task set: call register_task_set(...) or define a TaskSet "
                          "(docs/task-sets.md)")
    log.info("loaded task sets %s from %s", ", ".join(names), p)
    return names
