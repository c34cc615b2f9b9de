"""Every figure of the toolkit, one module per analysis.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, no backend chosen
at import): a notebook displays one by leaving it as a cell's last value or with
``IPython.display.display(fig)``; the app saves it with :meth:`interp_app.runs.RunDir.save_figure`.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(*args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` without pyplot: a new Figure and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
