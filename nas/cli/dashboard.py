"""``nas dashboard``: optuna-dashboard on the study storage (loopback by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nas import DEFAULT_STORAGE
from nas.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="open the study storage in optuna-dashboard",
                       description="Start optuna-dashboard on the storage. Gate-distribution "
                                   "plots of full-budget trials are attached as artifacts "
                                   "(stored beside the storage) before it starts.")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="SQLAlchemy URL of the study storage (default: sqlite:///studies.db)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--artifacts", default=None,
                   help="artifact folder (default: <db file>.artifacts for SQLite)")
    p.add_argument("--no-attach", action="store_true",
                   help="do not attach missing gate plots before starting")
    p.set_defaults(func=run)


def check_sqlite_exists(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (opening it would create an empty one)."""
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):]
        if db and db != ":memory:" and not Path(db).exists():
            raise UserError(f"--storage {url!r}: {db} does not exist; run `nas search` first "
                            "or pass the storage it wrote")


def run(args: argparse.Namespace) -> int:
    from nas.dashboard import artifact_dir_for, serve

    check_sqlite_exists(args.storage)
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: must be in 1..65535")
    art = args.artifacts or artifact_dir_for(args.storage)
    print(f"nas dashboard: http://{args.host}:{args.port}/  (storage {args.storage}, "
          f"artifacts {art}; Ctrl-C stops)", flush=True)
    print(f"  the same with plain optuna-dashboard: optuna-dashboard {args.storage} "
          f"--artifact-dir {art}", flush=True)
    serve(args.storage, host=args.host, port=args.port, artifacts=art,
          attach=not args.no_attach)
    return 0
