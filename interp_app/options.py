"""Dataclass configs that are also the command line.

Each analysis declares one ``@dataclass`` config; :func:`add_dataclass_args` turns its fields
into ``--flags`` (help text from ``field(metadata={"help": ...})``) and :func:`from_args`
builds the config back, so the same object drives Python calls and ``interp run ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(underlying type, optional?) for annotations like ``int | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def add_dataclass_args(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """Add one ``--flag`` per dataclass field (underscores become dashes)."""
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.metadata.get("cli") is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, _optional = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        help_text = f.metadata.get("help", "")
        if default is not None and default != "" and tp is not bool:
            help_text += f" (default: {default})"
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp) or (str,)
            parser.add_argument(flag, dest=f.name, default=default, help=help_text + " (comma-separated)",
                                type=lambda s, item=item: [item(x.strip()) for x in s.split(",") if x.strip()])
        else:
            parser.add_argument(flag, dest=f.name, default=default, type=tp if tp in (int, float, str) else str,
                                help=help_text)


def from_args(config_cls: type[C], args: argparse.Namespace) -> C:
    """Build ``config_cls`` from parsed arguments (fields not on the command line keep defaults)."""
    kwargs = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}
    return config_cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
