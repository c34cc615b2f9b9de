"""Benchmark of sweeps: the same grid serial vs on a local Ray instance — wall time, CPU time,
Ray's overhead per cell, and how many times each model was loaded.

Each executor runs ``interp sweep run SPEC`` in a fresh subprocess (imports and Ray start-up
included, as a user sees it) into a fresh directory. CPU time is the sum over the driver and every
process it starts (Ray's GCS, raylet and workers), sampled with psutil until they exit. The two
merged tables are compared (they must be equal bit for bit), and the worker (host:pid) each cell
recorded shows how many model actors ran (one load per actor: each actor loads its model once).

Usage::

    python benchmarks/bench_sweep.py [--spec examples/sweeps/small.toml] [--out runs/bench_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]


def run_measured(args: list[str]) -> tuple[float, float, int, float]:
    """(wall seconds, CPU seconds of the process tree, exit code, start epoch) of one command."""
    epoch = time.time()
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "INTERP_NO_PROGRESS": "1"}, start_new_session=True)
    cpu: dict[int, float] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                t = p.cpu_times()
                cpu[p.pid] = max(cpu.get(p.pid, 0.0), t.user + t.system)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    return wall, sum(cpu.values()), proc.returncode, epoch


def cell_times(out: Path, cells: list[dict], t0: float) -> dict[str, float]:
    """From the completion times the driver recorded: start-up (command start to the first cell
    done, i.e. imports, Ray start, model loads and one cell) and the steady per-cell time (median gap
    between successive cells of one worker, excluding its first, which includes loading the model)."""
    states = [json.loads(Path(out, "state", f"{c['cell_id']}.json").read_text()) for c in cells]
    by_worker: dict[str, list[float]] = {}
    for s in states:
        by_worker.setdefault(s["worker"], []).append(datetime.fromisoformat(s["time"]).timestamp())
    gaps = [b - a for times in by_worker.values() for a, b in zip(sorted(times), sorted(times)[1:])]
    first = min(t for times in by_worker.values() for t in times)
    return {"first_cell_done_s": round(first - t0, 2),
            "per_cell_s": round(statistics.median(gaps), 3) if gaps else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples" / "sweeps" / "small.toml"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    interp = [sys.executable, "-m", "interp_app"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        # Prepare the models once (the first load of a tiny model writes it under $INTERP_HOME).
        subprocess.run([*interp, "sweep", "run", args.spec, "--out", f"{tmp}/warm"], cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        tables = {}
        for executor in ("serial", "ray"):
            out = f"{tmp}/{executor}"
            wall, cpu, code, t0 = run_measured([*interp, "sweep", "run", args.spec, "--out", out, "--executor", executor])
            status = subprocess.run([*interp, "sweep", "status", out, "--cells"], cwd=ROOT, capture_output=True, text=True)
            cells = json.loads(Path(out, "cells.json").read_text())
            workers = {json.loads(Path(out, "state", f"{c['cell_id']}.json").read_text()).get("worker") for c in cells}
            tables[executor] = pd.read_parquet(Path(out, "results.parquet"))
            results[executor] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "exit": code, "cells": len(cells),
                                 "workers": len(workers), **cell_times(Path(out), cells, t0),
                                 "status": status.stdout.splitlines()[0]}
        equal = tables["serial"].equals(tables["ray"])
    n = results["serial"]["cells"]
    summary = {
        "spec": args.spec, "cpus": os.cpu_count(), **results, "tables_equal": equal,
        "ray_extra_wall_per_cell_s": round((results["ray"]["wall_s"] - results["serial"]["wall_s"]) / n, 3),
        # Steady state: a Ray actor's per-cell time vs the same cells in one process (2 actors share 2 cores).
        "ray_per_cell_overhead_pct": round(100 * (results["ray"]["per_cell_s"] / results["serial"]["per_cell_s"] - 1), 1),
        "ray_speedup": round(results["serial"]["wall_s"] / results["ray"]["wall_s"], 2),
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
