"""User-facing errors: one clear line that names the fix.

Library code raises :class:`InterpError` for every bad input a user can make; the CLI prints
``error: <message>`` and exits with status 2, never a traceback.
"""

from __future__ import annotations


class InterpError(Exception):
    """A bad input or environment problem, described in one line that names the fix."""

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise ValueError("InterpError messages must be one line")
        super().__init__(message)
