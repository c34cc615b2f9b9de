"""Running a sweep: the state of every cell on disk, the executors, the merged table.

Layout of a sweep directory::

    DIR/sweep.json           the checked spec (for `interp sweep status` and the record)
    DIR/cells.json           every cell of the grid: id and coordinates, in order
    DIR/cells/<id>/          the cell's run directory (exactly what `interp run …` writes)
    DIR/state/<id>.json      running / complete / failed (+ the one-line error), written by the driver
    DIR/state/<id>.parquet   the cell's rows (written before its state says complete)
    DIR/results.parquet/.csv the merged table: one row per cell × task, in grid order

Resuming is the same command again: a cell whose state is ``complete`` (and whose rows exist) is
skipped; ``running`` (a killed driver or worker left it) and ``failed`` cells run again. The merged
table is rebuilt from the stored rows, so a sweep stopped and continued ends with the same table as
one run straight through. A driver lock keeps two sweeps from writing one directory.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from interp.errors import InterpError
from interp.io import atomic_write, atomic_write_text
from interp_app.runs import write_table
from interp_app.sweep.executors import run_serial
from interp_app.sweep.spec import Cell, SweepSpec

RESULTS = "results"
STATES = ("complete", "running", "failed", "todo")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class SweepDir:
    """The on-disk state of one sweep."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- per cell
    def state_file(self, cell_id: str) -> Path:
        return self.path / "state" / f"{cell_id}.json"

    def rows_file(self, cell_id: str) -> Path:
        return self.path / "state" / f"{cell_id}.parquet"

    def state(self, cell_id: str) -> dict[str, Any]:
        try:
            value = json.loads(self.state_file(cell_id).read_text())
        except (OSError, ValueError):
            return {"state": "todo"}
        if not isinstance(value, dict) or value.get("state") not in STATES:
            return {"state": "todo"}
        if value["state"] == "complete" and not self.rows_file(cell_id).is_file():
            return {"state": "todo"}  # rows lost: run it again
        return value

    def set_state(self, cell_id: str, state: str, **extra: Any) -> None:
        previous = self.state(cell_id)
        payload = {"state": state, "time": _now(), "attempts": int(previous.get("attempts", 0)), **extra}
        if state == "running":
            payload["attempts"] += 1
        atomic_write_text(self.state_file(cell_id), json.dumps(payload, sort_keys=True) + "\n")

    def write_rows(self, cell_id: str, rows: pd.DataFrame) -> None:
        atomic_write(self.rows_file(cell_id), lambda tmp: rows.to_parquet(tmp, index=False), suffix=".parquet")

    def read_rows(self, cell_id: str) -> pd.DataFrame:
        return pd.read_parquet(self.rows_file(cell_id))

    # -- the grid
    def write_grid(self, spec: SweepSpec) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "state").mkdir(exist_ok=True)
        atomic_write_text(self.path / "sweep.json", json.dumps(spec.to_json(), indent=2, sort_keys=True) + "\n")
        atomic_write_text(self.path / "cells.json",
                          json.dumps([c.to_json() for c in spec.cells], indent=1, sort_keys=True) + "\n")

    def grid(self) -> list[dict[str, Any]]:
        try:
            cells = json.loads((self.path / "cells.json").read_text())
        except FileNotFoundError:
            raise InterpError(f"{self.path} is not a sweep directory (no cells.json): pass the --out of "
                              "`interp sweep run`") from None
        except (OSError, ValueError):
            raise InterpError(f"{self.path}/cells.json is damaged: rerun `interp sweep run SPEC --out {self.path}`") from None
        return cells

    def lock(self) -> FileLock:
        return FileLock(str(self.path / ".sweep.lock"), timeout=0)

    def driver(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "driver.json").read_text())
        except (OSError, ValueError):
            return {}


def driver_alive(info: dict[str, Any]) -> bool:
    """Whether the driver recorded in ``driver.json`` still runs (only knowable on its own host)."""
    if not info or info.get("finished"):
        return False
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------------ the sweep


@dataclass
class SweepOutcome:
    path: Path
    counts: dict[str, int]
    ran: int
    skipped: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    results: pd.DataFrame | None = None
    seconds: float = 0.0


