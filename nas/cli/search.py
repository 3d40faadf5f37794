"""``nas search``: multi-objective architecture search on Optuna + Ray Tune into studies.db."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time

from nas import DEFAULT_STORAGE
from nas.errors import SearchStopped, UserError

__all__ = ["add_parser", "run"]


def _pos_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def _nonneg_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


_UNITS_S = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_UNITS_B = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6,
            "mib": 2**20, "g": 2**30, "gb": 10**9, "gib": 2**30}


def _parse(s: str, units: dict, what: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", s)
    if not m or m.group(2).lower() not in units:
        raise argparse.ArgumentTypeError(f"{s!r} is not a {what}")
    return float(m.group(1)) * units[m.group(2).lower()]


def duration(s: str) -> float:
    """'30s', '2m', '1.5h' or plain seconds -> seconds."""
    return _parse(s, _UNITS_S, "duration (e.g. 30s, 2m, 1h)")


def size(s: str) -> float:
    """'100MB', '1GiB', '0' -> bytes."""
    return _parse(s, _UNITS_B, "size (e.g. 100MB, 1GiB, 0)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nas search``."""
    from nas.search.objectives import DEFAULT_OBJECTIVES, OBJECTIVES, RUNG_SIGNALS
    from nas.search.sampler import SAMPLERS
    from nas.search.scheduler import PROMOTIONS

    p = subparsers.add_parser(
        "search", help="search the fusion design space (Optuna + Ray Tune) into studies.db",
        description="Propose configurations with an Optuna sampler, train them as short "
                    "proxies on Ray Tune, stop weak ones early with multi-objective "
                    "successive halving, and record every trial in an Optuna study. With no "
                    "arguments: the gated_fusion space on embedded synthetic data, ending by "
                    "itself after its 5-minute time budget. Running the same command again "
                    "resumes.")
    p.add_argument("--space", default="gated_fusion", metavar="FILE",
                   help="search-space file or shipped name (default: gated_fusion)")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="study name (default: the space's name)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, metavar="URL",
                   help="Optuna storage URL (default: sqlite:///studies.db)")
    p.add_argument("--data", default=None, metavar="SPEC",
                   help="'synthetic[:k=v,...]', 'digits[:k=v,...]' (real signals, shipped) "
                        "or a feature directory (default: the space's)")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="trained trials in the study in total (default: the space's)")
    p.add_argument("--time-budget", default=None, metavar="DURATION",
                   help="wall-clock limit of this run, e.g. 90s, 20m, 1.5h (default: the "
                        "space's time_budget); at the limit the running trials are recorded "
                        "as failed and re-queued, and running the command again continues "
                        "the study with a fresh budget")
    p.add_argument("--concurrency", type=int, default=0, metavar="N",
                   help="trials at once (default: CPUs / --cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=_pos_float, default=1.0, metavar="N")
    p.add_argument("--gpus-per-trial", type=_nonneg_float, default=0.0, metavar="F",
                   help="fractional GPUs per trial, e.g. 0.25")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="connect to an existing Ray cluster (default: start a local one)")
    p.add_argument("--sampler", default="tpe", choices=SAMPLERS)
    p.add_argument("--cost-aware", action="store_true",
                   help="choose each proposal among the sampler's own, its untried "
                        "one-parameter neighbours and untried uniform draws by the "
                        "hypervolume it can be expected to add per estimated training "
                        "second (exact costs; quality predicted by a Gaussian process of "
                        "the trials so far). Off by default: up to 4 new cost estimates per "
                        "trial, about 0.05-0.3 CPU s each; it pays where trials are long "
                        "(BENCHMARKS.md section 8)")
    p.add_argument("--rung-signal", default="mean_rank", choices=RUNG_SIGNALS,
                   help="what early stopping ranks trials by at the rungs before the full "
                        "budget: the mean rank of the matching clip (default; it ranks the "
                        "full-budget recall better after a short first rung, BENCHMARKS.md "
                        "section 2) or each objective's own value")
    p.add_argument("--promotion", default="hypervolume", choices=PROMOTIONS,
                   help="how early stopping cuts the last Pareto front at a rung: drop the "
                        "trial that adds least hypervolume, one at a time (default) or "
                        "NSGA-II's crowding distance (keeps weak extremes; BENCHMARKS.md "
                        "section 8)")
    p.add_argument("--hedge", type=int, default=0, metavar="N",
                   help="every N-th trial is not stopped at the first rung (Hyperband's "
                        "second bracket: a hedge against a first rung that ranks badly); "
                        "0 = none (default). Measured on 100 seeds: no gain without the "
                        "warm start (an early gain on 50 seeds did not hold), and it costs "
                        "hypervolume with it (BENCHMARKS.md section 8)")
    p.add_argument("--no-warm-start", dest="warm_start", action="store_false",
                   help="a new study starts without the warm-start queue (AVIGATE, the "
                        "reference and the plan's single variants); the first trials are "
                        "then spread over the exact costs (BENCHMARKS.md section 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objectives", default=DEFAULT_OBJECTIVES, metavar="A,B,...",
                   help=f"from: {', '.join(OBJECTIVES)} (default: {DEFAULT_OBJECTIVES})")
    p.add_argument("--max", action="append", default=[], metavar="COST=V", dest="limits",
                   help="cost limit, e.g. query_gflops=5 (repeatable); over-limit "
                        "configurations are skipped before training")
    p.add_argument("--min-budget", type=_pos_float, default=None, metavar="EPOCHS")
    p.add_argument("--max-budget", type=_pos_float, default=None, metavar="EPOCHS")
    p.add_argument("--eta", type=_pos_float, default=None,
                   help="successive-halving reduction factor (> 1)")
    p.add_argument("--no-prune", action="store_true", help="train every trial to full budget")
    p.add_argument("--trial-retries", type=int, default=0, metavar="N",
                   help="restart a trial whose worker died up to N times")
    p.add_argument("--trial-timeout", type=duration, default=None, metavar="DURATION",
                   help="fail a trial that runs longer than this (e.g. 30m) and free its "
                        "worker (default: no limit)")
    p.add_argument("--db-retry", type=duration,
                   default=os.environ.get("NAS_DB_RETRY", "120s"), metavar="DURATION",
                   help="how long to wait for the database through an outage (restart, "
                        "failover) before stopping (default: $NAS_DB_RETRY or 120s)")
    p.add_argument("--min-free", type=size, default="100MiB", metavar="SIZE",
                   help="start no new trial when the study's or the artifacts' disk has "
                        "less free space; stop cleanly instead (default: 100MiB; 0: off)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    # Hidden: another evaluator ('fake': the torch-free one of nas.search.testing, or a
    # module's import path, see EvaluatorSpec.named) and in-process execution (tests).
    p.add_argument("--evaluator", default="real", help=argparse.SUPPRESS)
    p.add_argument("--executor", default="ray", choices=["ray", "local"], help=argparse.SUPPRESS)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Parse, delegate to ``nas.search.driver.run_search``, print the front and hints."""
    started_at = time.monotonic()  # the time budget counts from here (before the imports)
    import optuna

    from nas.search.driver import SearchOptions, format_front, run_search
    from nas.search.evaluator import EvaluatorSpec, RayOptions

    if args.concurrency < 0:
        raise UserError(f"--concurrency must be >= 0, got {args.concurrency}")
    if args.trial_retries < 0:
        raise UserError(f"--trial-retries must be >= 0, got {args.trial_retries}")
    if args.eta is not None and args.eta <= 1:
        raise UserError(f"--eta must be > 1, got {args.eta}")
    time_budget_s = None
    if args.time_budget is not None:
        from nas.search.space import parse_duration

        try:
            time_budget_s = parse_duration(args.time_budget)
        except ValueError as e:
            raise UserError(f"--time-budget {args.time_budget!r}: {e}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opts = SearchOptions(
        space=args.space, study=args.study, storage=args.storage, data=args.data,
        trials=args.trials, sampler=args.sampler, cost_aware=args.cost_aware,
        rung_signal=args.rung_signal, promotion=args.promotion, hedge=args.hedge,
        seed=args.seed,
        warm_start=args.warm_start,
        objectives=args.objectives,
        limits=list(args.limits), min_budget=args.min_budget, max_budget=args.max_budget,
        eta=args.eta, prune=not args.no_prune,
        ray=RayOptions(address=args.address, concurrency=args.concurrency,
                       cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                       max_failures=args.trial_retries),
        evaluator=EvaluatorSpec.named(args.evaluator), executor=args.executor,
        quiet=args.quiet, time_budget_s=time_budget_s, started_at=started_at,
        db_retry_s=args.db_retry, min_free=args.min_free, trial_timeout_s=args.trial_timeout)
    try:
        summary = run_search(opts)
    except SearchStopped as e:  # an infrastructure fault: nothing lost, rerun to resume
        print(f"nas search: error: {e}", file=sys.stderr)
        return e.exit_code
    import optuna as _o

    study = _o.load_study(study_name=summary.study_name, storage=opts.storage)
    print(format_front(study, summary.front))
    print(f"\nstudy {summary.study_name!r}: {summary.trained}/{summary.target} trials trained "
          f"({', '.join(f'{k.lower()} {v}' for k, v in sorted(summary.states.items()))}); "
          f"hypervolume {summary.hypervolume:.4g}; {summary.elapsed_s:.0f} s")
    if summary.time_up:
        print(f"time budget reached ({summary.time_budget_s:g} s): the running trials were "
              "recorded as failed and re-queued; run the same command again to continue the "
              "study with a fresh budget.", file=sys.stderr)
    if summary.interrupted:
        print("interrupted: running trials were recorded as failed and re-queued; run the "
              "same command again to continue.", file=sys.stderr)
        return 130
    from nas.dashboard import artifact_dir_for

    url, art = shlex.quote(opts.storage), shlex.quote(str(artifact_dir_for(opts.storage)))
    where = f" --study {shlex.quote(summary.study_name)}" + (
        f" --storage {url}" if opts.storage != DEFAULT_STORAGE else "")
    print(f"\nOpen the dashboard:  nas dashboard --storage {url}\n"
          f"  (or plain:         optuna-dashboard {url} --artifact-dir {art})\n"
          f"Report, export:      nas report{where}   nas export{where} --pick knee\n"
          "Scale up:            --address <ray head> (a cluster), --gpus-per-trial 0.25, "
          "--data DIR (real features), --trials N")
    return 0
