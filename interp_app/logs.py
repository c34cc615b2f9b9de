"""Where the library's log lines go when the app runs: stderr, one plain line each.

The library (``interp``) only calls ``logging.getLogger(__name__)``; the app decides where the
lines go. The handler looks ``sys.stderr`` up at each line (not once), so pytest's capture and
notebooks that swap the stream still see the lines.
"""

from __future__ import annotations

import logging
import sys


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:  # never let a log line take a run down
            self.handleError(record)


def log_to_stderr(level: int = logging.INFO) -> None:
    """Send ``interp.*`` log records at ``level`` and above to stderr (idempotent)."""
    logger = logging.getLogger("interp")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(level)


def plain_output_when_not_a_terminal() -> None:
    """When stderr is not a terminal (CI, ``make run > log``), turn off the redrawn bars of the
    libraries underneath (transformers' "Loading weights", huggingface_hub downloads); the
    toolkit's own stages then print one line each (:mod:`interp.progress`)."""
    try:
        interactive = sys.stderr.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if interactive:
        return
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
