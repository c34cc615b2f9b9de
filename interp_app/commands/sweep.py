"""``interp sweep run`` / ``interp sweep status``: a grid of runs, resumable, serial or on Ray."""

from __future__ import annotations

import argparse
import sys

from interp_app.command import Command


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="sweep file (.toml or .json): models, task_sets, seeds, mixtures, [analyses.<name>]")
    p.add_argument("--out", required=True, help="sweep directory (rerun the same command to resume; "
                                                "finished cells are skipped, failed ones retried)")
    p.add_argument("--executor", choices=("serial", "ray"), default="serial",
                   help="serial: every cell in this process (default); ray: one Ray actor per model")
    p.add_argument("--address", default=None, help="Ray cluster to join: auto or ray://host:port "
                                                   "(default: start a local instance sized to this machine)")


def _run(args: argparse.Namespace) -> int:
    from interp_app.sweep.engine import run_sweep
    from interp_app.sweep.spec import load_spec

    spec = load_spec(args.spec)
    outcome = run_sweep(spec, args.out, args.executor, args.address, log=lambda line: print(line, flush=True))
    c = outcome.counts
    print(f"{c['complete']} complete, {c['failed']} failed, {c['todo'] + c['running']} to do "
          f"({outcome.ran} run now, {outcome.skipped} skipped) in {outcome.seconds:.1f}s")
    rows = 0 if outcome.results is None else len(outcome.results)
    print(f"results: {outcome.path / 'results.parquet'} ({rows} rows; also results.csv)")
    if c["failed"]:
        print(f"{c['failed']} cells failed: rerun the same command to retry them "
              f"(`interp sweep status {outcome.path}` lists the errors)", file=sys.stderr)
        return 1
    return 0


def _add_status(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="sweep directory (the --out of `interp sweep run`)")
    p.add_argument("--cells", action="store_true", help="list every cell, not only the failed ones")


def _status(args: argparse.Namespace) -> int:
    from interp_app.sweep.engine import sweep_status

    table, driver = sweep_status(args.dir)
    counts = table["state"].value_counts() if len(table) else {}
    line = ", ".join(f"{counts.get(k, 0)} {label}" for k, label in
                     (("complete", "done"), ("running", "running"), ("failed", "failed"), ("todo", "to do")))
    who = ""
    if driver.get("pid"):
        who = (f" (driver pid {driver['pid']} on {driver.get('host')}, {driver.get('executor')}, running)"
               if driver["alive"] else " (no sweep running)")
    print(f"{args.dir}: {len(table)} cells: {line}{who}")
    shown = table if args.cells else table[table["state"] == "failed"]
    if len(shown):
        print(shown[["cell_id", "state", "attempts", "worker", "error"]].to_string(index=False, max_colwidth=120))
    return 0


COMMANDS = [
    Command(("sweep", "run"), "run a grid of models × task sets × mixtures × seeds × analyses (resumable; serial or Ray)",
            _add_run, _run),
    Command(("sweep", "status"), "show a sweep's cells: done / running / failed / to do", _add_status, _status),
]
