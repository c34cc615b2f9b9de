"""Where the toolkit keeps per-user state: prepared models, fingerprints, the default activation cache."""

from __future__ import annotations

import os
from pathlib import Path


def interp_home() -> Path:
    """Directory for prepared models and other per-user state (``$INTERP_HOME``, else the XDG cache)."""
    env = os.environ.get("INTERP_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "interp"
