"""The sweep file: a grid of models × task sets × mixtures × seeds × analyses, parsed and checked once.

A sweep file is TOML (read with :mod:`tomllib`) or JSON — data only, nothing is executed::

    models = ["tiny-llama", "tiny-qwen2"]       # model specs or local HF directories
    task_sets = ["ab", "country"]               # built-in, or registered by tasks_files
    tasks_files = []                            # .py / .json / .toml task-set files (relative to this file)
    seeds = [0, 1]                              # prompt seeds
    mixtures = ["uniform"]                      # or a table: task set -> list of mixtures
    device = "cpu"                              # cpu, cuda, cuda:N, auto
    dtype = "float32"
    threads = 1                                 # torch threads per worker (Ray sets OMP threads to 1)

    [prompts]                                   # the prompts group shared by every analysis
    n_prompts = 2
    examples_per_task = 4

    [analyses.superposition]                    # one table per analysis: its options
    n_boot = 200
    [analyses.logit_lens]
    [analyses.mixture_curve]                    # cells: model × task set × seed (the curve's d points are its mixtures)
    d = [0.25, 0.75]
    [analyses.scale]                            # cells: model × task set × seed (K = min..max tasks)

Every problem is one :class:`~interp.errors.InterpError` line naming the file, the key path and
the fix: ``sweep spec small.toml: analyses.superposition.num_beams: --num-beams must be at least 1, got 0``.

A :class:`Cell` is one run: (analysis, model, task set, mixture, seed) with the full options of the
analysis's ``interp run …`` config. Its id ends in a hash of those options, so a finished cell is
recognised however the grid around it changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.errors import InterpError
from interp.models import known_specs
from interp.prompts import check_mixture_values, parse_mixture
from interp.tasks import get_task_set
from interp_app.commands.logit_lens import LogitLensConfig
from interp_app.commands.mixture_curve import MixtureCurveConfig
from interp_app.commands.scale import ScaleConfig
from interp_app.commands.superposition import SuperpositionConfig
from interp_app.options import load_tasks_files

UNIFORM = "uniform"
TOP_KEYS = ("models", "task_sets", "tasks_files", "seeds", "mixtures", "device", "dtype", "threads", "num_gpus",
            "prompts", "analyses")
PROMPT_KEYS = ("n_prompts", "examples_per_task", "separator")
# Set by the grid (or the sweep), never by an analysis table.
GRID_FIELDS = ("model", "models", "compare", "labels", "device", "dtype", "task_set", "tasks_file", "seed", "seeds",
               "mixture", "out", "overwrite")


@dataclass(frozen=True)
class AnalysisKind:
    """How the sweep runs one analysis: its ``interp run …`` config and whether mixtures are a grid axis."""

    name: str
    config_cls: type
    uses_mixture: bool
    one_model_field: str = "model"  # "models" for configs that take a list


ANALYSES: dict[str, AnalysisKind] = {
    "superposition": AnalysisKind("superposition", SuperpositionConfig, True),
    "logit_lens": AnalysisKind("logit_lens", LogitLensConfig, True),
    "mixture_curve": AnalysisKind("mixture_curve", MixtureCurveConfig, False),
    "scale": AnalysisKind("scale", ScaleConfig, False, one_model_field="models"),
}


@dataclass(frozen=True)
class Cell:
    """One run of the grid. ``kwargs`` are the analysis config's fields (JSON-able), without ``out``."""

    cell_id: str
    analysis: str
    model: str
    task_set: str
    mixture: str
    seed: int
    kwargs: dict[str, Any] = field(hash=False, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        """The cell's grid coordinates: the leading columns of every row it contributes."""
        return {"cell_id": self.cell_id, "analysis": self.analysis, "model": self.model, "task_set": self.task_set,
                "mixture": self.mixture, "seed": self.seed}

    def config(self, out: Path) -> Any:
        """The analysis's ``interp run …`` config writing into ``out``.

        ``overwrite``: the cell's directory belongs to the sweep (its name holds the hash of these
        options), so rerunning the cell there is always allowed, also after the sweep moved.
        """
        return ANALYSES[self.analysis].config_cls(**{**self.kwargs, "out": str(out), "overwrite": True})

    def to_json(self) -> dict[str, Any]:
        return {**self.params, "kwargs": self.kwargs}


@dataclass
class SweepSpec:
    """A parsed, checked sweep file; :attr:`cells` lists every run in a fixed order."""

    source: str
    models: list[str]
    task_sets: list[str]
    tasks_files: list[str]
    seeds: list[int]
    mixtures: dict[str, list[str]]
    device: str
    dtype: str
    threads: int
    num_gpus: float
    prompts: dict[str, Any]
    analyses: dict[str, dict[str, Any]]
    cells: list[Cell]

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cells"}


# ------------------------------------------------------------------------------ parsing


def _fail(source: str, key: str, message: str) -> InterpError:
    where = f"{key}: " if key else ""
    return InterpError(f"sweep spec {source}: {where}{message}")


def _toml() -> Any:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, for Python 3.10
        except ModuleNotFoundError:
            raise InterpError("reading a TOML sweep file needs Python 3.11+ (or `pip install tomli`): "
                              "or write it as JSON") from None
    return tomllib


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a ``.toml`` or ``.json`` sweep file (one-line error when it cannot be read)."""
    path = Path(path)
    name = path.name
    if path.suffix not in (".toml", ".json"):
        raise InterpError(f"sweep spec {name}: use a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InterpError(f"sweep spec {path} does not exist: pass the path of a .toml or .json sweep file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InterpError(f"sweep spec {path} cannot be read ({type(exc).__name__}): check the file") from None
    try:
        data = _toml().loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise InterpError(f"sweep spec {name}: not valid {path.suffix[1:].upper()} ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise InterpError(f"sweep spec {name}: the top level must be a table of keys (models, task_sets, analyses, ...)")
    return data


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; relative ``tasks_files`` and model directories are taken from its folder."""
    path = Path(path)
    return parse_spec(read_spec_file(path), source=path.name, base=path.resolve().parent)


def _list_of(source: str, key: str, value: Any, kind: type, nonempty: bool = True) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(source, key, f"must be a list, e.g. {key.split('.')[-1]} = [...], got {value!r}")
    if nonempty and not value:
        raise _fail(source, key, "is empty: name at least one")
    for item in value:
        ok = isinstance(item, kind) and not (kind is int and isinstance(item, bool))
        if not ok:
            raise _fail(source, key, f"every item must be a {kind.__name__}, got {item!r}")
    if len(set(map(str, value))) != len(value):
        raise _fail(source, key, "names an item twice: give each once")
    return list(value)


def _unknown(source: str, prefix: str, data: dict[str, Any], allowed: tuple[str, ...] | list[str]) -> None:
    for key in data:
        if key not in allowed:
            raise _fail(source, f"{prefix}{key}", f"unknown key: use one of {', '.join(allowed)}")


def _check_model(source: str, spec: str, base: Path) -> str:
    if spec in known_specs():
        return spec
    for candidate in (base / spec, Path(spec).expanduser()):
        if candidate.is_dir():
            if not (candidate / "config.json").exists():
                raise _fail(source, "models", f"{spec!r} has no config.json: pass a Hugging Face model directory")
            return str(candidate.resolve())
    parts = spec.split("/")
    if len(parts) == 2 and all(parts) and not spec.startswith((".", "~")):
        return spec  # a hub id: fetched only when the cell runs (and refused offline, as by interp run)
    raise _fail(source, "models", f"unknown model {spec!r}: use one of {', '.join(known_specs())}, "
                                  "a local HF model directory or a hub id like org/name")


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:limit] or "x"


