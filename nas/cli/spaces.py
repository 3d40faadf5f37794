"""``nas spaces validate FILE`` and ``nas spaces show FILE``: check and list a search space."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nas spaces``."""
    p = subparsers.add_parser(
        "spaces", help="validate or show a search-space file",
        description="Validate a search-space file (errors name the file, the dimension and "
                    "the problem) or show its dimensions as a table. FILE may be a path or "
                    "the name of a shipped space (gated_fusion, quick).")
    p.add_argument("action", choices=["validate", "show"])
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Load the space; print OK (+ warnings about impossible pairs) or the table."""
    from nas.search.space import load_space

    space = load_space(args.file)
    if args.action == "show":
        print(space.table())
        return 0
    problems = space.check_pairs()
    for p in problems[:20]:
        print(f"warning: {space.path}: {p} (recorded as infeasible if sampled)", file=sys.stderr)
    if len(problems) > 20:
        print(f"warning: ... and {len(problems) - 20} more impossible pairs", file=sys.stderr)
    print(f"{space.path}: OK ({len(space.dimensions)} dimensions, rungs "
          f"{space.proxy.rungs()} epochs)")
    return 0
