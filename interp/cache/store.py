"""The on-disk activation store: content-addressed, checksummed, crash-safe entries.

Layout of a cache directory (default ``cached_activations/`` at the repo root, see
:func:`resolve_cache_dir`)::

    cached_activations/
      <key>/                      one published entry (never modified after publishing)
        meta.json                 key inputs, model, hooks, role, shapes, prompt ids, task labels,
                                  shares, created, created-by versions, sha256 of every file,
                                  and a checksum of meta.json itself
        prompts.jsonl             one line per prompt: the Prompt, its token ids, its positions
        batch-00000.safetensors   the selected activations of prompts [0, batch_size)
        batch-00001.safetensors   ...
      <key>.partial/              a build in progress (or one that was killed): completed shards
        progress.json             are listed with their sha256, so a rerun resumes from them
      .locks/<key>.lock           one lock per key: two builders of the same entry never collide

``<key>`` is the sha256 of the *key inputs* (model fingerprint and dtype, the exact token ids
and positions of every prompt, the full hook names, the position role, the stored dtype and
:data:`CACHE_FORMAT`), so a different model, prompt set or selection can never be served.

Guarantees: every file is written to a temporary name in the same directory, fsynced and
renamed; an entry is built under ``<key>.partial/`` and published by one atomic directory
rename, so a reader never sees half an entry. Every load re-hashes the entry's files: a
corrupted or truncated file raises :class:`CacheCorruptError` naming the entry (or is
recomputed with ``repair=True``), never silently used. Disk-full and permission errors surface
as one :class:`~interp.errors.InterpError` line. Only safetensors and JSON are ever written.

``get_or_build(..., on_shard=f)`` calls ``f(n_written)`` after every published shard (the
reliability tests kill or slow a builder there; no environment variable changes a build).
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import Tensor

from interp.dtypes import dtype_name, parse_dtype  # noqa: F401  (re-exported: the cache's dtype names)
from interp.errors import InterpError
from interp.io import atomic_write_bytes as _atomic_write_bytes
from interp.io import fsync_dir
from interp.versions import versions

# Bump whenever the layout or the meaning of stored tensors changes: old entries stop matching.
CACHE_FORMAT = 1
ENV_CACHE_DIR = "INTERP_CACHE_DIR"
PROJECT_NAME = "interp-superposition"
KEY_RE = re.compile(r"^[0-9a-f]{64}$")
SHARD_FMT = "batch-{:05d}.safetensors"
SHARD_RE = re.compile(r"^batch-\d{5}\.safetensors$")
# The only file names an entry may hold (besides shards); nothing in a cache file can name another path.
ENTRY_FILES = ("prompts.jsonl", "meta.json")


def is_entry_file_name(name: Any) -> bool:
    """True for the names the format defines: ``batch-NNNNN.safetensors``, ``prompts.jsonl``, ``meta.json``."""
    return isinstance(name, str) and (name in ENTRY_FILES or bool(SHARD_RE.match(name)))


def entry_file(entry: Path, name: Any) -> Path:
    """``entry / name`` for a name the format defines, as a regular file (not a symlink, checked with
    ``lstat``) inside ``entry``; anything else is a :class:`CacheCorruptError`."""
    if not is_entry_file_name(name):
        raise CacheCorruptError(f"activation cache entry {Path(entry).name[:12]} names a file outside its format "
                                f"({str(name)[:60]!r}): remove it with `interp cache rm`")
    path = Path(entry) / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise CacheCorruptError(f"activation cache entry {Path(entry).name[:12]}: {name} is a symlink or not a "
                                "regular file: remove the entry with `interp cache rm`")
    return path


def _file_problem(entry: Path, name: Any) -> str | None:
    """Why ``name`` is not a safe file of ``entry`` (None when it is one)."""
    if not is_entry_file_name(name):
        return f"meta.json names a file outside the format ({str(name)[:60]!r})"
    try:
        st = os.lstat(Path(entry) / name)
    except FileNotFoundError:
        return f"{name} is missing"
    except OSError as exc:
        return f"{name} is unreadable ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"{name} is a symlink (entries hold regular files only)"
    if not stat.S_ISREG(st.st_mode):
        return f"{name} is not a regular file"
    return None


def _is_real_dir(path: Path) -> bool:
    """A directory that is not a symlink (``lstat``)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
