"""Run directories: where a headless run writes its config, tables and figures.

A run directory holds ``config.json`` (everything needed to rerun: the config, package
versions, the model fingerprint, the seed). Writing into a directory that holds a *different*
run is refused unless ``overwrite=True``; re-running the same config into it is allowed.
Files are written atomically (temporary name + rename), so an interrupted run never leaves a
half-written table behind.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from interp.errors import InterpError

_TRACKED_PACKAGES = ("interp-superposition", "torch", "transformers", "transformer-lens", "numpy", "pandas")
# Keys of config.json that may differ between two invocations of the same run.
_VOLATILE_KEYS = ("created", "versions", "platform", "overwrite", "out", "outputs")


def versions() -> dict[str, str]:
    found = {}
    for pkg in _TRACKED_PACKAGES:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _VOLATILE_KEYS}


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
            except ValueError:
                old = {}
            if _comparable(old) != _comparable(config):
                raise InterpError(
                    f"{self.path} already holds a different run: choose another --out or pass --overwrite"
                )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InterpError(f"cannot create {self.path} ({exc.strerror}): choose a writable --out") from None
        self.config = {**config, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "versions": versions(), "platform": platform.platform()}
        atomic_write_text(existing, json.dumps(self.config, indent=2, sort_keys=True, default=str) + "\n")

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, payload: Any) -> Path:
        target = self.file(name)
        atomic_write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
        return target

    def write_csv(self, name: str, frame: pd.DataFrame) -> Path:
        target = self.file(name)
        atomic_write_text(target, frame.to_csv(index=False))
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.file(name)
        atomic_write_text(target, text)
        return target

    def save_figure(self, name: str, figure: Any) -> list[Path]:
        """Save a matplotlib figure as ``name.png`` and ``name.svg``."""
        paths = []
        for ext in ("png", "svg"):
            target = self.file(f"{name}.{ext}")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".{ext}", dir=self.path)
            os.close(fd)
            figure.savefig(tmp, dpi=120, bbox_inches="tight")
            os.replace(tmp, target)
            paths.append(target)
        return paths
