"""One CLI command: its path (``("run", "superposition")``), help line, arguments and runner."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Command:
    """One CLI command: ``path`` is e.g. ``("run", "superposition")`` or ``("train",)``."""

    path: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
