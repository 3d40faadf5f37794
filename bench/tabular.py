"""Tabular benchmark of the fusion space: build the table, replay search methods on it.

    python bench/tabular.py build                       # bench/tabular_data/synthetic.sqlite
    python bench/tabular.py build --data SPEC --out FILE  # any data spec (e.g. the digits set)
    python bench/tabular.py replay                      # every method, 50 seeds, simulated time
    python bench/tabular.py replay --methods tool,random --seeds 5 --trials 30
    python bench/tabular.py info                        # what a table holds

``build`` trains every configuration of ``bench/tabular_space.yaml`` (or ``--space``) at every
rung for each ``--seeds`` seed into one SQLite file (see ``tabular_table``); a killed build
resumes. ``replay`` runs each method against the table with simulated time (see
``tabular_replay``) and prints hypervolume against simulated compute. Bad input (a missing
or foreign table file, a table of another space, an unknown method): one line on stderr,
exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine_info, print_machine

SPACE = ROOT / "bench" / "tabular_space.yaml"
TABLE = ROOT / "bench" / "tabular_data" / "synthetic.sqlite"


def _build(args: argparse.Namespace) -> int:
    from nas.errors import UserError
    from nas.search.space import load_space

    from tabular_table import build

    space = load_space(args.space)
    info = machine_info()
    print_machine(info)
    if args.seeds < 1 or args.first_seed < 0:
        raise UserError("--seeds must be positive and --first-seed >= 0")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    build(space, args.data or space.data or "synthetic", args.out, seeds, limit=args.limit,
          machine=info, log=lambda s: print(s, flush=True))
    return 0


def _info(args: argparse.Namespace) -> int:
    from tabular_table import open_table

    t = open_table(args.table)
    m = t.meta
    print(f"{t.path}: space {m['space_name']} (hash {m['space_hash']}), data {m['data']}, "
          f"rungs {m['rungs']}, {len(t.configs)} configurations, complete seeds {t.seeds}, "
          f"{len(t.results)} runs; built {m.get('created')}")
    for line in agreement(t) + agnostic_halving(t):
        print(line)
    return 0


def rung_signals() -> dict[str, Callable[[Mapping[str, Any]], float]]:
    """What early stopping can rank by at a rung (nas.search.objectives.RUNG_SIGNALS), as
    a score of a rung's metrics where higher is better: the recall itself, or the mean
    rank of the matching clip (lower is better: negated)."""
    from nas.search.objectives import OBJECTIVES

    rank_key = OBJECTIVES["recall"].rung_key  # the one definition of the early signal
    return {"recall": lambda m: m["recall"], "mean rank": lambda m: -m[rank_key]}


def agreement(t: Any) -> list[str]:
    """How much the table's ranking of configurations is signal: full-budget recall of each
    pair of complete seeds against each other, and each early rung against the full budget
    (Spearman over the configurations). A table whose seeds disagree rewards luck, not
    search; one whose first rung does not rank gives early stopping nothing to use."""
    from nas.report.data import spearman

    seeds, res, rungs = t.seeds, t.results, t.rungs
    cids = sorted(t.configs)
    full = {s: [res[(c, s)][-1]["recall"] for c in cids] for s in seeds}
    out = [f"  full-budget recall, seed {a} vs seed {b}: Spearman {spearman(full[a], full[b]):.3f}"
           for i, a in enumerate(seeds) for b in seeds[i + 1:]]
    for name, f in rung_signals().items():
        for s in seeds:
            try:
                rho = [spearman([f(res[(c, s)][r]["metrics"]) for c in cids], full[s])
                       for r in range(len(rungs) - 1)]
            except KeyError:
                continue  # a table built without the ranks in its metrics
            out.append(f"  seed {s}, rung {name} vs full-budget recall: "
                       + ", ".join(f"r{r} ({rungs[r]:g} ep) {x:.3f}"
                                   for r, x in enumerate(rho)))
    return out


def agnostic_halving(t: Any, budget_trials: float = 24.0) -> list[str]:
    """A yardstick for the replay's efficiency figures: successive halving (eta 2, the
    table's rungs) over exactly the table's text-agnostic configurations, an oracle that is
    told where the 2-D front's top lies (text-agnostic configurations answer a query with
    1/1000 of a text-conditioned one's FLOPs, so the best of them sets most of the 2-D
    hypervolume). Per seed and rung signal: its CPU seconds as a share of the replay's
    default budget (``budget_trials`` x the mean full-budget trial, CPU clock), and the
    full-budget recall it ends with against the best text-agnostic one of the table."""
    from tabular_replay import replay_budget

    res = t.results
    budget = replay_budget(t, budget_trials, "cpu")
    agnostic = sorted(c for c, row in t.configs.items() if not row["text_conditioned"])
    if not agnostic:
        return []
    best = {s: max(res[(c, s)][-1]["recall"] for c in agnostic) for s in t.seeds}
    out = [f"  successive halving over the {len(agnostic)} text-agnostic configurations "
           f"only (an oracle's yardstick), share of a {budget_trials:g}-trial budget:"]
    for name, f in rung_signals().items():
        for s in t.seeds:
            alive, cpu = agnostic, 0.0
            for r in range(len(t.rungs)):
                cpu += sum(res[(c, s)][r]["cpu_s"] - (res[(c, s)][r - 1]["cpu_s"] if r else 0.0)
                           for c in alive)
                if r < len(t.rungs) - 1:
                    alive = sorted(alive, key=lambda c: -f(res[(c, s)][r]["metrics"]))
                    alive = alive[:max(1, len(alive) // 2)]
            found = max(res[(c, s)][-1]["recall"] for c in alive)
            out.append(f"    seed {s}, ranked by {name}: {cpu / budget:.0%} of the budget "
                       f"({cpu:.1f} CPU s), ends at recall {found:.1f} (best {best[s]:.1f})")
    return out


def _replay(args: argparse.Namespace) -> int:
    from tabular_replay import main_replay

    return main_replay(args)


def main(argv: list[str] | None = None) -> int:
    from nas.errors import UserError

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="train every configuration of the sub-space into a table")
    b.add_argument("--space", default=str(SPACE), help="the (finite) sub-space file")
    b.add_argument("--data", default=None, help="data spec (default: the space's own)")
    b.add_argument("--out", default=str(TABLE),
                   help="the table file (SQLite); resumed if it exists")
    b.add_argument("--seeds", type=int, default=2,
                   help="how many training seeds (default 2: seeds 0 and 1)")
    b.add_argument("--first-seed", type=int, default=0,
                   help="start at this training seed (one process per seed builds a table "
                        "in parallel: --seeds 1 --first-seed K into the same --out)")
    b.add_argument("--limit", type=int, default=None, help="only the first N configurations")
    b.set_defaults(fn=_build)
    i = sub.add_parser("info", help="describe a table")
    i.add_argument("--table", default=str(TABLE))
    i.set_defaults(fn=_info)
    r = sub.add_parser("replay", help="replay search methods on a table with simulated time")
    from tabular_replay import add_replay_args
    add_replay_args(r, default_table=str(TABLE), default_space=str(SPACE))
    r.set_defaults(fn=_replay)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
