"""The one versions helper: installed versions of the packages a result depends on."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from importlib import metadata

TRACKED_PACKAGES = ("interp-superposition", "torch", "transformers", "transformer-lens", "numpy", "pandas",
                    "safetensors")


def versions(packages: Sequence[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """``{package: version}`` for the installed ones among ``packages``, plus ``python``."""
    found = {}
    for pkg in packages:
        try:
            found[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found