def _cell_id(analysis: str, model: str, task_set: str, mixture: str, seed: int, kwargs: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps({"analysis": analysis, **kwargs}, sort_keys=True, default=str).encode())
    return "-".join([_slug(analysis), _slug(Path(model).name), _slug(task_set), _slug(mixture), f"s{seed}",
                     digest.hexdigest()[:10]])


def parse_spec(data: dict[str, Any], source: str = "<spec>", base: Path | None = None) -> SweepSpec:
    """Check the raw mapping of a sweep file and expand it into cells."""
    base = base or Path.cwd()
    _unknown(source, "", data, TOP_KEYS)
    for required in ("models", "task_sets", "analyses"):
        if required not in data:
            raise _fail(source, required, "missing: every sweep names models, task_sets and [analyses.<name>] tables")
    models = [_check_model(source, m, base) for m in _list_of(source, "models", data["models"], str)]
    if len(set(models)) != len(models):
        raise _fail(source, "models", "names the same model twice: give each once")
    tasks_files = []
    for item in _list_of(source, "tasks_files", data.get("tasks_files", []), str, nonempty=False):
        target = base / item if not Path(item).is_absolute() else Path(item)
        if not target.is_file():
            raise _fail(source, "tasks_files", f"{item!r} does not exist (relative paths start at the sweep file's folder)")
        tasks_files.append(str(target.resolve()))
    try:
        load_tasks_files(tasks_files)
    except InterpError as exc:
        raise _fail(source, "tasks_files", str(exc)) from None
    task_sets = _list_of(source, "task_sets", data["task_sets"], str)
    for name in task_sets:
        try:
            get_task_set(name)
        except InterpError as exc:
            raise _fail(source, "task_sets", str(exc)) from None
    seeds = _list_of(source, "seeds", data.get("seeds", [0]), int)
    mixtures = _parse_mixtures(source, data.get("mixtures", [UNIFORM]), task_sets)
    common = _parse_common(source, data)
    prompts = data.get("prompts", {})
    if not isinstance(prompts, dict):
        raise _fail(source, "prompts", "must be a table ([prompts] with n_prompts, examples_per_task, separator)")
    _unknown(source, "prompts.", prompts, PROMPT_KEYS)
    analyses = data["analyses"]
    if not isinstance(analyses, dict) or not analyses:
        raise _fail(source, "analyses", f"must hold at least one [analyses.<name>] table: {', '.join(ANALYSES)}")
    _unknown(source, "analyses.", analyses, tuple(ANALYSES))
    for name, options in analyses.items():
        if not isinstance(options, dict):
            raise _fail(source, f"analyses.{name}", "must be a table of that analysis's options (may be empty)")
        names = [f.name for f in dataclasses.fields(ANALYSES[name].config_cls)
                 if f.name not in GRID_FIELDS and f.metadata.get("cli") is not False]
        for key in options:
            if key in GRID_FIELDS:
                raise _fail(source, f"analyses.{name}.{key}", "is set by the grid (models, task_sets, seeds, "
                                                              "mixtures, device, dtype): move it to the top level")
        _unknown(source, f"analyses.{name}.", options, names)
    spec = SweepSpec(source, models, task_sets, tasks_files, seeds, mixtures, common["device"], common["dtype"],
                     common["threads"], common["num_gpus"], dict(prompts), {k: dict(v) for k, v in analyses.items()}, [])
    spec.cells = _expand(spec)
    return spec


