"""Progress: bars on a terminal and in Jupyter, one log line per stage everywhere else.

On a terminal (stderr is a TTY) a tqdm bar redraws in place; in Jupyter / JupyterLab the
notebook widget is used. When stderr is not a terminal (CI, ``make run > log``, a pipe) nested
bars would fill the log with carriage-return redraws, so each stage instead logs one line when it
ends (``interp.progress`` logger, INFO: ``<stage>: 12/12 in 3.4s``), which the app prints to
stderr. ``INTERP_NO_PROGRESS=1`` (user configuration) turns both off.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_log = logging.getLogger(__name__)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def _is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class StageLines(Iterable[T]):
    """Iterate ``iterable`` and log one line when the stage ends (exhausted, left early, or closed)."""

    def __init__(self, iterable: Iterable[T], desc: str = "", total: int | None = None, **_: Any) -> None:
        self.iterable = iterable
        self.desc = desc or "progress"
        try:
            self.total = total if total is not None else len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
        self.n = 0
        self._start = time.perf_counter()
        self._logged = False

    def __iter__(self) -> Iterator[T]:
        self._start = time.perf_counter()
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("unknown length")
        return self.total

    def close(self) -> None:
        if self._logged:
            return
        self._logged = True
        of = f"/{self.total}" if self.total is not None else ""
        _log.info(f"{self.desc}: {self.n}{of} in {time.perf_counter() - self._start:.1f}s")


def progress(iterable: Iterable[T], desc: str = "", disable: bool = False, **kwargs: Any) -> Iterable[T]:
    """Wrap ``iterable`` in a progress display (see the module docstring for which one)."""
    if disable or os.environ.get("INTERP_NO_PROGRESS") == "1":
        return iterable
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401  # tqdm.notebook needs it
            from tqdm.notebook import tqdm as nb_tqdm

            return nb_tqdm(iterable, desc=desc, **kwargs)
        except ImportError:
            pass
    if not _is_terminal():
        return StageLines(iterable, desc=desc, **kwargs)
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, file=sys.stderr, dynamic_ncols=True, **kwargs)
