"""The default search's front and wall time: front size and cost span, and how long
`nas search` with no arguments takes, alone and beside a competing CPU-bound job.

    python bench/bench_front.py                      # the default search, then with a competitor
    python bench/bench_front.py --runs alone         # only alone (or: --runs compete)
    python bench/bench_front.py --data DIR           # the same on a feature directory
    python bench/bench_front.py --study-db FILE      # only analyse an existing study

Each run is the real command (`python -m nas search [--data ...]`) in a fresh folder, under
`nice -n 10` like the other benchmarks unless --no-nice; the competitor is
`python -c 'while True: pass'` at the default priority. It prints, per run: wall time, the
load average before, during (sampled every 5 s) and after, trials trained, the front
(every full-budget configuration no other one dominates) as a table, its size, the number of
distinct fusion structures on it, and the span (max / min) of each cost objective over it.
Then the fronts the same full-budget trials would have under other objective sets
(recall with query cost, with index cost, with both, with a serving cost query + index =
one query per indexed clip), recomputed from the recorded metrics and costs: the evidence
for the default objectives (README "Objectives").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import ROOT, add_out_arg, machine_info, print_machine, write_json

FUSION_KEYS_NOT_STRUCTURE = {"config_id"}
OBJECTIVE_SETS = {
    "recall + query_gflops": ("query_gflops",),
    "recall + index_gflops": ("index_gflops",),
    "recall + query_gflops + index_gflops (default)": ("query_gflops", "index_gflops"),
    "recall + serve_gflops (query + index)": ("serve",),
}


def _load() -> float:
    return os.getloadavg()[0]


class LoadSampler:
    """1-minute load average every ``every`` seconds, in a thread."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(_load())

    def __enter__(self) -> "LoadSampler":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def run_default_search(workdir: Path, data: str | None, compete: bool, nice: bool,
                       extra: list[str]) -> dict[str, Any]:
    """`python -m nas search` (no arguments but --data/extra) in ``workdir``; wall and load."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled",
               RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "nas", "search", *(["--data", data] if data else []), *extra]
    if nice:
        cmd = ["nice", "-n", "10", *cmd]
    hog = None
    if compete:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(2)
    before = _load()
    t0 = time.monotonic()
    try:
        with LoadSampler() as ls:
            r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"nas search failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return {"command": " ".join(cmd[cmd.index("-m") - 1:]) if "-m" in cmd else " ".join(cmd),
            "compete": compete, "wall_s": wall, "load_before": before,
            "load_during": ls.samples, "load_after": _load(),
            "stdout_tail": r.stdout[-4000:], "db": str(workdir / "studies.db")}


def _structure(fusion: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in fusion.items()
                        if k not in FUSION_KEYS_NOT_STRUCTURE))


def analyse(db: str) -> dict[str, Any]:
    """Front, spans and the alternative fronts of the study in ``db``."""
    import optuna

    from nas.config import FusionConfig
    from nas.search.pareto import full_budget_trials, pareto_front, pareto_mask, study_hypervolume

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    names = list(study.metric_names)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("status") in ("complete", "stopped",
                                                                     "failed")]
    full = full_budget_trials(study)
    front = pareto_front(study)
    rows = []
    for t in front:
        f = t.user_attrs.get("fusion") or {}
        rows.append({"trial": t.number, **dict(zip(names, t.values)),
                     "text_conditioned": FusionConfig.from_dict(f).text_conditioned,
                     "fusion": f, "params": t.params})
    spans = {}
    for j, n in enumerate(names):
        if n in ("recall", "v2t_recall"):
            continue
        v = [t.values[j] for t in front]
        spans[n] = max(v) / min(v) if v and min(v) > 0 else float("nan")
    structures = {_structure(r["fusion"]) for r in rows}
    # the same full-budget trials under other objective sets
    alt = {}
    for label, costs in OBJECTIVE_SETS.items():
        vals = []
        for t in full:
            m = t.user_attrs.get("metrics") or {}
            c = t.user_attrs.get("costs") or {}
            row = [float(m.get("recall", t.values[0]))]
            for k in costs:
                row.append(float(c["query_gflops"]) + float(c["index_gflops"]) if k == "serve"
                           else float(c[k]))
            vals.append(row)
        if not vals:
            alt[label] = {"front": 0, "structures": 0, "span": {}}
            continue
        v = np.array(vals)
        mask = pareto_mask(v, ["maximize"] + ["minimize"] * len(costs))
        on = [t for t, m in zip(full, mask) if m]
        alt[label] = {
            "front": int(mask.sum()),
            "structures": len({_structure(t.user_attrs.get("fusion") or {}) for t in on}),
            "span": {k: float(v[mask, j + 1].max() / v[mask, j + 1].min())
                     for j, k in enumerate(costs)}}
    return {"study": study.study_name, "objectives": names, "trained": len(trained),
            "full_budget": len(full), "front_size": len(front),
            "fusion_structures_on_front": len(structures), "cost_span": spans,
            "hypervolume": study_hypervolume(study, front), "front": rows,
            "alternatives": alt,
            "reference_params": study.user_attrs.get("reference_params") or {}}


def print_analysis(a: dict[str, Any]) -> None:
    names = a["objectives"]
    print(f"study {a['study']!r}: {a['trained']} trials trained, {a['full_budget']} reached "
          f"the full budget; objectives {', '.join(names)}")
    print(f"front: {a['front_size']} trials, {a['fusion_structures_on_front']} distinct fusion "
          f"structures; hypervolume {a['hypervolume']:.3f}")
    for n, s in a["cost_span"].items():
        print(f"  {n}: span {s:.1f}x over the front")
    ref = a["reference_params"]
    print("\n| trial | " + " | ".join(names) + " | text-conditioned | changed from the reference |")
    print("|---" * (len(names) + 3) + "|")
    for r in a["front"]:
        changed = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in r["params"].items() if ref.get(k) != v)
        vals = " | ".join(f"{r[n]:.4g}" for n in names)
        print(f"| {r['trial']} | {vals} | {'yes' if r['text_conditioned'] else 'no'} | "
              f"{changed or '(reference)'} |")
    print("\nthe same full-budget trials under other objectives:")
    for label, alt in a["alternatives"].items():
        span = ", ".join(f"{k} {v:.1f}x" for k, v in alt["span"].items())
        print(f"  {label}: front {alt['front']} ({alt['structures']} fusion structures)"
              f"{'; span ' + span if span else ''}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="--data for nas search (default: the space's)")
    ap.add_argument("--runs", default="alone,compete",
                    help="comma list of alone, compete (default: both, alone first)")
    ap.add_argument("--study-db", default=None, help="only analyse this studies.db")
    ap.add_argument("--no-nice", action="store_true")
    ap.add_argument("--keep", default=None, help="folder to keep the runs' studies in")
    ap.add_argument("extra", nargs="*", help="more nas search arguments (after --)")
    add_out_arg(ap, "front.json")
    args = ap.parse_args()
    info = machine_info()
    print_machine(info)
    out: dict[str, Any] = {"machine": info, "runs": []}
    if args.study_db:
        a = analyse(args.study_db)
        print_analysis(a)
        out["runs"].append({"analysis": a})
        write_json(args.out, out)
        return
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench-front-"))
    for kind in [k.strip() for k in args.runs.split(",") if k.strip()]:
        work = base / kind
        work.mkdir(parents=True, exist_ok=True)
        print(f"\n=== nas search{' --data ' + args.data if args.data else ''} "
              f"({'beside a competing CPU-bound job' if kind == 'compete' else 'alone'}) ===")
        run = run_default_search(work, args.data, kind == "compete", not args.no_nice,
                                 args.extra)
        during = run["load_during"]
        print(f"wall {run['wall_s']:.0f} s ({run['wall_s'] / 60:.1f} min); load average "
              f"before {run['load_before']:.1f}, during {min(during, default=float('nan')):.1f}"
              f"-{max(during, default=float('nan')):.1f} (mean "
              f"{float(np.mean(during)) if during else float('nan'):.1f}), after "
              f"{run['load_after']:.1f}")
        a = analyse(run["db"])
        print_analysis(a)
        run["analysis"] = a
        out["runs"].append(run)
        ok = (a["front_size"] >= 5 and a["fusion_structures_on_front"] >= 5
              and max(a["cost_span"].values(), default=0) >= 10)
        print(f"FIGURE: {kind}: wall {run['wall_s'] / 60:.1f} min at load "
              f"{float(np.mean(during)) if during else run['load_before']:.1f}; front "
              f"{a['front_size']} ({a['fusion_structures_on_front']} structures), largest cost "
              f"span {max(a['cost_span'].values(), default=float('nan')):.0f}x; acceptance "
              f"(>= 5 structures, >= 10x) {'met' if ok else 'MISSED'}")
    write_json(args.out, out)


if __name__ == "__main__":
    main()
