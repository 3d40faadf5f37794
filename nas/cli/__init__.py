"""The ``nas`` command: parses arguments and delegates; one module per subcommand.

Each subcommand module ``nas.cli.<name>`` defines ``add_parser(subparsers)`` which
registers its parser and sets ``func=run`` on it, and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nas.errors import UserError

# (subcommand module, ...) in the order shown by --help.
_COMMANDS = ["search", "spaces", "train", "dashboard", "report", "export", "ablate",
             "verdict", "data"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Architecture search for gated audio-video-text fusion transformers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            mod = importlib.import_module(f"nas.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"nas.cli.{name}":
                continue  # subcommand not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `nas search` with no arguments is the quickstart; bare `nas` shows help.
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"nas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
