"""Proxy fidelity: does recall at an early rung rank configurations as the full budget does?

    python bench/bench_fidelity.py               # reduced: 20 configs of gated_fusion (~20 min)
    python bench/bench_fidelity.py --full        # 40 configs
    python bench/bench_fidelity.py --configs 20 --space gated_fusion --data SPEC

Configurations are drawn uniformly from the space file with the space module's own
``suggest`` (Optuna's RandomSampler, conditional dimensions as in a search). Each is trained
by ``nas.train.train_proxy`` to the full budget of the space's proxy, evaluated at every rung
of the default schedule (``proxy.rungs()``) and also at a finer grid of epochs (half the
first rung apart). The learning-rate schedule always spans the full budget, so the model at
epoch e is the model a full-budget run has at e: evaluating more often changes no weights,
and the grid tells what other ``min_budget`` values would give without retraining.

Reported per evaluation point: Spearman and Kendall correlation (scipy.stats) between recall
there and recall at the full budget (with a 90% bootstrap interval for Spearman), and how
many of the full-budget top 5 are in that point's top 5. Target: Spearman >= 0.8 at the
first rung, where MO-ASHA stops the most trials (it decides at every rung but the last).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (add_out_arg, machine_info, print_machine, sample_configs,  # noqa: E402
                    write_json)


def eval_grid(rungs: list[float], step: float) -> list[float]:
    """The default rungs plus every multiple of ``step`` below the full budget."""
    full = rungs[-1]
    pts = {round(k * step, 6) for k in range(1, int(math.floor(full / step + 1e-9)) + 1)}
    pts |= {round(r, 6) for r in rungs}
    return sorted(p for p in pts if p <= full + 1e-9)


def correlations(x: list[float], y: list[float], boot: int = 1000, seed: int = 0
                 ) -> dict[str, float]:
    """Spearman (with a 90% bootstrap interval) and Kendall between x and y."""
    import numpy as np
    from scipy import stats

    x_a, y_a = np.asarray(x, float), np.asarray(y, float)
    rho = float(stats.spearmanr(x_a, y_a).statistic)
    tau = float(stats.kendalltau(x_a, y_a).statistic)
    rng = np.random.default_rng(seed)
    bs = []
    for _ in range(boot):
        i = rng.integers(0, len(x_a), len(x_a))
        if len(set(i.tolist())) < 3:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = stats.spearmanr(x_a[i], y_a[i]).statistic
        if r == r:
            bs.append(r)
    lo, hi = (np.percentile(bs, [5, 95]).tolist() if bs else (math.nan, math.nan))
    return {"spearman": rho, "spearman_lo90": lo, "spearman_hi90": hi, "kendall": tau}


def top_overlap(x: list[float], y: list[float], k: int = 5) -> int:
    """How many of y's top k are in x's top k."""
    import numpy as np

    tx = set(np.argsort(-np.asarray(x), kind="stable")[:k].tolist())
    ty = set(np.argsort(-np.asarray(y), kind="stable")[:k].tolist())
    return len(tx & ty)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="gated_fusion")
    ap.add_argument("--data", default=None, help="data spec (default: the space's data)")
    ap.add_argument("--configs", type=int, default=None, help="default 20; --full 40")
    ap.add_argument("--seed", type=int, default=0, help="seed of the configuration draw")
    ap.add_argument("--grid", type=float, default=None,
                    help="extra evaluation every this many epochs (default: first rung / 2)")
    add_out_arg(ap, "fidelity.json")
    args = ap.parse_args(argv)

    from nas.data import load_data
    from nas.errors import TrainingFailed
    from nas.search import load_space
    from nas.train import train_proxy

    info = machine_info()
    print_machine(info)
    space = load_space(args.space)
    data_spec = args.data or space.data or "synthetic"
    data = load_data(data_spec)
    n = args.configs or (40 if args.full else 20)
    rungs = space.proxy.rungs()
    grid = eval_grid(rungs, args.grid or rungs[0] / 2)
    print(f"space {space.name} ({space.path}), data {data_spec} ({data.train.n_clips} train / "
          f"{data.val.n_clips} val clips, {data.val.n_texts} val captions); default rungs "
          f"{rungs} epochs (eta {space.proxy.eta:g}); evaluated at {grid}; {n} configs "
          f"(draw seed {args.seed})", flush=True)
    configs = sample_configs(space, n, args.seed, data.shapes)
    rows: list[dict[str, Any]] = []
    t_all = time.monotonic()
    for i, (params, f, t) in enumerate(configs):
        t0 = time.monotonic()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # gate-saturation warnings: not the point here
                res = train_proxy(f, t, data, rungs=grid)
        except TrainingFailed as e:
            print(f"[{i + 1}/{n}] {f.fusion_id}: failed ({e}); left out", flush=True)
            rows.append({"config_id": f.fusion_id, "params": params, "failed": str(e)})
            continue
        rec = {round(h["epochs"], 6): h["recall"] for h in res.history}
        recall = [h["recall"] for h in res.history]
        rows.append({"config_id": f.fusion_id, "params": params, "recall": recall,
                     "epochs": [h["epochs"] for h in res.history], "wall_s": res.wall_s,
                     "text_conditioned": f.text_conditioned})
        print(f"[{i + 1}/{n}] {f.fusion_id} {'text-cond' if f.text_conditioned else 'agnostic '}"
              f" recall by epoch " + " ".join(f"{e:g}:{r:.1f}" for e, r in rec.items())
              + f"  ({time.monotonic() - t0:.1f} s)", flush=True)
    ok = [r for r in rows if "recall" in r]
    full = [r["recall"][-1] for r in ok]
    points = []
    print(f"\n== proxy fidelity: {len(ok)} configs trained to {rungs[-1]:g} epochs "
          f"({len(rows) - len(ok)} failed) ==")
    print(f"{'epochs':>7} {'rung':>5} {'spearman':>9} {'90% CI':>15} {'kendall':>8} "
          f"{'top5 overlap':>13}")
    for j, e in enumerate(grid):
        xs = [r["recall"][j] for r in ok]
        c = correlations(xs, full)
        ov = top_overlap(xs, full)
        is_rung = any(abs(e - r) < 1e-6 for r in rungs)
        rung_ix = [k for k, r in enumerate(rungs) if abs(e - r) < 1e-6]
        points.append({"epochs": e, "default_rung": rung_ix[0] if rung_ix else None,
                       "top5_overlap": ov, **c})
        print(f"{e:7.3g} {('r' + str(rung_ix[0])) if is_rung else '':>5} {c['spearman']:9.3f} "
              f"[{c['spearman_lo90']:.2f}, {c['spearman_hi90']:.2f}] {c['kendall']:8.3f} "
              f"{ov:>10}/5")
    first = next(p for p in points if p["default_rung"] == 0)
    verdict = "met" if first["spearman"] >= 0.8 else "MISSED"
    print(f"\nFIGURE: Spearman at the first default rung ({first['epochs']:g} epochs) = "
          f"{first['spearman']:.3f} (Kendall {first['kendall']:.3f}); full-budget top 5 in "
          f"first-rung top 5: {first['top5_overlap']}/5; target >= 0.8: {verdict}")
    enough = [p for p in points if p["spearman"] >= 0.8 and p["epochs"] < rungs[-1] - 1e-9]
    # the earliest point from which every later point also reaches 0.8 (robust choice)
    robust = None
    for p in points[:-1]:
        if all(q["spearman"] >= 0.8 for q in points if q["epochs"] >= p["epochs"]):
            robust = p
            break
    if enough:
        print(f"earliest evaluation point with Spearman >= 0.8: {enough[0]['epochs']:g} epochs; "
              f"from {robust['epochs']:g} epochs on every later point is >= 0.8"
              if robust else f"earliest evaluation point with Spearman >= 0.8: "
              f"{enough[0]['epochs']:g} epochs (later points dip below again)")
    else:
        print("no evaluation point before the full budget reaches Spearman 0.8")
    print(f"wall: {time.monotonic() - t_all:.0f} s")
    write_json(args.out, {"machine": info, "space": space.path, "data": data_spec,
                          "rungs": rungs, "grid": grid, "configs": rows, "points": points,
                          "first_rung": first,
                          "earliest_08": enough[0]["epochs"] if enough else None,
                          "robust_08": robust["epochs"] if robust else None,
                          "wall_s": time.monotonic() - t_all})
    print(f"json: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
