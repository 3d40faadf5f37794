"""``nas export``: write one configuration of a study's front as a config file."""

from __future__ import annotations

import argparse
import re
import shlex
from typing import Any

from nas import DEFAULT_STORAGE
from nas.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a chosen trial's configuration as CONFIG.yaml",
                       description="Pick a full-budget trial and write its FusionConfig and "
                                   "TrainConfig in the format `nas train --config` reads.")
    p.add_argument("--study", default=None,
                   help="study name (default: the only study in the storage)")
    p.add_argument("--storage", default=DEFAULT_STORAGE,
                   help="SQLAlchemy URL of the study storage (default: sqlite:///studies.db)")
    p.add_argument("--pick", default="knee",
                   help="knee | best:OBJECTIVE | under:OBJECTIVE<=VALUE | trial:N "
                        "(default knee)")
    p.add_argument("--out", default=None,
                   help="config file to write (YAML; default: named after the pick, e.g. "
                        "knee.yaml, best-recall.yaml, trial-12.yaml)")
    p.set_defaults(func=run)


def load_study(name: str | None, storage: str) -> Any:
    """Load a study by name (None: the only study there), or raise a UserError listing the
    studies that exist."""
    import optuna

    try:
        st = optuna.storages.get_storage(storage)
    except Exception as e:  # SQLAlchemy raises many kinds for a bad URL
        raise UserError(f"--storage {storage!r}: cannot open: {e}") from None
    names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
    if name is None:
        # a verdict's companion study ("<study>:verdict", nas verdict) is not a search
        searches = [n for n in names if not n.endswith(":verdict")]
        if len(searches) != 1:
            raise UserError(f"--study: {storage} holds {len(searches)} studies "
                            f"({', '.join(searches) or 'none'}); name one with --study NAME")
        name = searches[0]
    if name not in names:
        raise UserError(f"--study {name!r}: no such study in {storage}; studies there: "
                        f"{names or 'none'}")
    return optuna.load_study(study_name=name, storage=st)


def default_out(pick: str) -> str:
    """The file ``--out`` defaults to: the pick as a file name (``best:recall`` ->
    ``best-recall.yaml``, ``under:query_gflops<=0.5`` -> ``under-query_gflops-le-0.5.yaml``)."""
    slug = pick.strip().replace("<=", "-le-").replace(">=", "-ge-")
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", slug).strip("-.")
    return f"{slug or 'config'}.yaml"


def run(args: argparse.Namespace) -> int:
    from nas.cli.dashboard import check_sqlite_exists
    from nas.config import config_key, load_config_file
    from nas.export import choose_trial, export_trial, parse_pick

    pick = parse_pick(args.pick)  # before touching the storage: bad syntax fails fast
    check_sqlite_exists(args.storage)
    study = load_study(args.study, args.storage)
    trial = choose_trial(study, pick)
    path = export_trial(study, trial, args.out or default_out(args.pick))
    names = study.metric_names or [str(i) for i in range(len(trial.values))]
    vals = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values))
    print(f"nas export: trial {trial.number} ({vals}) -> {path}")
    fusion, train = load_config_file(path)  # what nas train will read
    on = " (on the study's data, recorded in the file)" if study.user_attrs.get("data") else ""
    print(f"  config_id {config_key(fusion, train)}, fusion_id {fusion.fusion_id}; train it: "
          f"nas train --config {shlex.quote(str(path))}{on}")
    return 0
