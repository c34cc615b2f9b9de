"""Validation at the boundary: options and API arguments are checked once, where they enter.

Option dataclasses call :func:`check_options` from ``__post_init__``: every field is checked
against its annotation (``int`` is not ``bool``, floats are finite, ``X | None`` allows None,
``list[X]`` checks items) and against range rules in its field metadata:

* ``min`` / ``max`` — inclusive bounds; ``gt`` / ``lt`` — exclusive bounds;
* ``choices`` — the allowed values; ``nonempty`` — a string or list that must not be empty.

A class (or any base in its MRO) may add cross-field rules in a ``_validate(self)`` method; every
``_validate`` found in the MRO runs. Everything refused raises :class:`InterpError` with one line
that names the flag (``--num-beams``) and the fix.

:func:`refuse_if_too_big` refuses work whose estimated memory (or disk) cannot fit, before it is
tried — a hang or an out-of-memory kill is never the answer to a typo like ``--n-prompts 1e12``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import shutil
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from interp.errors import InterpError


def flag(name: str) -> str:
    """``num_beams`` -> ``--num-beams``: how a field is named in messages (CLI flag and Python name)."""
    return "--" + name.replace("_", "-")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(value: Any, name: str, min: int | None = None, max: int | None = None) -> int:  # noqa: A002
    """``value`` as an int within ``[min, max]`` (one-line InterpError otherwise)."""
    if not _is_int(value):
        raise InterpError(f"{flag(name)} must be a whole number, got {value!r}")
    _check_range(value, name, min, max)
    return int(value)


def check_float(value: Any, name: str, min: float | None = None, max: float | None = None,  # noqa: A002
                gt: float | None = None, lt: float | None = None) -> float:
    """``value`` as a finite float within the bounds (``gt``/``lt`` exclusive)."""
    if not _is_real(value):
        raise InterpError(f"{flag(name)} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InterpError(f"{flag(name)} must be a finite number, got {value!r}")
    _check_range(value, name, min, max, gt, lt)
    return float(value)


def _check_range(value: Any, name: str, lo: Any = None, hi: Any = None, gt: Any = None, lt: Any = None) -> None:
    if lo is not None and value < lo:
        raise InterpError(f"{flag(name)} must be at least {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise InterpError(f"{flag(name)} must be at most {hi}, got {value!r}")
    if gt is not None and not value > gt:
        raise InterpError(f"{flag(name)} must be greater than {gt}, got {value!r}")
    if lt is not None and not value < lt:
        raise InterpError(f"{flag(name)} must be less than {lt}, got {value!r}")


def check_choice(value: Any, name: str, choices: typing.Iterable[Any]) -> Any:
    options = list(choices)
    if value not in options:
        raise InterpError(f"unknown {flag(name)} {value!r}: use one of {', '.join(map(str, options))}")
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


_RULES = ("min", "max", "gt", "lt", "choices", "nonempty")


@cache
def _rules(cls: type) -> dict[str, dict[str, Any]]:
    """Range rules per field, inherited: a subclass that redefines a field (e.g. a new default for
    ``n_prompts``) keeps the rules its bases declared unless it states its own."""
    out: dict[str, dict[str, Any]] = {}
    for klass in reversed(cls.__mro__):
        for name, f in getattr(klass, "__dataclass_fields__", {}).items():
            rules = {k: f.metadata[k] for k in _RULES if k in f.metadata}
            out[name] = {**out.get(name, {}), **rules}
    return out


def _check_type(value: Any, tp: Any, name: str) -> None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                _check_type(value, arg, name)
                return
            except InterpError as exc:
                errors.append(str(exc))
        raise InterpError(errors[0] if errors else f"{flag(name)} has the wrong type: {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise InterpError(f"{flag(name)} must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        for v in value:
            _check_type(v, item, name)
        return
    if tp is bool:
        if not isinstance(value, bool):
            raise InterpError(f"{flag(name)} must be true or false, got {value!r}")
    elif tp is int:
        check_int(value, name)
    elif tp is float:
        check_float(value, name)
    elif tp is str:
        if not isinstance(value, str):
            raise InterpError(f"{flag(name)} must be a string, got {value!r}")


def check_options(obj: Any) -> None:
    """Check every field of dataclass ``obj`` (types and metadata rules), then every ``_validate``."""
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in hints:
            _check_type(value, hints[f.name], f.name)
        meta = _rules(type(obj)).get(f.name, {})
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                _check_range(v, f.name, meta.get("min"), meta.get("max"), meta.get("gt"), meta.get("lt"))
            if "choices" in meta:
                check_choice(v, f.name, meta["choices"])
        if meta.get("nonempty") and not value:
            raise InterpError(f"{flag(f.name)} must not be empty")
    for klass in reversed(type(obj).__mro__):
        rule = klass.__dict__.get("_validate")
        if rule is not None:
            rule(obj)


class Validated:
    """Mixin for option dataclasses: ``__post_init__`` runs :func:`check_options`."""

    def __post_init__(self) -> None:
        check_options(self)


# ------------------------------------------------------------------------------ sizes


def memory_bytes() -> int:
    """Physical memory of this machine (bytes); a large number when it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def refuse_if_too_big(estimate: float, what: str, fix: str, limit: float | None = None) -> None:
    """Refuse ``what`` when its estimated size (bytes) exceeds ``limit`` (default: half the memory)."""
    limit = memory_bytes() / 2 if limit is None else limit
    if estimate > limit:
        raise InterpError(f"{what} would need about {_human(estimate)}, more than the {_human(limit)} available: {fix}")


def free_disk_bytes(path: str | os.PathLike[str]) -> float:
    """Free bytes on the filesystem holding ``path`` (its nearest existing parent); inf if unknown."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return float(shutil.disk_usage(p).free)
    except OSError:
        return math.inf


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


# ------------------------------------------------------------------------------ devices

_DEVICE_HELP = "use cpu, cuda, cuda:N, mps or auto"


def check_device(device: Any, name: str = "device") -> str:
    """A device string torch understands and this machine has (``auto`` picks one later)."""
    import re

    if not isinstance(device, str) or not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", device.strip()):
        raise InterpError(f"unknown {flag(name)} {device!r}: {_DEVICE_HELP}")
    device = device.strip()
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InterpError(f"{flag(name)} {device} requested but CUDA is not available: use --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InterpError(f"{flag(name)} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise InterpError(f"{flag(name)} mps requested but MPS is not available: use --device cpu")
    return device
