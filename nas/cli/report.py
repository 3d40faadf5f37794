"""``nas report``: one self-contained plotly HTML report of a study."""

from __future__ import annotations

import argparse

from nas import DEFAULT_STORAGE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a study")
    p.add_argument("--study", default=None,
                   help="study name (default: the only study in the storage)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="SQLAlchemy URL of the study storage (default: sqlite:///studies.db)")
    p.add_argument("--out", default="report.html", help="output file (default report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nas.cli.dashboard import check_sqlite_exists
    from nas.cli.export import load_study
    from nas.report import write_report

    check_sqlite_exists(args.storage)
    study = load_study(args.study, args.storage)
    path = write_report(study, args.out)
    print(f"nas report: wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
