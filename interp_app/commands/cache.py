"""``interp cache build|ls|verify|rm``: the activation cache from the command line.

::

    interp cache build --model smollm2-135m --task-set country --n-prompts 20 \\
        --hooks resid_post,attn.hook_z --positions query
    interp cache ls
    interp cache verify [KEY ...] [--repair]
    interp cache rm KEY [KEY ...] | --older-than 7d | --partial | --all  [--dry-run]

Every command takes ``--cache-dir`` (default: ``$INTERP_CACHE_DIR``, else ``cached_activations/``
at the repo root, else ``$INTERP_HOME/activations``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from interp.activations import POSITION_ROLES, get_activations
from interp.cache.store import (
    CacheCorruptError,
    EntryInfo,
    entry_age_seconds,
    find_entries,
    list_entries,
    parse_age,
    read_meta,
    read_prompt_records,
    remove_entry,
    resolve_cache_dir,
    verify_entry,
)
from interp.dtypes import parse_dtype
from interp.errors import InterpError
from interp.models import known_specs, load_model
from interp.prompts import Prompt
from interp_app.command import Command
from interp_app.options import (
    CacheOptions,
    ModelOptions,
    PromptOptions,
    add_dataclass_args,
    from_args,
    make_model,
    make_prompts,
)


@dataclass
class CacheDirOptions:
    title: ClassVar[str] = CacheOptions.title
    cache_dir: str = field(default="", metadata={"help": "activation cache directory (default: $INTERP_CACHE_DIR, else "
                                                         "cached_activations/ at the repo root)"})


@dataclass
class CacheBuildConfig(ModelOptions, PromptOptions, CacheDirOptions):
    hooks: list[str] = field(default_factory=lambda: ["resid_post"],
                             metadata={"help": "hooks to keep, TransformerLens names: resid_post, attn.hook_z, "
                                               "attn.hook_pattern, mlp_out, or full names"})
    layers: list[int] | None = field(default=None, metadata={"help": "layers to keep (default: all)"})
    positions: str = field(default="query", metadata={"help": "positions by role: query, separators, last, all"})
    act_dtype: str = field(default="float32", metadata={"help": "stored dtype: float32, bfloat16 or float16"})
    batch_size: int = field(default=8, metadata={"help": "prompts per stored shard (a killed build resumes "
                                                         "from its completed shards)"})
    repair: bool = field(default=False, metadata={"help": "recompute the entry if it fails its checksums"})


def _add_cache_dir(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, CacheDirOptions)


def build(config: CacheBuildConfig, show_progress: bool = True,
          on_shard: Callable[[int], None] | None = None):  # noqa: ANN201 - ActivationSet
    """Build (or reuse) the entry for ``config``; returns the ActivationSet (``on_shard``: see get_activations)."""
    if config.positions not in POSITION_ROLES:
        raise InterpError(f"unknown position role {config.positions!r}: use one of {', '.join(POSITION_ROLES)}")
    if not config.hooks:
        raise InterpError("no hooks given: pass e.g. --hooks resid_post,attn.hook_z")
    dtype = parse_dtype(config.act_dtype, "activation dtype")
    prompts = make_prompts(config)
    model = make_model(config)
    recipe = {k: v for k, v in asdict(config).items() if k not in ("cache_dir", "repair", "tasks_file")}
    return get_activations(model, prompts, config.hooks, config.layers, config.positions, dtype,
                           cache_dir=config.cache_dir or None, show_progress=show_progress,
                           batch_size=config.batch_size, repair=config.repair, recipe=recipe, on_shard=on_shard)


def _run_build(args: argparse.Namespace) -> int:
    config = from_args(CacheBuildConfig, args)
    acts = build(config)
    size = sum(f.stat().st_size for f in Path(acts.path).iterdir() if f.is_file())
    n = max(len(acts), 1)
    print(f"{acts.status} {acts.key}")
    print(f"path: {acts.path}")
    print(f"{len(acts.keys())} tensors, e.g. {acts.keys()[0]} {list(acts[acts.keys()[0]].shape)} "
          f"[prompt, position, ...]; {size / 1e6:.2f} MB on disk ({size / 1e3 / n:.1f} KB per prompt)")
    return 0


def _table(entries: list[EntryInfo]) -> str:
    return pd.DataFrame([e.summary for e in entries]).to_string(index=False)


def _run_ls(args: argparse.Namespace) -> int:
    cache = resolve_cache_dir(args.cache_dir or None)
    entries = list_entries(cache)
    if args.json:
        print(json.dumps([{**e.summary, "key": e.key, "path": str(e.path), "bytes": e.bytes} for e in entries],
                         indent=1))
        return 0
    if not entries:
        print(f"no entries in {cache}")
        return 0
    print(_table(entries))
    total = sum(e.bytes for e in entries)
    print(f"{len(entries)} entries, {total / 1e6:.2f} MB in {cache}")
    return 0


def _select(cache: Path, keys: list[str]) -> list[EntryInfo]:
    selected: dict[str, EntryInfo] = {}
    for key in keys:
        matches = find_entries(cache, key)
        if not matches:
            raise InterpError(f"no entry with key {key!r} in {cache}: see `interp cache ls`")
        if len({m.key for m in matches}) > 1:
            raise InterpError(f"key prefix {key!r} matches {len(matches)} entries: give more characters")
        for m in matches:
            selected[str(m.path)] = m
    return list(selected.values())


def repair_source(model_info: object) -> str | None:
    """What a repair may load: a registered model spec, or the absolute local directory the entry recorded
    (``model.local_dir``) when it exists. Never a hub id: a cache file must not make the tool fetch a model."""
    if not isinstance(model_info, dict):
        return None
    name = model_info.get("name")
    if isinstance(name, str) and name in known_specs():
        return name
    local = model_info.get("local_dir")
    if isinstance(local, str) and Path(local).is_absolute() and Path(local).is_dir() \
            and (Path(local) / "config.json").is_file():
        return local
    return None


def _repair(entry: EntryInfo, cache: Path, problems: list[str]) -> str:
    """Recompute a damaged entry from its stored prompts and model; returns a one-line outcome."""
    try:
        if any("prompts.jsonl" in p or "meta.json" in p for p in problems):
            raise ValueError("the recipe is damaged")
        meta = read_meta(entry.path)
        records = read_prompt_records(entry.path)
        prompts = [Prompt.from_dict(r["prompt"]) for r in records]
    except (CacheCorruptError, OSError, ValueError, KeyError, TypeError) as exc:
        return (f"cannot repair {entry.key[:12]} (its meta.json or prompts.jsonl is damaged: {exc.__class__.__name__}): "
                f"remove it with `interp cache rm {entry.key[:12]}` and rebuild it with `interp cache build`")
    model_info = meta["model"]
    source = repair_source(model_info)
    if source is None:
        return (f"cannot repair {entry.key[:12]}: its model {str(model_info.get('name'))[:60]!r} is neither a registered "
                "model spec nor a local directory recorded in the entry (a hub id in a cache file is never fetched); "
                f"remove it with `interp cache rm {entry.key[:12]}` and rebuild it with `interp cache build --model ...`")
    model = load_model(source, dtype=model_info.get("dtype", "float32"))
    if model.fingerprint != model_info["fingerprint"]:
        return (f"cannot repair {entry.key[:12]}: model {model_info['name']!r} now has different weights; "
                f"remove the entry with `interp cache rm {entry.key[:12]}`")
    acts = get_activations(model, prompts, meta["hooks"], None, meta["role"], parse_dtype(meta["dtype"]),
                           cache_dir=cache, batch_size=int(meta.get("batch_size", 8)), repair=True,
                           recipe=meta.get("recipe"))
    if acts.key != entry.key:
        return f"repaired entry came out under a different key {acts.key[:12]} (tokenizer changed?)"
    return f"repaired {entry.key[:12]}: recomputed and verified"


def _run_verify(args: argparse.Namespace) -> int:
    cache = resolve_cache_dir(args.cache_dir or None)
    entries = _select(cache, args.keys) if args.keys else list_entries(cache)
    bad = 0
    for entry in entries:
        if entry.state == "partial":
            print(f"partial {entry.key[:12]}: an unfinished build; rerun it to resume, or `interp cache rm "
                  f"--partial`")
            continue
        problems = verify_entry(entry.path)
        if not problems:
            print(f"ok      {entry.key[:12]}  {len(read_meta(entry.path)['files'])} files, {entry.bytes / 1e6:.2f} MB")
            continue
        print(f"BAD     {entry.key[:12]}: {'; '.join(problems)}")
        if args.repair:
            outcome = _repair(entry, cache, problems)
            print(f"        {outcome}")
            if outcome.startswith("repaired") and not verify_entry(entry.path):
                continue
        bad += 1
    n_ok = sum(1 for e in entries if e.state == "ok")
    print(f"{n_ok - bad} of {n_ok} entries verified in {cache}" + (f"; {bad} bad" if bad else ""))
    if bad and not args.repair:
        print("rerun with --repair to recompute bad entries, or remove them with `interp cache rm KEY`",
              file=sys.stderr)
    return 1 if bad else 0


def _run_rm(args: argparse.Namespace) -> int:
    cache = resolve_cache_dir(args.cache_dir or None)
    if not (args.keys or args.older_than or args.partial or args.all):
        raise InterpError("say what to remove: KEY ..., --older-than AGE (e.g. 7d), --partial or --all")
    entries = list_entries(cache)
    chosen: dict[str, EntryInfo] = {}
    if args.keys:
        chosen.update({str(e.path): e for e in _select(cache, args.keys)})
    if args.older_than:
        age = parse_age(args.older_than)
        chosen.update({str(e.path): e for e in entries if entry_age_seconds(e) > age})
    if args.partial:
        chosen.update({str(e.path): e for e in entries if e.state == "partial"})
    if args.all:
        chosen.update({str(e.path): e for e in entries})
    freed = 0
    for entry in sorted(chosen.values(), key=lambda e: e.created):
        label = f"{entry.key[:12]}{' (partial)' if entry.state == 'partial' else ''}"
        if args.dry_run:
            print(f"would remove {label} ({entry.bytes / 1e6:.2f} MB)")
        elif remove_entry(entry, cache):
            freed += entry.bytes
            print(f"removed {label} ({entry.bytes / 1e6:.2f} MB)")
        else:
            print(f"skipped {label}: a build is writing it now")
    if not chosen:
        print(f"nothing to remove in {cache}")
    elif not args.dry_run:
        print(f"freed {freed / 1e6:.2f} MB in {cache}")
    return 0


def _ls_args(p: argparse.ArgumentParser) -> None:
    _add_cache_dir(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("keys", nargs="*", metavar="KEY", help="entries to verify (key prefixes; default: all)")
    _add_cache_dir(p)
    p.add_argument("--repair", action="store_true", help="recompute bad entries from their stored prompts")


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("keys", nargs="*", metavar="KEY", help="entries to remove (key prefixes from `interp cache ls`)")
    _add_cache_dir(p)
    p.add_argument("--older-than", default="", help="remove entries created longer ago than AGE (30m, 12h, 7d, 2w)")
    p.add_argument("--partial", action="store_true", help="remove unfinished (killed) builds")
    p.add_argument("--all", action="store_true", help="remove every entry")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")


COMMANDS = [
    Command(("cache", "build"), "compute (or reuse) cached activations for a prompt set",
            lambda p: add_dataclass_args(p, CacheBuildConfig), _run_build),
    Command(("cache", "ls"), "list cache entries: key, model, prompts, hooks, positions, size, created",
            _ls_args, _run_ls),
    Command(("cache", "verify"), "re-hash every file of every entry and report bad ones", _verify_args, _run_verify),
    Command(("cache", "rm"), "remove entries by key, age, or unfinished builds", _rm_args, _run_rm),
]
