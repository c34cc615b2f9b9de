"""``interp report``: the self-contained offline HTML report (:mod:`interp_app.report`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from interp_app.command import Command
from interp_app.options import add_dataclass_args, from_args
from interp_app.report import SECTIONS, ReportConfig, build_report


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataclass_args(parser, ReportConfig)
    parser.add_argument("--sweep", default=None, metavar="DIR",
                        help="instead of running analyses, draw the cross-model / cross-mixture page of a sweep "
                             "directory (`interp sweep run … --out DIR`); written to DIR/report unless --out is given")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="SECTION.OPTION=VALUE",
                        help="a section option, e.g. superposition.num_beams=5 (repeatable; values parse as flags do)")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "sections and their options (--set SECTION.OPTION=VALUE):\n" + "\n".join(
        f"  {s.name:<17} " + (", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(s.options))
                              if s.options else "(no options)") for s in SECTIONS.values())


def _cli_run(args: argparse.Namespace) -> int:
    if args.sweep is not None:
        return _sweep_report(args)
    result = build_report(from_args(ReportConfig, args))
    if result.failed:
        print(f"{len(result.failed)} section(s) failed: {', '.join(result.failed)} (see the page)", file=sys.stderr)
    print(result.index.resolve())
    return 1 if result.failed else 0


def _sweep_report(args: argparse.Namespace) -> int:
    from interp_app.sweep.report import build_sweep_report

    default_out = next(f.default for f in dataclasses.fields(ReportConfig) if f.name == "out")
    out = None if args.out == default_out else args.out
    result = build_sweep_report(args.sweep, out, overwrite=args.overwrite)
    if result.missing_cells:
        print(f"{result.missing_cells} cell(s) not finished: the page shows the finished ones", file=sys.stderr)
    print(result.index.resolve())
    return 0


COMMANDS = [
    Command(("report",), "build a self-contained offline HTML report with CSV tables", _add_arguments, _cli_run),
]
