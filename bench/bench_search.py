"""Search efficiency: hypervolume against consumed compute, this tool vs the alternatives.

    python bench/bench_search.py                 # reduced: 5 seeds, quick space (~20 min, 2 CPUs)
    python bench/bench_search.py --full          # 10 seeds, more trials
    python bench/bench_search.py --seeds 5 --trials 12 --space quick --methods a,a0,b,c,d

Same trainable (``nas.train.train_proxy``), same data, same space and the same fixed
hypervolume reference point for every method:

(a) ``tool``   this tool as shipped: ``run_search`` with its default sampler (TPE viewed
               through the learning sampler), MO-ASHA early stopping and the warm start;
(a0) ``tool_nows`` the same without the warm start (to tell its share apart);
(b) ``random`` multi-objective random search, every trial to the full budget;
(c) ``tpe``    Optuna TPE (multi-objective), every trial to the full budget;
(d) ``ray``    the integration a user writes first: Ray Tune's stock ``OptunaSearch``
               (multi-objective TPE over the same space) with ``ASHAScheduler`` on recall,
               scored honestly: trials ASHA stopped never enter its front.

(a)-(c) run through ``nas.search.driver.run_search`` in this process (``executor="local"``:
the same searcher, scheduler and records as on Ray, without Ray); (a0), (b) and (c) start
from a study created beforehand, so they get no warm start. (d) runs on Ray Tune. Every method runs
one trial at a time (so trial wall-clock seconds are comparable), and the methods of one
seed run back to back, so load from other processes hits them alike.

Compute = sum of the trials' own wall-clock seconds (``train_proxy``'s ``wall_s``; for a
stopped trial, up to the rung where it stopped); epoch-equivalents = sum of epochs trained.
Hypervolume of the full-budget Pareto front of (recall max, query_gflops min) w.r.t. a fixed
reference point, via ``nas.search.hypervolume``: recall 0 and 1.1 x the largest query GFLOPs
of 64 configurations drawn from the space (see ``hv_reference``).

Printed figure: the fraction of random search's final compute at which (a) reaches random
search's final hypervolume (per seed, then the median; target <= 25%).
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS,
    add_out_arg,
    fmt_summary,
    machine_info,
    print_machine,
    sample_configs,
    summary,
    write_json,
)

METHODS = {
    "tool": "(a) this tool: TPE + MO-ASHA + warm start",
    "tool_nows": "(a0) this tool without warm start",
    "random": "(b) random search, no early stopping",
    "tpe": "(c) Optuna TPE, no early stopping",
    "ray": "(d) Ray Tune OptunaSearch + ASHAScheduler(recall), stopped trials excluded",
}
ALIASES = {"a": "tool", "a0": "tool_nows", "b": "random", "c": "tpe", "d": "ray"}


# ----------------------------------------------------------------------------- hypervolume

def hv_reference(space: Any, data: Any, n: int = 64) -> list[float]:
    """(recall, query_gflops) reference point, fixed for every method and seed: recall 0
    and 1.1 x the largest query GFLOPs among the reference configuration and ``n`` configs
    drawn from the space.

    Not the study's own ``hv_reference`` (twice the reference configuration's cost): in
    the quick space some configurations cost slightly more than that and would add
    nothing to any front, which would hide the methods that find strong expensive ones.
    """
    from nas.cost import estimate_costs

    configs = sample_configs(space, n, seed=12345, shapes=data.shapes, include_reference=True)
    top = max(float(estimate_costs(f, data.shapes, gallery=1000)["query_gflops"])
              for _, f, _ in configs)
    return [0.0, 1.1 * top]


def hv_of(points: list[tuple[float, float]], ref: list[float]) -> float:
    """Hypervolume of (recall, query_gflops) points (full-budget trials only)."""
    import numpy as np

    from nas.search import hypervolume

    if not points:
        return 0.0
    losses = np.array([[-r, q] for r, q in points], dtype=float)
    return hypervolume(losses, [-ref[0], ref[1]])


def curve(trials: list[dict], ref: list[float]) -> list[dict]:
    """Cumulative compute, epochs and hypervolume after each trial, in completion order."""
    out, pts, comp, ep = [], [], 0.0, 0.0
    for t in trials:
        comp += t["wall_s"]
        ep += t["epochs"]
        if t["full"]:
            pts.append((t["recall"], t["query_gflops"]))
        out.append({"compute_s": comp, "epochs": ep, "hv": hv_of(pts, ref)})
    return out


# ----------------------------------------------------------------------------- (a)-(c)

def _study_trials(storage: str, name: str) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        if ua.get("status") not in ("complete", "stopped", "failed"):
            continue  # infeasible/duplicate trials trained nothing
        full = t.state == optuna.trial.TrialState.COMPLETE and bool(ua.get("full_budget"))
        rows.append({"number": t.number, "wall_s": float(ua.get("wall_s") or 0.0),
                     "epochs": float(ua.get("budget") or 0.0), "full": full,
                     "recall": float(t.values[0]) if full else float("nan"),
                     "query_gflops": float(ua.get("costs", {}).get("query_gflops", math.nan)),
                     "status": ua.get("status"), "t_end": t.datetime_complete.timestamp()
                     if t.datetime_complete else math.inf})
    rows.sort(key=lambda r: (r["t_end"], r["number"]))
    return rows


def create_baseline_study(storage: str, name: str, space: Any) -> None:
    """A study created beforehand, with the attribute by which the driver recognises an
    initialised study (``reference_params``): the driver resumes it, so it gets no
    warm-start queue. Without it the driver would finish "initialising" it."""
    import optuna

    from nas.search.objectives import DEFAULT_OBJECTIVES, parse_objectives

    objectives = parse_objectives(DEFAULT_OBJECTIVES)  # what the driver runs with by default
    st = optuna.create_study(study_name=name, storage=storage,
                             directions=[o.direction for o in objectives])
    st.set_metric_names([o.name for o in objectives])
    st.set_user_attr("reference_params", space.reference_params())


def run_tool(method: str, space: Any, data_spec: str, seed: int, trials: int,
             workdir: str) -> list[dict]:
    """(a), (a0), (b), (c) through the driver in this process."""
    import optuna

    from nas.search.driver import SearchOptions, run_search

    storage = f"sqlite:///{workdir}/{method}_{seed}.db"
    name = f"{method}_{seed}"
    if method != "tool":
        create_baseline_study(storage, name, space)
    sampler = {"tool": "tpe", "tool_nows": "tpe", "random": "random", "tpe": "tpe"}[method]
    prune = method in ("tool", "tool_nows")
    opts = SearchOptions(space=space.path, study=name, storage=storage, data=data_spec,
                         trials=trials, sampler=sampler, seed=seed, prune=prune,
                         executor="local", quiet=True)
    run_search(opts, out=io.StringIO())
    rows = _study_trials(storage, name)
    if method != "tool":
        st = optuna.load_study(study_name=name, storage=storage)
        if any("warm_start" in t.user_attrs for t in st.get_trials(deepcopy=False)):
            raise RuntimeError(f"{method}: the driver warm-started a baseline study")
    return rows


# ----------------------------------------------------------------------------- (d)

def _ray_trainable(config: dict, data: Any = None, rungs: list | None = None) -> None:
    """What a user writes first: train, report recall and the cost after each rung."""
    from ray import tune

    from nas.config import FusionConfig, TrainConfig
    from nas.train import train_proxy

    fusion = FusionConfig.from_dict(config["fusion"])
    train = TrainConfig.from_dict(config["train"])
    costs = config["costs"]

    def report(i: int, m: dict) -> None:
        tune.report({"recall": m["recall"], "query_gflops": costs["query_gflops"],
                     "epochs": m["epochs"], "wall_s": m["wall_s"], "rung": i})

    train_proxy(fusion, train, data, rungs=rungs, report=report)


class _Define:
    """Define-by-run space for ``OptunaSearch``: the space file's own ``suggest``; a
    module-level class because Tune pickles the searcher (a closure would not pickle)."""

    def __init__(self, space: Any, over: dict, shapes: Any) -> None:
        self.space, self.over, self.shapes = space, over, shapes

    def __call__(self, trial: Any) -> dict:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        from nas.cost import estimate_costs

        def suggest(name: str, dist: Any) -> Any:
            if isinstance(dist, CategoricalDistribution):
                return trial.suggest_categorical(name, dist.choices)
            if isinstance(dist, IntDistribution):
                return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
            return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
        _, f, t = self.space.suggest(suggest, self.over)
        q = float(estimate_costs(f, self.shapes)["query_gflops"])
        return {"fusion": f.to_dict(), "train": t.to_dict(), "costs": {"query_gflops": q}}


def run_ray(space: Any, data: Any, seed: int, trials: int, workdir: str) -> list[dict]:
    """(d): ``OptunaSearch`` (multi-objective TPE) + ``ASHAScheduler`` on recall."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from nas.data import model_inputs

    over = model_inputs(data.shapes)
    rungs = space.proxy.rungs()

    searcher = OptunaSearch(space=_Define(space, over, data.shapes),
                            metric=["recall", "query_gflops"], mode=["max", "min"],
                            sampler=optuna.samplers.TPESampler(seed=seed))
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="recall", mode="max",
                              max_t=len(rungs), grace_period=1,
                              reduction_factor=space.proxy.eta)
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_ray_trainable, data=data, rungs=rungs),
                            {"cpu": 1}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=trials, max_concurrent_trials=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=f"ray_{seed}", storage_path=workdir, verbose=0,
                                  log_to_file=False))
    # Tune's result grid looks for result files that log_to_file=False does not write:
    # keep its warnings about them off the terminal (as nas.search.ray_adapter does).
    quiet = logging.getLogger("ray.tune")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        grid = tuner.fit()
    finally:
        quiet.setLevel(level)
    rows = []
    for r in grid:
        m = r.metrics or {}
        if "recall" not in m:  # errored before its first rung: no compute counted
            continue
        full = int(m.get("rung", -1)) == len(rungs) - 1
        rows.append({"number": len(rows), "wall_s": float(m["wall_s"]),
                     "epochs": float(m["epochs"]), "full": full,
                     "recall": float(m["recall"]) if full else float("nan"),
                     "query_gflops": float(m["query_gflops"]),
                     "status": "complete" if full else "stopped",
                     "t_end": float(m.get("timestamp", 0)), "trial_id": m.get("trial_id")})
    rows.sort(key=lambda r: (r["t_end"], r["trial_id"] or ""))
    return rows