def _parse_common(source: str, data: dict[str, Any]) -> dict[str, Any]:
    device = data.get("device", "cpu")
    dtype = data.get("dtype", "float32")
    threads = data.get("threads", 1)
    for key, value in (("device", device), ("dtype", dtype)):
        if not isinstance(value, str):
            raise _fail(source, key, f"must be a string, got {value!r}")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _fail(source, "threads", f"must be a whole number of torch threads per worker (>= 1), got {threads!r}")
    default_gpus = 1 if device.startswith("cuda") else 0
    num_gpus = data.get("num_gpus", default_gpus)
    if not isinstance(num_gpus, int | float) or isinstance(num_gpus, bool) or num_gpus < 0:
        raise _fail(source, "num_gpus", f"must be a number of GPUs per model worker (>= 0, may be a fraction), got {num_gpus!r}")
    return {"device": device, "dtype": dtype, "threads": threads, "num_gpus": float(num_gpus)}


def _check_one_mixture(source: str, key: str, text: str, task_set: str) -> str:
    if text == UNIFORM:
        return text
    try:
        mix = parse_mixture(text)
        check_mixture_values(mix)
        ts = get_task_set(task_set)
        for task in mix:
            ts.task(task)
    except InterpError as exc:
        raise _fail(source, key, f"{text!r} for task set {task_set!r}: {exc}") from None
    return text


