"""Option groups: small dataclasses that are both Python configs and command-line flags.

A command's config is a dataclass combining the groups it reads (each flag means one thing
everywhere) with its analysis's own options dataclass::

    @dataclass
    class LogitLensConfig(ModelOptions, PromptOptions, CacheOptions, OutputOptions, LogitLensOptions): ...

:func:`add_dataclass_args` turns the fields into ``--flags`` (grouped in ``--help`` by the group
that declares them; help text from ``field(metadata={"help": ...})``) and :func:`from_args`
builds the config back. :func:`parse_value` converts one ``VALUE`` string for a field's type;
the report's ``--set SECTION.OPTION=VALUE`` uses it too, so a value parses the same way there.

Groups: model (``--model --device --dtype``), prompts (``--task-set --tasks-file --n-prompts
--seed --examples-per-task --mixture --separator``), cache (``--cache-dir --no-cache``), output
(``--out --overwrite``). ``--batch-size`` belongs to the analysis options that read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import interp.tasks as task_registry
from interp.constructed import model_task_set
from interp.dtypes import parse_dtype
from interp.models import DEFAULT_MODEL, LoadedModel, load_model
from interp.prompts import Prompt, build_prompts, parse_mixture
from interp.tasks import TaskSet, get_task_set
from interp.validate import Validated, check_device
from interp_app.runs import RunDir

C = TypeVar("C")


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


# ------------------------------------------------------------------------------ the groups


@dataclass
class ModelOptions(Validated):
    title: ClassVar[str] = "model"
    model: str = field(default=DEFAULT_MODEL, metadata=_help("model spec: smollm2-135m, tiny-llama, tiny-qwen2, a local HF dir or a hub id"))
    device: str = field(default="cpu", metadata=_help("cpu, cuda, cuda:N or auto"))
    dtype: str = field(default="float32", metadata=_help("float32, bfloat16 or float16"))

    def _validate(self) -> None:
        check_device(self.device)
        parse_dtype(self.dtype)


@dataclass
class TasksFileOptions(Validated):
    title: ClassVar[str] = "prompts"
    tasks_file: list[str] = field(default_factory=list, metadata=_help(
        "a .py file registering task sets, or a declarative .json/.toml task-set file (repeatable)",
        repeat=True, metavar="PATH"))


@dataclass
class TaskSetOptions(TasksFileOptions):
    title: ClassVar[str] = "prompts"
    #: The task set when neither --task-set nor the model names one ("" leaves the choice to the command).
    fallback_task_set: ClassVar[str] = "country"
    task_set: str = field(default="", metadata=_help(
        "task set: ab, add-translate, country, word, retrieval, bias-add, constructed, or one from --tasks-file "
        "(default: the model's own task set where it has one, e.g. constructed for constructed-superposition; "
        "else country)"))

    def _validate(self) -> None:
        if not self.task_set:
            # A model that comes with its task set (the constructed superposition model) is run on it.
            own = model_task_set(str(getattr(self, "model", "") or ""))
            self.task_set = own or self.fallback_task_set


@dataclass
class SampleOptions(Validated):
    title: ClassVar[str] = "prompts"
    n_prompts: int = field(default=100, metadata=_help("number of prompts", min=1))
    seed: int = field(default=0, metadata=_help("random seed (same seed, same prompts)"))


@dataclass
class MixtureOptions(Validated):
    title: ClassVar[str] = "prompts"
    examples_per_task: int | None = field(default=None, metadata=_help(
        "in-context examples per task (default: the task set's, 20)", min=1))
    mixture: str = field(default="", metadata=_help(
        "custom mix: shares in [0, 1] summing to 1 (capital=0.5,upper=0.5) or whole-number counts "
        "(capital=10,upper=30); mixing the two is refused; default uniform"))

    def _validate(self) -> None:
        if self.mixture:
            from interp.prompts import check_mixture_values

            check_mixture_values(parse_mixture(self.mixture))


@dataclass
class SeparatorOptions(Validated):
    title: ClassVar[str] = "prompts"
    separator: str | None = field(default=None, metadata=_help("override the task set's separator"))

    def _validate(self) -> None:
        if self.separator is not None:
            from interp.prompts import check_separator_text

            check_separator_text(self.separator)


@dataclass
class PromptOptions(TaskSetOptions, SampleOptions, MixtureOptions, SeparatorOptions):
    """The whole prompts group: which task set, how many prompts, which mix."""


@dataclass
class CacheOptions(Validated):
    title: ClassVar[str] = "activation cache"
    cache_dir: str = field(default="", metadata=_help("activation cache directory (default: $INTERP_CACHE_DIR, else "
                                                      "cached_activations/ at the repo root)"))
    cache: bool = field(default=True, metadata=_help("read/write activations through the on-disk activation cache "
                                                     "(--no-cache: compute, store nothing)"))

    def cache_path(self) -> str | None:
        return self.cache_dir or None


@dataclass
class OutputOptions(Validated):
    title: ClassVar[str] = "output"
    out: str = field(default="", metadata=_help("run directory (default: runs/<analysis>-<model>-<task set>)"))
    overwrite: bool = field(default=False, metadata=_help("replace a run directory that holds a different run"))


@dataclass
class ExperimentConfig(ModelOptions, PromptOptions, OutputOptions):
    """Model, prompts and output: what every single-model ``interp run …`` command reads."""


# ------------------------------------------------------------------------------ dataclass <-> argparse


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) for annotations like ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def parse_value(tp: Any, raw: str) -> Any:
    """Convert one command-line ``raw`` string for a field annotated ``tp`` (ValueError when it does not parse).

    ``bool``: 1/0/true/false/yes/no; ``list[X]``: comma-separated X; ``int``/``float``/``str``.
    """
    base, _ = _base_type(tp)
    if base is bool:
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(raw)
        return raw.lower() in ("1", "true", "yes")
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base) or (str,)
        return [item(x.strip()) for x in raw.split(",") if x.strip()]
    if base in (int, float, str):
        return base(raw)
    return raw


def type_name(tp: Any) -> str:
    base, _ = _base_type(tp)
    return getattr(base, "__name__", str(base))


def _group_of(config_cls: type, name: str) -> tuple[int, str]:
    """(MRO position, title) of the first class in the MRO that declares ``name`` and has a title.

    A group class names itself with a ``title`` class attribute; an analysis's options dataclass
    with the first line of its docstring.
    """
    for i, klass in enumerate(config_cls.__mro__):
        if name in klass.__dict__.get("__annotations__", {}):
            title = klass.__dict__.get("title")
            if isinstance(title, str):
                return i, title
            if klass.__doc__ and not klass.__doc__.startswith(f"{klass.__name__}("):
                return i, klass.__doc__.strip().splitlines()[0]
    return len(config_cls.__mro__), "options"


def add_dataclass_args(parser: argparse.ArgumentParser, config_cls: type, suppress_defaults: bool = False) -> None:
    """Add one ``--flag`` per dataclass field (underscores become dashes), grouped by option group.

    ``suppress_defaults``: a flag not typed leaves no attribute on the namespace, so
    :func:`from_args` keeps the dataclass default and :func:`typed_fields` tells which were typed.
    """
    hints = typing.get_type_hints(config_cls)
    fields = [f for f in dataclasses.fields(config_cls) if f.metadata.get("cli") is not False]
    placed = {f.name: _group_of(config_cls, f.name) for f in fields}
    # Groups in the order the config lists its bases (model, prompts, cache, output, then the analysis's).
    order = {title: rank for rank, title in sorted(placed.values(), reverse=True)}
    groups = {title: parser.add_argument_group(title) for title in sorted(order, key=order.__getitem__)}
    for f in sorted(fields, key=lambda f: (order[placed[f.name][1]], placed[f.name][0])):
        target = groups[placed[f.name][1]]
        flag = "--" + f.name.replace("_", "-")
        tp, _optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        if default not in (None, "", []) and tp is not bool:
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        kwargs["default"] = argparse.SUPPRESS if suppress_defaults else default
        if tp is bool:
            target.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif f.metadata.get("repeat"):
            (item,) = typing.get_args(tp) or (str,)
            if not suppress_defaults:
                kwargs["default"] = None  # argparse appends to a default list in place: fill it in from_args
            target.add_argument(flag, action="append", type=item, metavar=f.metadata.get("metavar"), **kwargs)
        else:
            def convert(raw: str, tp: Any = hints[f.name]) -> Any:
                return parse_value(tp, raw)

            convert.__name__ = type_name(hints[f.name])  # argparse names the type in its error message
            suffix = " (comma-separated)" if typing.get_origin(tp) is list else ""
            kwargs["help"] += suffix
            target.add_argument(flag, type=convert, **kwargs)


def typed_fields(config_cls: type, args: argparse.Namespace) -> set[str]:
    """Fields whose flag was typed (parsers built with ``suppress_defaults=True`` only)."""
    return {f.name for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}


def from_args(config_cls: type[C], args: argparse.Namespace) -> C:
    """Build ``config_cls`` from parsed arguments (fields not on the command line keep defaults)."""
    # None (an untyped repeatable flag, or an optional field's default) leaves the dataclass default.
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
              if getattr(args, f.name, None) is not None}
    return config_cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# ------------------------------------------------------------------------------ what the groups imply


def load_tasks_files(paths: Sequence[str | Path]) -> list[str]:
    """Register the task sets of every ``--tasks-file``; returns their names."""
    names: list[str] = []
    for path in paths:
        names.extend(task_registry.load_tasks_file(path))
    return names


def resolve_task_set(options: TaskSetOptions, name: str | None = None) -> TaskSet:
    """The task set ``name`` (default ``options.task_set``), after loading ``--tasks-file`` files."""
    load_tasks_files(options.tasks_file)
    return get_task_set(name or options.task_set)


def make_prompts(config: PromptOptions, task_set: TaskSet | None = None) -> list[Prompt]:
    """The prompts the prompts group describes."""
    ts = task_set or resolve_task_set(config)
    return build_prompts(
        ts,
        mixture=parse_mixture(config.mixture) if config.mixture else None,
        n_prompts=config.n_prompts,
        examples_per_task=config.examples_per_task,
        seed=config.seed,
        separator=config.separator,
        # Whether inputs may repeat within a prompt is the task set's property (TaskSet.inputs_may_repeat).
    )


def make_model(config: ModelOptions) -> LoadedModel:
    return load_model(config.model, device=config.device, dtype=config.dtype)


def out_dir(config: OutputOptions, analysis: str, model: str = "", task_set: str = "") -> Path:
    """``--out``, else ``runs/<analysis>-<model>-<task set>`` (relative to the working directory)."""
    if config.out:
        return Path(config.out)
    name = Path(model).name if "/" in model else model
    return Path("runs") / "-".join(x for x in (analysis, name, task_set) if x)


def open_run(config: Any, analysis: str, model: LoadedModel) -> RunDir:
    """The run directory of ``analysis``, recording its config and the model's description."""
    path = out_dir(config, analysis, config.model, config.task_set)
    return RunDir(path, {"analysis": analysis, "config": asdict(config), "model": model.describe()},
                  overwrite=config.overwrite)
