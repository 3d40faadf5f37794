"""``nas verdict``: the measured effect of each variant of the plan, with an interval and
one word (pays / costs without paying / no measurable effect / not tested)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas import DEFAULT_STORAGE
from nas.errors import UserError

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    from nas.cli.search import _nonneg_float, _pos_float

    p = sub.add_parser(
        "verdict", help="which variants of the plan pay, and at what cost",
        description="Train the study's knee (or another front point) and the same point with "
                    "each variant added (if off) or removed (if on), per seed, at the full "
                    "budget, on Ray; print each variant's effect on every objective with a "
                    "90% interval and a verdict. Runs are recorded in the companion study "
                    "'<study>:verdict', so a rerun trains only what is missing. Also prints "
                    "a quick estimate from the study's own trials (no training).")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="study name (default: the only study in the storage)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help=f"Optuna storage URL (default: {DEFAULT_STORAGE})")
    p.add_argument("--point", default="knee", metavar="PICK",
                   help="front point: knee | trial:N | best:OBJECTIVE | "
                        "under:OBJECTIVE<=VALUE (default knee)")
    p.add_argument("--seeds", type=int, default=3,
                   help="runs of each configuration, paired by seed (default 3, min 2)")
    p.add_argument("--variants", default=None, metavar="A,B",
                   help="plan variants to test (default: all 14, e.g. "
                        "text_guidance,residual_gate)")
    p.add_argument("--quick", action="store_true",
                   help="only the quick estimate from the study's trials: no training")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for verdict.json/csv (default runs/verdict-<study>-trial<N>)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="connect to an existing Ray cluster (default: start a local one)")
    p.add_argument("--concurrency", type=int, default=0, metavar="N",
                   help="runs at once (default: CPUs / --cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=_pos_float, default=1.0, metavar="N")
    p.add_argument("--gpus-per-trial", type=_nonneg_float, default=0.0, metavar="F")
    # Hidden, as for nas search: another evaluator and in-process execution (tests).
    p.add_argument("--evaluator", default="real", help=argparse.SUPPRESS)
    p.add_argument("--executor", default="ray", choices=["ray", "local"], help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import optuna

    from nas.cli.dashboard import check_sqlite_exists
    from nas.cli.export import load_study
    from nas.search._optuna import storage_of
    from nas.search.driver import check_ray_address
    from nas.search.evaluator import EvaluatorSpec, RayOptions
    from nas.verdict import output
    from nas.verdict.core import VerdictOptions, run_verdict

    if args.concurrency < 0:
        raise UserError(f"--concurrency must be >= 0, got {args.concurrency}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_sqlite_exists(args.storage)
    if not args.quick and args.executor == "ray":
        check_ray_address(args.address)
    study = load_study(args.study, args.storage)
    name = study.study_name
    opts = VerdictOptions(point=args.point, seeds=args.seeds, variants=args.variants,
                          quick_only=args.quick,
                          ray=RayOptions(address=args.address, concurrency=args.concurrency,
                                         cpus_per_trial=args.cpus_per_trial,
                                         gpus_per_trial=args.gpus_per_trial),
                          evaluator=EvaluatorSpec.named(args.evaluator),
                          executor=args.executor)
    res = run_verdict(study, storage_of(study), opts)
    doc = res.doc
    print(output.format_quick(doc))
    if "rows" in doc:
        print()
        print(output.format_table(doc))
    out = Path(args.out) if args.out else \
        Path("runs") / f"verdict-{name.replace('/', '_')}-trial{doc['point']['trial']}"
    paths = output.write_files(doc, out)
    artifact = output.attach(study, doc, args.storage)
    print(f"\nnas verdict: wrote {', '.join(map(str, paths))}", file=sys.stderr)
    if "rows" in doc:
        print(f"nas verdict: {res.trained} run(s) trained now, {res.reused} reused from "
              f"{doc['companion']!r}, {res.lost} lost; {res.elapsed_s:.0f} s. In the "
              f"dashboard: study {name!r} attribute 'verdict' and artifact {artifact}; every "
              f"run in study {doc['companion']!r}", file=sys.stderr)
    if res.lost:
        print("nas verdict: some runs were lost with their worker; run the same command "
              "again to train them", file=sys.stderr)
        return 1
    return 0