_CHUNK = 1 << 20


class CacheCorruptError(InterpError):
    """A cache entry whose files do not match their recorded checksums."""


# --------------------------------------------------------------------------------------------
# Locations and keys
# --------------------------------------------------------------------------------------------


def _checkout_root() -> Path | None:
    """The repo root when this package runs from a checkout (pyproject.toml names the project)."""
    root = Path(__file__).resolve().parents[2]
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(rf'^name\s*=\s*"{PROJECT_NAME}"', text, re.M) else None


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` > ``$INTERP_CACHE_DIR`` > ``<repo root>/cached_activations`` > ``$INTERP_HOME/activations``."""
    chosen = cache_dir or os.environ.get(ENV_CACHE_DIR)
    if chosen:
        path = Path(chosen).expanduser()
        if path.exists() and not path.is_dir():
            raise InterpError(f"cache directory {path} is a file: pass a directory to --cache-dir "
                              f"(or set {ENV_CACHE_DIR} to one)")
        return path
    root = _checkout_root()
    if root is not None:
        return root / "cached_activations"
    from interp.home import interp_home

    return interp_home() / "activations"


def canonical_json(obj: Any) -> bytes:
    """The one byte string a JSON value hashes as (sorted keys, no whitespace, ASCII)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def key_inputs(
    fingerprint: str,
    model_dtype: str,
    token_ids: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    hooks: Sequence[str],
    role: str,
    dtype: str,
    format_version: int = CACHE_FORMAT,
) -> dict[str, Any]:
    """Everything an entry's content depends on, in a JSON-able form (token ids are hashed)."""
    return {
        "format": int(format_version),
        "model_fingerprint": fingerprint,
        "model_dtype": model_dtype,
        "n_prompts": len(token_ids),
        "tokens_sha256": sha256_bytes(canonical_json([list(map(int, t)) for t in token_ids])),
        "positions_sha256": sha256_bytes(canonical_json([list(map(int, p)) for p in positions])),
        "hooks": list(hooks),
        "role": role,
        "dtype": dtype,
    }


def entry_key(inputs: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of :func:`key_inputs` (stable across processes and machines)."""
    return sha256_bytes(canonical_json(inputs))


# --------------------------------------------------------------------------------------------
# Atomic file writes; OSErrors become one clear line
# --------------------------------------------------------------------------------------------


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsynced, and a rename."""
    _atomic_write_bytes(path, data, durable=True)


def _os_error_line(exc: OSError, cache_dir: Path) -> InterpError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        hint = "free disk space or point --cache-dir / INTERP_CACHE_DIR at a larger disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "fix the permissions or point --cache-dir / INTERP_CACHE_DIR at a writable directory"
    else:
        hint = "check the cache directory or choose another with --cache-dir / INTERP_CACHE_DIR"
    where = f" ({exc.filename})" if exc.filename else ""
    return InterpError(f"cannot write the activation cache in {cache_dir}: {reason}{where}; {hint}")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _versions() -> dict[str, str]:
    found = versions(("interp-superposition", "torch", "transformer_lens", "transformers", "safetensors"))
    return {"python": found.pop("python"), "cache_format": str(CACHE_FORMAT), **found}


# --------------------------------------------------------------------------------------------
# Reading and verifying entries
# --------------------------------------------------------------------------------------------


def _meta_checksum(meta: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json({k: v for k, v in meta.items() if k != "checksum"}))


def _meta_or_problem(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if os.path.islink(path):
        return None, "the entry directory is a symlink"
    problem = _file_problem(path, "meta.json")
    if problem is not None and problem != "meta.json is missing":
        return None, problem
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "meta.json is missing"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return None, f"meta.json is unreadable ({exc.__class__.__name__})"
    if not isinstance(meta, dict) or meta.get("checksum") != _meta_checksum(meta):
        return None, "meta.json fails its checksum"
    files = meta.get("files")
    if not isinstance(files, dict) or "prompts.jsonl" not in files:
        return None, "meta.json lists no files"
    bad = [n for n in files if not is_entry_file_name(n) or n == "meta.json"]
    if bad:
        return None, f"meta.json names a file outside the format ({str(bad[0])[:60]!r})"
    return meta, None


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json of entry directory ``path`` (raises CacheCorruptError if unreadable or altered)."""
    meta, problem = _meta_or_problem(path)
    if meta is None:
        raise corrupt_error(path, [str(problem)])
    return meta


def verify_entry(path: Path) -> list[str]:
    """Re-hash every file of a published entry; the list of problems (empty when the entry is sound)."""
    meta, problem = _meta_or_problem(path)
    if meta is None:
        return [str(problem)]
    problems: list[str] = []
    if entry_key(meta.get("key_inputs", {})) != path.name:
        problems.append("key inputs in meta.json do not hash to the entry's name")
    for name, info in meta.get("files", {}).items():
        file = path / name
        problem = _file_problem(path, name)
        if problem is not None:
            problems.append(problem)
            continue
        if not isinstance(info, dict):
            problems.append(f"meta.json's record of {name} is damaged")
            continue
        size = file.stat().st_size
        if size != info.get("bytes"):
            problems.append(f"{name} is {size} bytes, expected {info.get('bytes')} (truncated?)")
        elif sha256_file(file) != info.get("sha256"):
            problems.append(f"{name} fails its sha256 checksum")
    if not problems:  # prompts.jsonl is sound: check that it matches the key
        try:
            records = read_prompt_records(path)
            ki = meta["key_inputs"]
            tokens = sha256_bytes(canonical_json([r["token_ids"] for r in records]))
            positions = sha256_bytes(canonical_json([r["positions"] for r in records]))
            if tokens != ki["tokens_sha256"] or positions != ki["positions_sha256"]:
                problems.append("prompts.jsonl token ids or positions do not match the key")
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"prompts.jsonl unreadable ({exc.__class__.__name__})")
    return problems


def corrupt_error(path: Path, problems: list[str]) -> CacheCorruptError:
    return CacheCorruptError(
        f"activation cache entry {path.name[:12]} in {path.parent} is corrupted ({problems[0]}): "
        "run `interp cache verify` for details, or recompute it with --repair (repair=True)"
    )


def read_prompt_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in entry_file(path, "prompts.jsonl").read_text(encoding="utf-8").splitlines()]


def _pad_cat(chunks: list[Tensor]) -> Tensor:
    """Concatenate along axis 0, zero-padding the other axes to the largest size."""
    if all(c.shape[1:] == chunks[0].shape[1:] for c in chunks):
        return torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    shape = [max(c.shape[d] for c in chunks) for d in range(1, chunks[0].dim())]
    out = torch.zeros((sum(c.shape[0] for c in chunks), *shape), dtype=chunks[0].dtype)
    start = 0
    for c in chunks:
        out[(slice(start, start + c.shape[0]), *[slice(0, s) for s in c.shape[1:]])] = c
        start += c.shape[0]
    return out


@dataclass
class LoadedEntry:
    """The tensors and metadata of one published entry."""

    key: str
    path: Path
    tensors: dict[str, Tensor]
    positions: list[list[int]]
    meta: dict[str, Any]
    records: list[dict[str, Any]]


def load_entry(path: Path, verify: bool = True) -> LoadedEntry:
    """Load a published entry (re-hashing its files first unless ``verify=False``)."""
    path = Path(path)
    if verify:
        problems = verify_entry(path)
        if problems:
            raise corrupt_error(path, problems)
    meta = read_meta(path)
    shards = sorted(n for n in meta["files"] if SHARD_RE.match(n))
    per_hook: dict[str, list[Tensor]] = {h: [] for h in meta["hooks"]}
    try:
        for shard in shards:
            tensors = load_file(entry_file(path, shard))
            for h in per_hook:
                per_hook[h].append(tensors[h])
        records = read_prompt_records(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:  # only reachable with verify=False
        raise corrupt_error(path, [f"{exc.__class__.__name__} while reading"]) from None
    tensors = {h: _pad_cat(chunks) for h, chunks in per_hook.items()}
    return LoadedEntry(path.name, path, tensors, [r["positions"] for r in records], meta, records)


# --------------------------------------------------------------------------------------------
# Building entries
# --------------------------------------------------------------------------------------------


def _lock(cache_dir: Path, key: str) -> FileLock:
    locks = cache_dir / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{key}.lock"))


def _load_progress(partial: Path, key: str, batch_size: int, n_prompts: int) -> dict[str, Any]:
    """Completed shards of a killed build whose checksums still verify (others are dropped)."""
    fresh = {"key": key, "batch_size": batch_size, "n_prompts": n_prompts, "shards": {}}
    try:
        progress = json.loads((partial / "progress.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fresh
    if not isinstance(progress, dict) or any(progress.get(k) != fresh[k] for k in ("key", "batch_size", "n_prompts")):
        return fresh
    kept = {}
    shards = progress.get("shards", {})
    for name, info in (shards.items() if isinstance(shards, dict) else []):
        if not SHARD_RE.match(str(name)) or _file_problem(partial, name) is not None or not isinstance(info, dict):
            continue  # only shard names the format defines, as regular files inside this directory
        file = partial / name
        if file.stat().st_size == info.get("bytes") and sha256_file(file) == info.get("sha256"):
            kept[name] = info
    fresh["shards"] = kept
    return fresh


BatchFn = Callable[[int, int], tuple[dict[str, Tensor], list[list[int]]]]


@dataclass
class BuildResult:
    status: str  # "reused" or "computed"
    entry: LoadedEntry
    resumed_batches: int = 0


def _shards(n_prompts: int, batch_size: int) -> Iterator[tuple[int, int, int]]:
    for i, start in enumerate(range(0, n_prompts, batch_size)):
        yield i, start, min(start + batch_size, n_prompts)


def get_or_build(
    cache_dir: Path,
    inputs: dict[str, Any],
    records: list[dict[str, Any]],
    meta_extra: dict[str, Any],
    compute_batch: BatchFn,
    batch_size: int = 8,
    repair: bool = False,
    on_wait: Callable[[str], None] | None = None,
    progress_wrap: Callable[[Iterator[Any], int], Iterator[Any]] | None = None,
    on_shard: Callable[[int], None] | None = None,
) -> BuildResult:
    """Reuse the verified entry for ``inputs`` or build it shard by shard (resuming a killed build).

    ``records`` are the prompts.jsonl lines (``prompt``, ``token_ids``, ``positions``);
    ``compute_batch(start, stop)`` returns ``({hook: [stop-start, ...]}, positions)`` for those prompts.
    ``on_shard(n)`` is called after the ``n``-th shard of this build is written.
    """
    if batch_size < 1:
        raise InterpError(f"batch size must be at least 1, got {batch_size}")
    key = entry_key(inputs)
    cache_dir = Path(cache_dir)
    final = cache_dir / key
    if os.path.lexists(final) and not _is_real_dir(final):
        raise InterpError(f"{final} is a symlink or a file, not a cache entry: remove it")
    if final.is_dir() and not repair:
        return BuildResult("reused", load_entry(final))  # published entries are immutable: no lock needed
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock(cache_dir, key)
        try:
            lock.acquire(timeout=0.05)
        except Timeout:
            if on_wait:
                on_wait(key)
            lock.acquire()
    except OSError as exc:
        raise _os_error_line(exc, cache_dir) from None
    try:
        if final.is_dir():
            problems = verify_entry(final)
            if not problems:
                return BuildResult("reused", load_entry(final, verify=False))
            if not repair:
                raise corrupt_error(final, problems)
            _remove_tree(final, cache_dir)
        return _build_locked(cache_dir, key, inputs, records, meta_extra, compute_batch, batch_size, progress_wrap,
                             on_shard)
    except OSError as exc:
        raise _os_error_line(exc, cache_dir) from None
    finally:
        lock.release()


def _build_locked(
    cache_dir: Path,
    key: str,
    inputs: dict[str, Any],
    records: list[dict[str, Any]],
    meta_extra: dict[str, Any],
    compute_batch: BatchFn,
    batch_size: int,
    progress_wrap: Callable[[Iterator[Any], int], Iterator[Any]] | None,
    on_shard: Callable[[int], None] | None = None,
) -> BuildResult:
    n = len(records)
    partial = cache_dir / f"{key}.partial"
    if os.path.lexists(partial) and not _is_real_dir(partial):
        raise InterpError(f"{partial} is a symlink or a file, not a build directory: remove it")
    partial.mkdir(exist_ok=True)
    progress = _load_progress(partial, key, batch_size, n)
    done = dict(progress["shards"])
    for leftover in partial.iterdir():  # half-written temporaries and unverified shards of a killed run
        if leftover.name not in done and leftover.name != "progress.json":
            if _is_real_dir(leftover):
                shutil.rmtree(leftover)
            else:
                leftover.unlink()  # a symlink is removed itself, never followed
    resumed = len(done)
    shapes: dict[str, list[int]] = {}
    for info in done.values():
        for h, s in info["shapes"].items():
            shapes[h] = [max(a, b) for a, b in zip(shapes.get(h, s), s)]
    todo = [s for s in _shards(n, batch_size) if SHARD_FMT.format(s[0]) not in done]
    iterator: Iterator[Any] = iter(todo)
    if progress_wrap is not None:
        iterator = progress_wrap(iterator, len(todo))
    written = 0
    for index, start, stop in iterator:
        tensors, positions = compute_batch(start, stop)
        for i, pos in enumerate(positions):  # compute_batch must agree with the key's positions
            if list(pos) != list(records[start + i]["positions"]):
                raise InterpError(f"positions of prompt {start + i} changed between key and run: report this bug")
        tensors = {h: t.contiguous() for h, t in tensors.items()}
        # One metadata entry: safetensors writes a map's entries in random order, and shard bytes
        # should depend on their content only (identical builds give identical files).
        shard_info = json.dumps({"key": key, "prompts": [start, stop]}, sort_keys=True)
        data = safetensors_save(tensors, metadata={"interp_cache": shard_info})
        name = SHARD_FMT.format(index)
        atomic_write_bytes(partial / name, data)
        batch_shapes = {h: list(t.shape[1:]) for h, t in tensors.items()}
        done[name] = {"sha256": sha256_bytes(data), "bytes": len(data), "prompts": [start, stop], "shapes": batch_shapes}
        for h, s in batch_shapes.items():
            shapes[h] = [max(a, b) for a, b in zip(shapes.get(h, s), s)]
        progress["shards"] = done
        atomic_write_bytes(partial / "progress.json", json.dumps(progress, indent=1).encode())
        written += 1
        if on_shard is not None:
            on_shard(written)

    prompts_data = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    atomic_write_bytes(partial / "prompts.jsonl", prompts_data)
    files = {name: {k: info[k] for k in ("sha256", "bytes", "prompts")} for name, info in sorted(done.items())}
    files["prompts.jsonl"] = {"sha256": sha256_bytes(prompts_data), "bytes": len(prompts_data)}
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "key_inputs": inputs,
        "hooks": inputs["hooks"],
        "role": inputs["role"],
        "dtype": inputs["dtype"],
        "n_prompts": n,
        "batch_size": batch_size,
        "shapes": {h: [n, *s] for h, s in shapes.items()},
        "files": files,
        "bytes": sum(f["bytes"] for f in files.values()),
        "created": _now(),
        "created_by": _versions(),
        **meta_extra,
    }
    meta["checksum"] = _meta_checksum(meta)
    atomic_write_bytes(partial / "meta.json", json.dumps(meta, indent=1, ensure_ascii=False).encode("utf-8"))
    (partial / "progress.json").unlink()
    final = cache_dir / key
    try:
        os.rename(partial, final)  # the atomic publish: readers see all of the entry or none of it
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and not verify_entry(final):
            _remove_tree(partial, cache_dir)  # someone published the same content first (no lock support)
            return BuildResult("reused", load_entry(final, verify=False))
        raise
    fsync_dir(cache_dir)
    return BuildResult("computed", load_entry(final), resumed_batches=resumed)


# --------------------------------------------------------------------------------------------
# Listing and removing
# --------------------------------------------------------------------------------------------


def _remove_tree(path: Path, cache_dir: Path) -> None:
    """Delete an entry directory, refusing anything outside ``cache_dir``."""
    link = Path(path)
    if link.is_symlink() and link.parent.resolve() == Path(cache_dir).resolve():
        link.unlink()  # a planted symlink named like an entry: remove the link, never what it points to
        return
    path, cache_dir = Path(path).resolve(), Path(cache_dir).resolve()
    if path.parent != cache_dir or not KEY_RE.match(path.name.split(".")[0]):
        raise InterpError(f"refusing to delete {path}: not an entry of the cache directory {cache_dir}")
    # Rename first so the entry disappears atomically, then delete the renamed tree.
    doomed = cache_dir / f"{path.name.split('.')[0]}.deleting-{os.getpid()}-{time.time_ns()}"
    os.rename(path, doomed)
    shutil.rmtree(doomed)


@dataclass
class EntryInfo:
    key: str
    path: Path
    state: str  # "ok" (published) or "partial" (a build in progress or killed, or a removal cut short)
    bytes: int
    created: str
    meta: dict[str, Any]
    mtime: float

    @property
    def summary(self) -> dict[str, Any]:
        m = self.meta
        return {
            "key": self.key[:12],
            "state": self.state,
            "model": m.get("model", {}).get("name", "?"),
            "task_set": ",".join(m.get("task_set", [])) or "-",
            "prompts": m.get("n_prompts", m.get("progress", "?")),
            "hooks": len(m.get("hooks", [])),
            "positions": m.get("role", "?"),
            "dtype": m.get("dtype", "?"),
            "MB": round(self.bytes / 1e6, 3),
            "KB/prompt": round(self.bytes / 1e3 / m["n_prompts"], 1) if m.get("n_prompts") else "-",
            "created": self.created,
        }


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def list_entries(cache_dir: Path) -> list[EntryInfo]:
    """Published and partial entries of ``cache_dir`` (oldest first)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    out: list[EntryInfo] = []
    for path in cache_dir.iterdir():
        name = path.name
        key, _, suffix = name.partition(".")
        if not path.is_dir() or not KEY_RE.match(key) or not (suffix in ("", "partial") or
                                                                 suffix.startswith("deleting-")):
            continue
        mtime = path.stat().st_mtime
        created = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).replace(microsecond=0).isoformat()
        meta: dict[str, Any] = {}
        if suffix == "":
            try:
                meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
                created = meta.get("created", created)
            except (OSError, ValueError):
                meta = {}
        else:
            try:
                prog = json.loads((path / "progress.json").read_text(encoding="utf-8"))
                meta = {"progress": f"{len(prog.get('shards', {}))} shards of {-(-prog['n_prompts'] // prog['batch_size'])}"}
            except (OSError, ValueError, KeyError, ZeroDivisionError):
                meta = {}
        # A removal killed half-way ("deleting-PID") is garbage, listed with the partial builds.
        out.append(EntryInfo(key, path, "partial" if suffix else "ok", _dir_bytes(path), created, meta, mtime))
    return sorted(out, key=lambda e: e.created)


def find_entries(cache_dir: Path, prefix: str) -> list[EntryInfo]:
    """Entries (published or partial) whose key starts with ``prefix``."""
    prefix = prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
        raise InterpError(f"bad cache key {prefix!r}: give at least 4 hex characters of a key from `interp cache ls`")
    return [e for e in list_entries(cache_dir) if e.key.startswith(prefix)]


def remove_entry(entry: EntryInfo, cache_dir: Path) -> bool:
    """Remove one entry unless a builder holds its lock; True when removed."""
    cache_dir = Path(cache_dir)
    try:
        lock = _lock(cache_dir, entry.key)
        try:
            lock.acquire(timeout=0.05)
        except Timeout:
            return False
        try:
            if entry.path.exists():
                _remove_tree(entry.path, cache_dir)
            return True
        finally:
            lock.release()
    except OSError as exc:
        raise _os_error_line(exc, cache_dir) from None


def parse_age(text: str) -> float:
    """Seconds in ``30m``, ``12h``, ``7d``, ``2w`` (or plain seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise InterpError(f"bad age {text!r}: write e.g. 30m, 12h, 7d or 2w")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return float(m.group(1)) * scale


def entry_age_seconds(entry: EntryInfo) -> float:
    try:
        created = _dt.datetime.fromisoformat(entry.created).timestamp()
    except ValueError:
        created = entry.mtime
    return time.time() - created
