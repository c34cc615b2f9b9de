"""The serial executor and what every executor shares: cells grouped by model, the callbacks.

An executor runs cells and reports each one through two callbacks the engine passes in:
``on_start(cell)`` before it runs and ``on_done(cell, rows or None, error line or "", worker)`` after
(``worker`` is ``host:pid``). The serial executor is here; the Ray one is
:mod:`interp_app.sweep.ray_executor` (imported only for ``--executor ray``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from interp_app.sweep.spec import Cell

# on_start(cell) before a cell runs; on_done(cell, rows or None, error line or "", worker "host:pid") after.
OnStart = Callable[[Cell], None]
OnDone = Callable[[Cell, "pd.DataFrame | None", str, str], None]


def group_by_model(cells: Iterable[Cell]) -> dict[tuple[str, str, str], list[Cell]]:
    """Cells per (model, device, dtype), in grid order: one worker (one model load) per group."""
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.model, cell.kwargs["device"], cell.kwargs["dtype"]), []).append(cell)
    return groups


def run_serial(cells: list[Cell], root: Path, on_start: OnStart, on_done: OnDone, threads: int | None = None) -> None:
    """Every cell in this process, one model loaded at a time (Ray is not imported)."""
    import torch

    from interp_app.sweep.cells import load_cell_model, one_line, run_cell

    worker = f"{socket.gethostname()}:{os.getpid()}"
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for group in group_by_model(cells).values():
            try:
                model = load_cell_model(group[0])
            except Exception as exc:  # noqa: BLE001 - the model's cells fail with its load error; the rest go on
                for cell in group:
                    on_start(cell)
                    on_done(cell, None, f"model did not load: {one_line(exc)}", worker)
                continue
            for cell in group:
                on_start(cell)
                try:
                    rows = run_cell(cell, root, model)
                except Exception as exc:  # noqa: BLE001 - recorded on the cell; the sweep goes on
                    on_done(cell, None, one_line(exc), worker)
                else:
                    on_done(cell, rows, "", worker)
            del model
    finally:
        torch.set_num_threads(previous)
