"""The on-disk activation cache: content-addressed, verified entries of selected activations.

Python::

    from interp.activations import get_activations
    acts = get_activations(model, prompts, ["resid_post"], positions="query")  # reused or computed
    acts["blocks.12.hook_resid_post"]  # [prompt, position, d_model]

    from interp.cache import open_entry
    acts = open_entry("1a2b3c4d")  # a stored entry by key (prefix), without loading a model

CLI: ``interp cache build|ls|verify|rm`` (see :mod:`interp_app.commands.cache`). Layout and guarantees:
:mod:`interp.cache.store`.
"""

from __future__ import annotations

import os
from pathlib import Path

from interp.cache.store import (
    CACHE_FORMAT,
    ENV_CACHE_DIR,
    CacheCorruptError,
    entry_key,
    find_entries,
    key_inputs,
    list_entries,
    load_entry,
    remove_entry,
    resolve_cache_dir,
    verify_entry,
)
from interp.errors import InterpError


def open_entry(key: str, cache_dir: str | os.PathLike[str] | None = None, verify: bool = True):  # noqa: ANN201
    """The :class:`~interp.activations.ActivationSet` stored under ``key`` (a unique prefix is enough)."""
    from interp.activations import ActivationSet, _positions_tensor

    cache = resolve_cache_dir(cache_dir)
    matches = [e for e in find_entries(cache, key) if e.state == "ok"]
    if len(matches) != 1:
        what = "no published entry" if not matches else f"{len(matches)} entries"
        raise InterpError(f"{what} with key {key!r} in {cache}: see `interp cache ls`")
    entry = load_entry(Path(matches[0].path), verify=verify)
    meta = {**entry.meta, "cache": {"key": entry.key, "path": str(entry.path), "status": "reused"}}
    return ActivationSet(entry.tensors, _positions_tensor(entry.positions), list(entry.meta.get("prompt_ids", [])),
                         entry.meta["role"], meta, status="reused", key=entry.key, path=entry.path)


__all__ = [
    "CACHE_FORMAT",
    "ENV_CACHE_DIR",
    "CacheCorruptError",
    "entry_key",
    "find_entries",
    "key_inputs",
    "list_entries",
    "load_entry",
    "open_entry",
    "remove_entry",
    "resolve_cache_dir",
    "verify_entry",
]
