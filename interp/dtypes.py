"""The one dtype parser: ``"float32" | "bfloat16" | "float16"`` (and short forms) -> ``torch.dtype``."""

from __future__ import annotations

import torch

from interp.errors import InterpError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def parse_dtype(dtype: str | torch.dtype, what: str = "dtype") -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; an unknown name is one :class:`InterpError` line naming the choices.

    ``what`` names the option in the message (e.g. ``"activation dtype"``).
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise InterpError(f"unknown {what} {dtype!r}: use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the name stored in configs and cache metadata)."""
    return str(dtype).removeprefix("torch.")
