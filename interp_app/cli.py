"""The ``interp`` command line.

Commands live next to the code they run: any module in :data:`COMMAND_MODULES` may define
``CLI_COMMANDS``, a list of :class:`Command`. This file only assembles them, so adding a
command never means editing a shared dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

from interp.errors import InterpError


@dataclass
class Command:
    """One CLI command: ``path`` is e.g. ``("run", "superposition")`` or ``("train",)``."""

    path: tuple[str, ...]
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMAND_MODULES = (
    "analyses.superposition",
    "analyses.logit_lens",
    "analyses.head_attribution",
    "analyses.task_vectors",
    "analyses.from_scratch",
    "analyses.scale",
    "interp.cache.cli",
    "interp.report",
)

GROUP_HELP = {
    "run": "run one analysis headless, writing tables and figures to a run directory",
    "cache": "build, list, verify and remove cached activations",
}


def _collect_commands() -> list[Command]:
    commands: list[Command] = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue  # that analysis is not installed in this checkout
            raise
        commands.extend(getattr(module, "CLI_COMMANDS", []))
    return commands


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