def run_sweep(spec: SweepSpec, out: str | Path, executor: str = "serial", address: str | None = None,
              log: Callable[[str], None] = lambda line: None) -> SweepOutcome:
    """Run every cell of ``spec`` not yet complete in ``out``, then merge all rows into ``results``."""
    if executor not in ("serial", "ray"):
        raise InterpError(f"unknown --executor {executor!r}: use serial or ray")
    if address and executor != "ray":
        raise InterpError("--address joins a Ray cluster: pass it with --executor ray")
    sweep = SweepDir(out)
    if sweep.path.exists() and not sweep.path.is_dir():
        raise InterpError(f"{sweep.path} is a file: pass a directory to --out")
    try:
        sweep.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InterpError(f"cannot create {sweep.path} ({exc.strerror}): choose a writable --out") from None
    lock = sweep.lock()
    try:
        lock.acquire()
    except Timeout:
        raise InterpError(f"another `interp sweep run` is writing {sweep.path} (pid {sweep.driver().get('pid', '?')}): "
                          "wait for it, or pass another --out") from None
    try:
        return _run_locked(spec, sweep, executor, address, log)
    finally:
        lock.release()


def _run_locked(spec: SweepSpec, sweep: SweepDir, executor: str, address: str | None,
                log: Callable[[str], None]) -> SweepOutcome:
    start = time.perf_counter()
    sweep.write_grid(spec)
    started = _now()
    atomic_write_text(sweep.path / "driver.json", json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "executor": executor}) + "\n")
    todo = [c for c in spec.cells if sweep.state(c.cell_id)["state"] != "complete"]
    skipped = len(spec.cells) - len(todo)
    log(f"sweep: {len(spec.cells)} cells, {skipped} already complete, {len(todo)} to run ({executor})")
    failed: list[tuple[str, str]] = []

    def on_start(cell: Cell) -> None:
        sweep.set_state(cell.cell_id, "running")

    def on_done(cell: Cell, rows: pd.DataFrame | None, error: str, worker: str = "") -> None:
        if rows is not None and not error:
            sweep.write_rows(cell.cell_id, rows)
            sweep.set_state(cell.cell_id, "complete", worker=worker)
            log(f"  done   {cell.cell_id}")
        else:
            sweep.set_state(cell.cell_id, "failed", error=error, worker=worker)
            failed.append((cell.cell_id, error))
            log(f"  FAILED {cell.cell_id}: {error}")

    if todo:
        if executor == "serial":
            run_serial(todo, sweep.path, on_start, on_done, spec.threads)
        else:
            from interp_app.sweep.ray_executor import run_ray

            run_ray(todo, sweep.path, on_start, on_done, spec, address, log)
    results = merge(spec, sweep)
    try:
        from interp_app.sweep.figures import write_figures

        write_figures(results, sweep.path)
    except Exception as exc:  # noqa: BLE001 - a figure never costs the table
        log(f"figures not written: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    counts = count_states(sweep, [c.cell_id for c in spec.cells])
    atomic_write_text(sweep.path / "driver.json", json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "finished": _now(),
         "executor": executor}) + "\n")
    return SweepOutcome(sweep.path, counts, len(todo), skipped, failed, results, time.perf_counter() - start)


def merge(spec: SweepSpec, sweep: SweepDir) -> pd.DataFrame:
    """All complete cells' rows in grid order, written as ``results.parquet`` and ``results.csv``."""
    frames = [sweep.read_rows(c.cell_id) for c in spec.cells if sweep.state(c.cell_id)["state"] == "complete"]
    frames = [f for f in frames if len(f)]
    results = pd.concat(frames, ignore_index=True, sort=False) if frames else pd.DataFrame(
        columns=["cell_id", "analysis", "model", "task_set", "mixture", "seed", "task"])
    write_table(sweep.path / f"{RESULTS}.csv", results)
    return results


def count_states(sweep: SweepDir, cell_ids: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for cell_id in cell_ids:
        counts[sweep.state(cell_id)["state"]] += 1
    return counts


def sweep_status(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per cell: coordinates, state, attempts and error; plus the driver record (and whether it is alive)."""
    sweep = SweepDir(path)
    if not sweep.path.is_dir():
        raise InterpError(f"{sweep.path} does not exist: pass the --out of `interp sweep run`")
    grid = sweep.grid()
    driver = sweep.driver()
    alive = driver_alive(driver)
    rows = []
    for cell in grid:
        state = sweep.state(cell["cell_id"])
        name = state["state"]
        if name == "running" and not alive:
            name = "todo"  # left by a killed driver: the next run redoes it
        rows.append({"cell_id": cell["cell_id"], "analysis": cell["analysis"], "model": cell["model"],
                     "task_set": cell["task_set"], "mixture": cell["mixture"], "seed": cell["seed"],
                     "state": name, "attempts": state.get("attempts", 0), "worker": state.get("worker", ""),
                     "error": state.get("error", "")})
    return pd.DataFrame(rows), {**driver, "alive": alive}