# ----------------------------------------------------------------------------- analysis

def reach_fraction(tool: list[dict], rand: list[dict], tolerance: float = 0.0) -> float:
    """Compute at which ``tool`` first reaches ``rand``'s final hv (or, with ``tolerance``,
    that hv less this share of it), over rand's final compute (inf when never reached)."""
    if not rand:
        return float("nan")
    target, total = rand[-1]["hv"] * (1.0 - tolerance), rand[-1]["compute_s"]
    for p in tool:
        if p["hv"] >= target - 1e-12:
            return p["compute_s"] / total
    return math.inf


def hv_at(c: list[dict], x: float) -> float:
    """Hypervolume of a curve after ``x`` compute seconds (step function)."""
    hv = 0.0
    for p in c:
        if p["compute_s"] > x + 1e-12:
            break
        hv = p["hv"]
    return hv


def hv_table(curves: dict[str, list[list[dict]]], fractions: tuple[float, ...] = (
        0.1, 0.25, 0.5, 0.75, 1.0, 1.5)) -> str:
    """Median hypervolume of each method after given fractions of random search's median
    final compute (a text version of the plot)."""
    import numpy as np

    rand = [c for c in curves.get("random", []) if c]
    if not rand:
        return ""
    base = float(np.median([c[-1]["compute_s"] for c in rand]))
    head = "| method | " + " | ".join(f"{f:.0%}" for f in fractions) + " |"
    lines = [f"median hypervolume after a share of random search's median final compute "
             f"({base:.1f} s):", head, "|---" * (len(fractions) + 1) + "|"]
    for m, cs in curves.items():
        cs = [c for c in cs if c]
        cells = []
        for f in fractions:
            x = f * base
            vals = [hv_at(c, x) for c in cs]  # a run that ended earlier keeps its final value
            ended = sum(c[-1]["compute_s"] < x - 1e-9 for c in cs)
            cells.append(f"{np.median(vals):.2f}" + (f" ({ended} ended)" if ended else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n(runs that had ended keep their final hypervolume)"


def rung_breakdown(runs: list[dict]) -> str:
    """How many trials stopped at each budget (all seeds), and the median trial seconds."""
    import statistics

    by: dict[float, list[float]] = {}
    for r in runs:
        for t in r["trials"]:
            by.setdefault(round(t["epochs"], 6), []).append(t["wall_s"])
    n = sum(len(v) for v in by.values())
    passed = n
    parts = []
    for e in sorted(by):
        k = len(by[e])
        parts.append(f"{k} ended at {e:g} epochs ({k / n:.0%}, "
                     f"median {statistics.median(by[e]):.2f} s/trial; {passed} had reached it)")
        passed -= k
    return "; ".join(parts)


def summarize(path: str) -> None:
    """Print the figures of a finished run again from its JSON (no training)."""
    import json

    with open(path) as f:
        res = json.load(f)
    print(f"{path}: space {res['space']}, data {res['data']}, {res['seeds']} seeds, "
          f"started {res['machine']['date']}")
    for m, v in res["methods"].items():
        print(f"{v['label']}\n   final hv {fmt_summary(v['final_hv'], '.4g')}\n   compute s "
              f"{fmt_summary(v['compute_s'], '.1f')}\n   epoch-equivalents "
              f"{fmt_summary(v['epochs'], '.1f')}\n   trials: {rung_breakdown(v['runs'])}")
        if "reach_fraction_per_seed" in v:
            fr = ", ".join("never" if not math.isfinite(x) else f"{x:.0%}"
                           for x in v["reach_fraction_per_seed"])
            print(f"   reaches random's final hv at (share of random's final compute): {fr}")
    if "hv_table" in res:
        print(res["hv_table"])


def plot(curves: dict[str, list[list[dict]]], path: Path, title: str) -> None:
    """Median hypervolume vs compute with the IQR band, one line per method (plotly)."""
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    xmax = max((c[-1]["compute_s"] for cs in curves.values() for c in cs if c), default=1.0)
    grid = np.linspace(0, xmax, 200)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for (method, cs), col in zip(curves.items(), palette):
        cs = [c for c in cs if c]
        if not cs:
            continue
        end = float(np.median([c[-1]["compute_s"] for c in cs]))
        g = grid[grid <= end]
        vals = np.array([[hv_at(c, x) for x in g] for c in cs])
        q1, med, q3 = np.percentile(vals, [25, 50, 75], axis=0)
        fig.add_trace(go.Scatter(x=np.r_[g, g[::-1]], y=np.r_[q3, q1[::-1]], fill="toself",
                                 line={"width": 0}, fillcolor=col, opacity=0.15,
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=g, y=med, name=METHODS[method], line={"color": col}))
    fig.update_layout(title=title, xaxis_title="compute: sum of trial wall-clock seconds",
                      yaxis_title="hypervolume (recall x query GFLOPs)", template="plotly_white")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.html")
    fig.write_html(tmp, include_plotlyjs="cdn")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default=None,
                    help="space file or name (default: quick; --full: gated_fusion)")
    ap.add_argument("--data", default=None, help="data spec (default: the space's data)")
    ap.add_argument("--seeds", type=int, default=None,
                    help="seeds per method (default 5; --full 10)")
    ap.add_argument("--trials", type=int, default=None,
                    help="trials per run without early stopping (default 12; --full 40)")
    ap.add_argument("--prune-factor", type=float, default=2.0,
                    help="methods with early stopping get this many times --trials (each "
                         "trial costs less; all are judged by compute). Default 2")
    ap.add_argument("--methods", default="a,a0,b,c,d",
                    help="comma list of a (tool), a0 (tool without warm start), b, c, d")
    ap.add_argument("--plot", default=str(RESULTS / "search_efficiency.html"))
    ap.add_argument("--summarize", metavar="JSON", default=None,
                    help="print the figures of an earlier run's JSON again and exit")
    add_out_arg(ap, "search.json")
    args = ap.parse_args(argv)
    if args.summarize:
        summarize(args.summarize)
        return 0

    import optuna

    from nas.data import load_data
    from nas.search import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    info = machine_info()
    print_machine(info)
    space_name = args.space or ("gated_fusion" if args.full else "quick")
    space = load_space(space_name)
    data_spec = args.data or space.data or "synthetic"
    seeds = args.seeds or (10 if args.full else 5)
    trials = args.trials or (40 if args.full else 12)
    n_prune = int(round(trials * args.prune_factor))
    methods = [ALIASES.get(m.strip(), m.strip()) for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"--methods: unknown method {m!r}")
    data = load_data(data_spec)
    ref = hv_reference(space, data)
    print(f"space {space.name} ({space.path}, {len(space.dimensions)} dims), data {data_spec} "
          f"({data.train.n_clips} train / {data.val.n_clips} val clips), rungs "
          f"{space.proxy.rungs()} epochs, eta {space.proxy.eta:g}; hv reference recall "
          f"{ref[0]:g}, query_gflops {ref[1]:.4g}; {seeds} seeds; trials: {trials} without "
          f"early stopping, {n_prune} with", flush=True)

    if "ray" in methods:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no Tune status boxes
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        import ray
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, _temp_dir=tempfile.mkdtemp(prefix="nb", dir="/tmp"))
    workdir = tempfile.mkdtemp(prefix="nas-bench-search-")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    t_start = time.monotonic()
    try:
        for seed in range(seeds):
            for m in methods:
                n = n_prune if m in ("tool", "tool_nows", "ray") else trials
                t0 = time.monotonic()
                if m == "ray":
                    rows = run_ray(space, data, seed, n, workdir)
                else:
                    rows = run_tool(m, space, data_spec, seed, n, workdir)
                c = curve(rows, ref)
                runs[m].append({"seed": seed, "trials": rows, "curve": c,
                                "elapsed_s": time.monotonic() - t0})
                full = sum(r["full"] for r in rows)
                print(f"seed {seed} {m:9s}: {len(rows):3d} trials ({full} full budget), compute "
                      f"{c[-1]['compute_s'] if c else 0:7.1f} s, {c[-1]['epochs'] if c else 0:6.1f}"
                      f" epochs, hv {c[-1]['hv'] if c else 0:.4g} ({time.monotonic() - t0:.0f} s "
                      "elapsed)", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "ray" in methods:
            import ray
            ray.shutdown()

    # ---- figures
    print(f"\n== search efficiency ({space.name}, {seeds} seeds; median [IQR; range]) ==")
    result: dict[str, Any] = {"machine": info, "space": space.path, "data": data_spec,
                              "rungs": space.proxy.rungs(), "eta": space.proxy.eta,
                              "hv_reference": ref, "seeds": seeds, "trials": trials,
                              "trials_with_early_stopping": n_prune, "methods": {},
                              "wall_s": time.monotonic() - t_start}
    for m in methods:
        fin = [r["curve"][-1] if r["curve"] else {"compute_s": 0, "epochs": 0, "hv": 0}
               for r in runs[m]]
        s_hv = summary(f["hv"] for f in fin)
        s_c = summary(f["compute_s"] for f in fin)
        s_e = summary(f["epochs"] for f in fin)
        print(f"{METHODS[m]}\n   final hv {fmt_summary(s_hv, '.4g')}\n   compute s "
              f"{fmt_summary(s_c, '.1f')}\n   epoch-equivalents {fmt_summary(s_e, '.1f')}"
              f"\n   trials: {rung_breakdown(runs[m])}")
        result["methods"][m] = {"label": METHODS[m], "final_hv": s_hv, "compute_s": s_c,
                                "epochs": s_e, "runs": runs[m]}
    if "random" in methods:
        rand = [r["curve"] for r in runs["random"]]
        for m in [m for m in methods if m != "random"]:
            fr = [reach_fraction(r["curve"], rc) for r, rc in zip(runs[m], rand)]
            s = summary(f for f in fr if math.isfinite(f))
            reached = sum(math.isfinite(f) for f in fr)
            # hv each method has at random search's final compute (per seed), relative
            rel = [hv_at(r["curve"], rc[-1]["compute_s"]) / rc[-1]["hv"]
                   for r, rc in zip(runs[m], rand) if rc and rc[-1]["hv"] > 0]
            s_rel = summary(rel)
            fr_txt = [("never" if not math.isfinite(f) else f"{f:.0%}") for f in fr]
            print(f"{m}: reaches random search's final hv at {fmt_summary(s, '.0%')} of random "
                  f"search's final compute (reached in {reached}/{len(fr)} seeds; per seed "
                  f"{', '.join(fr_txt)}); hv at random's final compute / random's final hv "
                  f"{fmt_summary(s_rel, '.3f')}")
            result["methods"][m]["reach_fraction_per_seed"] = fr
            result["methods"][m]["reach_fraction"] = s
            result["methods"][m]["reached_seeds"] = reached
            result["methods"][m]["hv_ratio_at_random_compute"] = s_rel
        if "tool" in methods:
            fr = result["methods"]["tool"]["reach_fraction_per_seed"]
            med = sorted(fr)[len(fr) // 2] if len(fr) % 2 else \
                0.5 * (sorted(fr)[len(fr) // 2 - 1] + sorted(fr)[len(fr) // 2])
            verdict = "met" if med <= 0.25 else "MISSED"
            print(f"\nFIGURE: (a) reaches random search's final hypervolume at "
                  f"{med:.0%} of random search's final compute (median over {len(fr)} seeds; "
                  f"'inf' = not reached); target <= 25%: {verdict}")
            result["figure_reach_fraction_median"] = med
    table = hv_table({m: [r["curve"] for r in runs[m]] for m in methods})
    print("\n" + table)
    result["hv_table"] = table
    plot({m: [r["curve"] for r in runs[m]] for m in methods}, Path(args.plot),
         f"Search efficiency on {space.name} ({data_spec}), median and IQR over {seeds} seeds")
    print(f"plot: {args.plot}\nwall: {time.monotonic() - t_start:.0f} s")
    write_json(args.out, result)
    print(f"json: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
