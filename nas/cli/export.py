"""``nas export``: write one configuration of a study's front as a config file."""

from __future__ import annotations

import argparse

from nas import DEFAULT_STORAGE
import shlex
from typing import Any

from nas.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a chosen trial's configuration as CONFIG.yaml",
                       description="Pick a full-budget trial and write its FusionConfig and "
                                   "TrainConfig in the format `nas train --config` reads.")
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="SQLAlchemy URL of the study storage (default: sqlite:///studies.db)")
    p.add_argument("--pick", default="knee",
                   help="knee | best:OBJECTIVE | under:OBJECTIVE<=VALUE | trial:N "
                        "(default knee)")
    p.add_argument("--out", required=True, help="config file to write (YAML)")
    p.set_defaults(func=run)


def load_study(name: str, storage: str) -> Any:
    """Load a study by name, or raise a UserError listing the studies that exist."""
    import optuna

    try:
        st = optuna.storages.get_storage(storage)
    except Exception as e:  # SQLAlchemy raises many kinds for a bad URL
        raise UserError(f"--storage {storage!r}: cannot open: {e}") from None
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if name not in names:
        raise UserError(f"--study {name!r}: no such study in {storage}; studies there: "
                        f"{names or 'none'}")
    return optuna.load_study(study_name=name, storage=st)


def run(args: argparse.Namespace) -> int:
    from nas.cli.dashboard import check_sqlite_exists
    from nas.export import choose_trial, export_trial, parse_pick

    pick = parse_pick(args.pick)  # before touching the storage: bad syntax fails fast
    check_sqlite_exists(args.storage)
    study = load_study(args.study, args.storage)
    trial = choose_trial(study, pick)
    path = export_trial(study, trial, args.out)
    names = study.metric_names or [str(i) for i in range(len(trial.values))]
    vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values))
    print(f"nas export: trial {trial.number} ({vals}) -> {path}")
    data = study.user_attrs.get("data")
    hint = f" --data {shlex.quote(str(data))}" if data else ""
    print(f"  train it: nas train --config {path}{hint}")
    return 0
