"""Atomic file writes with normal permissions: the one helper every writer uses.

A file is written under a temporary name in its own directory and renamed over the target, so
a reader (or an interrupted run) never sees half a file. ``tempfile.mkstemp`` creates files
readable by their owner only (0600); the result is given the permissions a plain ``open()``
would have given it (``0o666`` minus the process's umask).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (process-wide, instantaneous).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def fsync_dir(path: Path) -> None:
    """Flush a directory entry (a rename) to disk where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None], suffix: str = "",
                 durable: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it onto ``path``.

    ``suffix`` keeps the extension on the temporary name (matplotlib picks the format from it);
    ``durable`` fsyncs the file and its directory (the activation cache wants that).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, default_file_mode())
        if durable:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(target.parent)
    return target


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the half-written ``.name.tmp-*`` files a killed writer left in ``directory``.

    Call it when a run (re)opens a directory it is the only writer of: anything found is stale.
    """
    for stale in Path(directory).glob(".*.tmp-*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def atomic_write_text(path: str | os.PathLike[str], text: str, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


# Marks a prepared directory as complete; bump the format when the layout of one changes.
PREPARED_MARKER = "interp_prepared.json"


def publish_directory(target: Path, build: Callable[[Path], None], format_version: int = 1) -> Path:
    """Build a directory under a temporary name beside ``target`` and rename it into place.

    A reader never sees a half-built directory: either ``target`` holds the marker file or it
    does not exist. If another process publishes first, its (equivalent) directory is kept.
    """
    import json
    import shutil

    if (target / PREPARED_MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        (tmp / PREPARED_MARKER).write_text(json.dumps({"format": format_version}))
        # mkdtemp/mkstemp create owner-only entries; publish with the permissions the umask gives.
        for path in tmp.rglob("*"):
            path.chmod(default_file_mode() if path.is_file() else 0o777 & ~_umask())
        tmp.chmod(0o777 & ~_umask())
        try:
            tmp.rename(target)
        except OSError:
            if not (target / PREPARED_MARKER).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def os_error_line(exc: OSError, fix: str = "") -> str:
    """One line describing a filesystem error and what to do about it (the CLI prints it as ``error: …``)."""
    where = exc.filename if exc.filename is not None else "a file"
    reason = exc.strerror or type(exc).__name__
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        hint = fix or "free some space or write somewhere else (--out / --cache-dir); completed outputs were kept"
        return f"no space left on the device writing {where}: {hint}"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {where} ({reason}): {fix or 'choose a writable directory (--out / --cache-dir)'}"
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"{where}: {reason} (a path that should be a directory is a file, or the reverse): " + (
            fix or "choose another path")
    if code == errno.ENOENT:
        return f"{where} does not exist: {fix or 'check the path'}"
    if exc.filename is None and code is None:
        return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no details'}" + (f": {fix}" if fix else "")
    return f"{reason}: {where}" + (f": {fix}" if fix else "")