def _parse_mixtures(source: str, value: Any, task_sets: list[str]) -> dict[str, list[str]]:
    """``mixtures``: a list for every task set, or a table task set -> list (unlisted sets: uniform)."""
    if isinstance(value, list):
        items = _list_of(source, "mixtures", value, str)
        return {ts: [_check_one_mixture(source, "mixtures", m, ts) for m in items] for ts in task_sets}
    if isinstance(value, dict):
        _unknown(source, "mixtures.", value, task_sets)
        return {ts: [_check_one_mixture(source, f"mixtures.{ts}", m, ts)
                     for m in _list_of(source, f"mixtures.{ts}", value.get(ts, [UNIFORM]), str)] for ts in task_sets}
    raise _fail(source, "mixtures", f"must be a list (e.g. [\"uniform\", \"a=0.5,b=0.5\"]) or a table per task set, got {value!r}")


def _expand(spec: SweepSpec) -> list[Cell]:
    """Every cell, in a fixed order: analysis, model, task set, mixture, seed (as listed in the file)."""
    cells: list[Cell] = []
    for name, options in spec.analyses.items():
        kind = ANALYSES[name]
        fields = {f.name for f in dataclasses.fields(kind.config_cls)}
        for model in spec.models:
            for task_set in spec.task_sets:
                mixtures = spec.mixtures[task_set] if kind.uses_mixture else ["curve" if name == "mixture_curve" else "K"]
                for mixture in mixtures:
                    for seed in spec.seeds:
                        kwargs: dict[str, Any] = {kind.one_model_field: [model] if kind.one_model_field == "models" else model,
                                                  "device": spec.device, "dtype": spec.dtype, "task_set": task_set,
                                                  "tasks_file": list(spec.tasks_files), "seed": seed}
                        kwargs.update({k: v for k, v in spec.prompts.items() if k in fields})
                        if kind.uses_mixture:
                            kwargs["mixture"] = "" if mixture == UNIFORM else mixture
                        kwargs.update(options)
                        _validated(spec.source, name, options, lambda kw=kwargs, cls=kind.config_cls: cls(**kw))
                        # The defaults the config filled in are part of the cell (and of its hash).
                        full = dataclasses.asdict(kind.config_cls(**kwargs))
                        for drop in ("out", "overwrite"):
                            full.pop(drop, None)
                        cell_id = _cell_id(name, model, task_set, mixture, seed, full)
                        cells.append(Cell(cell_id, name, model, task_set, mixture, seed, full))
    return cells


def _validated(source: str, analysis: str, options: dict[str, Any], build: Callable[[], Any]) -> Any:
    """``build()``; its one-line error prefixed with the key path the user wrote (not the CLI flag)."""
    key = f"analyses.{analysis}"
    try:
        return build()
    except InterpError as exc:
        message = str(exc)
        match = re.search(r"--([a-z0-9-]+)", message)
        if match:
            name = match.group(1).replace("-", "_")
            key = f"prompts.{name}" if name in PROMPT_KEYS and name not in options else f"{key}.{name}"
        raise _fail(source, key, message) from None
    except TypeError as exc:
        raise _fail(source, key, f"bad option ({exc})") from None
