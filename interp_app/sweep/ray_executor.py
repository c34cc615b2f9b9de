"""The Ray executor: one actor per (model, device, dtype) holds the model and runs all of its cells.

Without ``--address`` a local Ray instance sized to this machine is started (and stopped at the
end); ``--address auto`` or ``ray://host:port`` joins an existing cluster. An actor loads its model
once, sets torch's thread count itself (Ray sets ``OMP_NUM_THREADS=1`` in workers), asks for
``threads`` CPUs and ``num_gpus`` GPUs, and returns each cell's small table of rows — never
activations. A worker that dies is restarted and its cell retried (``max_restarts`` /
``max_task_retries``); a cell that still fails is recorded with its one-line error and the sweep
goes on. When all of a model's cells are done its actor is ended, freeing its CPUs/GPU for the
next model. The run directories are written by the actors: on a cluster, ``--out`` must be a
path every node sees (a shared file system); the merged table is written by the driver from the
rows the actors return.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from interp.errors import InterpError
from interp_app.sweep.executors import OnDone, OnStart, group_by_model
from interp_app.sweep.spec import Cell, SweepSpec

# Object store for a local instance: cells return small tables, so a small store is plenty.
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2


class ModelWorker:
    """Holds one model; ``run`` executes one cell on it (in the actor's process)."""

    def __init__(self, first: Cell, root: str, threads: int, tasks_files: list[str]) -> None:
        import torch

        from interp_app.options import load_tasks_files
        from interp_app.sweep.cells import load_cell_model, one_line

        torch.set_num_threads(threads)  # Ray set OMP_NUM_THREADS=1 in this process
        self.root = Path(root)
        self.model: Any = None
        self.error = ""
        self.loads = 0
        try:
            load_tasks_files(tasks_files)  # task sets registered by files exist in this process too
            self.model = load_cell_model(first)
            self.loads += 1
        except Exception as exc:  # noqa: BLE001 - every cell of this model reports the load error
            self.error = f"model did not load: {one_line(exc)}"

    def run(self, cell: Cell) -> tuple[pd.DataFrame | None, str, str]:
        """(rows, "", worker) or (None, one-line error, worker); worker is ``host:pid``."""
        from interp_app.sweep.cells import one_line, run_cell

        worker = f"{socket.gethostname()}:{os.getpid()}"
        if self.model is None:
            return None, self.error, worker
        try:
            return run_cell(cell, self.root, self.model), "", worker
        except Exception as exc:  # noqa: BLE001 - recorded on the cell; the sweep goes on
            return None, one_line(exc), worker

    def info(self) -> dict[str, Any]:
        import torch

        return {"pid": os.getpid(), "threads": torch.get_num_threads(), "loads": self.loads}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nobody answers on within ``timeout`` seconds (Ray itself retries for minutes)."""
    if address == "auto":
        return  # Ray reads the local cluster's address file and says at once when there is none
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InterpError(f"--address {address!r}: use auto, host:port or ray://host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InterpError(f"cannot reach the Ray cluster at {address!r} ({reason}): start one with `ray start --head` "
                          "and pass --address auto, or check host:port") from None


def connect(address: str | None) -> bool:
    """Join ``address`` or start a local instance; returns True when this call started Ray (and must stop it)."""
    import ray

    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False  # e.g. a test session's instance, or the caller's own
    if address:
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            text = " ".join(str(exc).split())[:200]
            raise InterpError(f"cannot join the Ray cluster at {address!r} ({type(exc).__name__}: {text}): start one "
                              "with `ray start --head` and pass --address auto, or check host:port") from None
        return True
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    return True


def run_ray(cells: list[Cell], root: Path, on_start: OnStart, on_done: OnDone, spec: SweepSpec,
            address: str | None, log: Callable[[str], None]) -> None:
    """Run ``cells`` on Ray: one actor per model group; results recorded as they arrive."""
    try:
        import ray
    except ImportError:
        raise InterpError("--executor ray needs Ray: pip install ray==2.60.0 (or use --executor serial)") from None
    started = connect(address)
    try:
        actor_cls = ray.remote(ModelWorker).options(
            num_cpus=spec.threads, num_gpus=spec.num_gpus, max_restarts=1, max_task_retries=1)
        pending: dict[Any, tuple[Cell, Any]] = {}
        remaining: dict[Any, int] = {}
        actors = []
        for group in group_by_model(cells).values():
            actor = actor_cls.remote(group[0], str(Path(root).resolve()), spec.threads, spec.tasks_files)
            actors.append(actor)
            remaining[actor] = len(group)
            for cell in group:
                on_start(cell)
                pending[actor.run.remote(cell)] = (cell, actor)
        log(f"ray: {len(actors)} model actors × {spec.threads} thread(s), {len(pending)} cells")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            cell, actor = pending.pop(ref)
            try:
                rows, error, worker = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a worker that died past its retries
                rows, worker = None, ""
                error = f"worker failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            on_done(cell, rows, error, worker)
            remaining[actor] -= 1
            if remaining[actor] == 0:
                ray.kill(actor)  # free its CPUs / GPU for a model still waiting
    finally:
        if started:
            ray.shutdown()
