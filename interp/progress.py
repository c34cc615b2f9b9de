"""Progress bars that pick the notebook or terminal flavour automatically."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def progress(iterable: Iterable[T], desc: str = "", disable: bool = False, **kwargs: Any) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar (``INTERP_NO_PROGRESS=1`` turns bars off everywhere)."""
    if disable or os.environ.get("INTERP_NO_PROGRESS") == "1":
        return iterable
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401  # tqdm.notebook needs it
            from tqdm.notebook import tqdm as nb_tqdm

            return nb_tqdm(iterable, desc=desc, **kwargs)
        except ImportError:
            pass
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, file=sys.stderr, dynamic_ncols=True, **kwargs)
