"""Run directories: where a headless run writes its config, tables and figures.

A run directory holds ``config.json`` (everything needed to rerun: the config, package
versions, the model fingerprint, the seed) and ``status.json`` (``running`` while the command
works, then ``complete`` or ``failed`` with the one-line reason; ``running`` left behind means it
was killed). Writing into a directory that holds a *different* run is refused unless
``overwrite=True``; re-running the same config into it is allowed — that is how a failed or
killed run is continued, without ``--overwrite``.
Files are written atomically (:mod:`interp.io`: temporary name + rename, normal permissions),
so an interrupted run never leaves a half-written table behind. Every table is written twice:
``name.csv`` (for people and spreadsheets) and ``name.parquet`` beside it (typed, for code).
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from interp.errors import InterpError
from interp.io import atomic_write, atomic_write_text, remove_stale_temporaries
from interp.versions import versions

# Keys of config.json that may differ between two invocations of the same run.
_VOLATILE_KEYS = ("created", "versions", "platform", "overwrite", "out", "outputs", "api_transport")
STATUS_FILE = "status.json"
# Run directories opened by this process and not yet finished (the CLI marks them complete or failed).
_OPEN: list[RunDir] = []


def finish_open_runs(state: str, reason: str = "") -> None:
    """Mark every run directory this process opened ``complete`` or ``failed`` (the CLI calls this)."""
    while _OPEN:
        run = _OPEN.pop()
        try:
            run.set_status(state, reason)
        except OSError:
            pass  # e.g. the disk is full: the status stays "running", which reads as unfinished

__all__ = ["RunDir", "atomic_write_text", "versions", "write_table"]


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _VOLATILE_KEYS}


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding mixed types (e.g. str and float) become strings; Parquet needs one type."""
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and v == v}
            if len(kinds) > 1 or (kinds and not kinds <= {str, bool, int, float}):
                out[col] = out[col].map(lambda v: v if v is None or v != v else str(v))
    return out


def write_table(path: str | Path, frame: pd.DataFrame) -> list[Path]:
    """Write ``frame`` as ``path`` (CSV) and the same name with ``.parquet`` beside it."""
    target = Path(path)
    atomic_write_text(target, frame.to_csv(index=False))
    parquet = target.with_suffix(".parquet")
    atomic_write(parquet, lambda tmp: _parquet_safe(frame).to_parquet(tmp, index=False), suffix=".parquet")
    return [target, parquet]


class RunDir:
    """A directory for one run's outputs.

    Args:
        path: the directory (created if missing).
        config: JSON-able description of the run (analysis config, model description, seed...).
        overwrite: replace a directory that holds a different run.
    """

    def __init__(self, path: str | Path, config: dict[str, Any], overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InterpError(f"output path {self.path} is a file: pass a directory to --out")
        existing = self.path / "config.json"
        if existing.exists() and not overwrite:
            try:
                old = json.loads(existing.read_text())
            except (OSError, ValueError):
                old = None
            if old is None and self.status() in ("running", "failed"):
                old = config  # an unfinished run whose config was lost: this command restarts it
            if old is None:
                raise InterpError(f"{self.path} holds a damaged config.json: choose another --out or pass --overwrite")
            if _comparable(old) != _comparable(config):
                raise InterpError(
                    f"{self.path} already holds a different run: choose another --out or pass --overwrite"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InterpError(f"cannot create {self.path} ({exc.strerror}): choose a writable --out") from None
        remove_stale_temporaries(self.path)  # left by a killed earlier run; this run rewrites them
        self.config = {**config, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "versions": versions(), "platform": platform.platform()}
        atomic_write_text(existing, json.dumps(self.config, indent=2, sort_keys=True, default=str) + "\n")
        self.set_status("running")
        _OPEN.append(self)

    def status(self) -> str | None:
        """``running`` / ``complete`` / ``failed``, or None when the directory has no status."""
        try:
            value = json.loads((self.path / STATUS_FILE).read_text()).get("state")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def set_status(self, state: str, reason: str = "") -> None:
        payload = {"state": state, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        if reason:
            payload["reason"] = reason
        atomic_write_text(self.path / STATUS_FILE, json.dumps(payload, sort_keys=True) + "\n")

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, payload: Any) -> Path:
        target = self.file(name)
        atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
        return target

    def write_csv(self, name: str, frame: pd.DataFrame) -> Path:
        """Write ``name`` (a ``.csv``) and ``name`` with ``.parquet`` beside it; returns the CSV's path."""
        return write_table(self.file(name), frame)[0]

    def write_text(self, name: str, text: str) -> Path:
        target = self.file(name)
        atomic_write_text(target, text)
        return target

    def save_figure(self, name: str, figure: Any) -> list[Path]:
        """Save a matplotlib figure as ``name.png`` and ``name.svg``."""
        return [atomic_write(self.file(f"{name}.{ext}"),
                             lambda tmp: figure.savefig(tmp, dpi=120, bbox_inches="tight"), suffix=f".{ext}")
                for ext in ("png", "svg")]
