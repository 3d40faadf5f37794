"""Proxy fidelity: does an early rung rank configurations as the full budget does?

    python bench/bench_fidelity.py               # reduced: 32 configs of gated_fusion
    python bench/bench_fidelity.py --full        # 64 configs
    python bench/bench_fidelity.py --configs 32 --agnostic 0.5 --space gated_fusion --data SPEC

Configurations are drawn from the space file with the space module's own ``suggest``
(Optuna's RandomSampler, conditional dimensions as in a search), in two strata so that they
represent what a search trains: a share ``--agnostic`` (default one half) text-agnostic
(``gate_inputs: va``, ``query_fusion: none``, ``text_audio: none``, ``dual_path: false``
pinned, everything else drawn; a uniform draw is text-agnostic only 1 time in 36, while the
default search converges to text-agnostic configurations), the rest drawn uniformly. Each
is trained by ``nas.train.train_proxy`` to the full budget of the space's proxy, evaluated
at every rung of the default schedule (``proxy.rungs()``) and also at a finer grid of epochs
(half the first rung apart). The learning-rate schedule always spans the full budget, so
the model at epoch e is the model a full-budget run has at e: evaluating more often changes
no weights, and the grid tells what other ``min_budget`` values would give without retraining.

Reported per evaluation point and per early signal (``recall``, the search's objective, and
``t2v_mrr``, the mean reciprocal rank, which moves with every rank where R@k moves only when
a target crosses k): Spearman and Kendall correlation (scipy.stats) between the signal there
and recall at the full budget, with a 90% bootstrap interval for Spearman (configurations
resampled), and how many of the full-budget top 5 are in that point's top 5; the first rung
also per stratum. Target: Spearman >= 0.85 at the first rung, where MO-ASHA stops the most
trials (it decides at every rung but the last).
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
from common import add_out_arg, machine_info, print_machine, sample_configs, write_json  # noqa: E402


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


# Pinned for the text-agnostic stratum (FusionConfig.text_conditioned is False with these).
TEXT_AGNOSTIC = {"gate_inputs": "va", "query_fusion": "none", "text_audio": "none",
                 "dual_path": False}
# Early signals, each higher-is-better: recall, the mean reciprocal rank, and the mean rank
# of the match negated (what MO-ASHA ranks by before half the budget: --rung-signal).
SIGNALS = ("recall", "t2v_mrr", "mean_rank")


def signal(metrics: dict[str, Any], name: str) -> float:
    """One early signal from a rung's metrics (``mean_rank``: recall's ``rung_key``, the
    mean rank of the match, negated)."""
    if name != "mean_rank":
        return float(metrics[name])
    from nas.search.objectives import OBJECTIVES

    return -float(metrics[OBJECTIVES["recall"].rung_key])
TARGET = 0.85


def draw(space: Any, n: int, agnostic: float, seed: int, shapes: Any) -> list:
    """``n`` distinct configurations: round(n * agnostic) text-agnostic, the rest uniform."""
    n_ta = int(round(n * agnostic))
    names = {d.name for d in space.dimensions}
    fixed = {k: v for k, v in TEXT_AGNOSTIC.items() if k in names}
    ta = sample_configs(space, n_ta, seed, shapes, fixed=fixed) if n_ta else []
    uni = sample_configs(space, n - n_ta, seed + 1000, shapes) if n > n_ta else []
    seen = {f.fusion_id for _, f, _ in ta}
    uni = [c for c in uni if c[1].fusion_id not in seen]
    # interleaved in proportion, so that a run stopped early still holds both strata
    out, i, j = [], 0, 0
    while i < len(ta) or j < len(uni):
        if j >= len(uni) or (i < len(ta) and i * len(uni) <= j * len(ta)):
            out.append(ta[i])
            i += 1
        else:
            out.append(uni[j])
            j += 1
    return out


def summarize(rows: list[dict[str, Any]], rungs: list[float], grid: list[float]
              ) -> tuple[list, dict, dict, dict]:
    """Print the correlations of every signal at every point; return them."""
    ok = [r for r in rows if "recall" in r]
    full = [r["recall"][-1] for r in ok]
    n_ta = sum(not r["text_conditioned"] for r in ok)
    print(f"\n== proxy fidelity: {len(ok)} configs trained to {rungs[-1]:g} epochs "
          f"({n_ta} text-agnostic, {len(ok) - n_ta} text-conditioned; "
          f"{len(rows) - len(ok)} failed) ==")
    points: list[dict[str, Any]] = []
    sigs = [k for k in SIGNALS if ok and all(k in r for r in ok)]  # older runs: fewer
    for sig in sigs:
        print(f"\nsignal {sig} at each point against recall at {rungs[-1]:g} epochs")
        print(f"{'epochs':>7} {'rung':>5} {'spearman':>9} {'90% CI':>15} {'kendall':>8} "
              f"{'top5 overlap':>13}")
        for j, e in enumerate(grid):
            xs = [r[sig][j] for r in ok]
            c = correlations(xs, full)
            ov = top_overlap(xs, full)
            rung_ix = [k for k, r in enumerate(rungs) if abs(e - r) < 1e-6]
            points.append({"signal": sig, "epochs": e,
                           "default_rung": rung_ix[0] if rung_ix else None,
                           "top5_overlap": ov, **c})
            print(f"{e:7.3g} {('r' + str(rung_ix[0])) if rung_ix else '':>5} "
                  f"{c['spearman']:9.3f} [{c['spearman_lo90']:.2f}, {c['spearman_hi90']:.2f}] "
                  f"{c['kendall']:8.3f} {ov:>10}/5")
    j0 = next(j for j, e in enumerate(grid) if abs(e - rungs[0]) < 1e-6)
    strata: dict[str, Any] = {}
    for name, sub in (("text-agnostic", [r for r in ok if not r["text_conditioned"]]),
                      ("text-conditioned", [r for r in ok if r["text_conditioned"]])):
        if len(sub) < 4:
            continue
        for sig in sigs:
            c = correlations([r[sig][j0] for r in sub], [r["recall"][-1] for r in sub])
            strata[f"{name}/{sig}"] = {"n": len(sub), **c}
            print(f"first rung, {name} only ({len(sub)}), {sig}: Spearman {c['spearman']:.3f} "
                  f"[{c['spearman_lo90']:.2f}, {c['spearman_hi90']:.2f}]")
    first = {}
    for sig in sigs:
        p = next(q for q in points if q["signal"] == sig and q["default_rung"] == 0)
        first[sig] = p
        verdict = "met" if p["spearman"] >= TARGET else "MISSED"
        print(f"\nFIGURE: {sig} at the first default rung ({p['epochs']:g} epochs) against "
              f"recall at the full budget: Spearman {p['spearman']:.3f} (90% bootstrap "
              f"{p['spearman_lo90']:.2f}-{p['spearman_hi90']:.2f}; Kendall {p['kendall']:.3f}); "
              f"full-budget top 5 in first-rung top 5: {p['top5_overlap']}/5; target >= "
              f"{TARGET}: {verdict}")
    robust = {}
    for sig in sigs:
        sp = [q for q in points if q["signal"] == sig]
        robust[sig] = next((p["epochs"] for p in sp[:-1]
                            if all(q["spearman"] >= TARGET for q in sp
                                   if q["epochs"] >= p["epochs"])), None)
        print(f"{sig}: from {robust[sig]:g} epochs on every point is >= {TARGET}"
              if robust[sig] is not None else f"{sig}: no point before the full budget "
              f"stays >= {TARGET}")
    return points, first, strata, robust


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="gated_fusion")
    ap.add_argument("--data", default=None, help="data spec (default: the space's data)")
    ap.add_argument("--configs", type=int, default=None, help="default 32; --full 64")
    ap.add_argument("--agnostic", type=float, default=0.5,
                    help="share of text-agnostic configurations (default 0.5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the configuration draw")
    ap.add_argument("--grid", type=float, default=None,
                    help="extra evaluation every this many epochs (default: first rung / 2)")
    ap.add_argument("--summarize", metavar="JSON", default=None,
                    help="print the figures of an earlier run's json (also a stopped run's)")
    add_out_arg(ap, "fidelity.json")
    args = ap.parse_args(argv)
    if args.summarize:
        import json

        old = json.loads(Path(args.summarize).read_text())
        summarize(old["configs"], old["rungs"], old["grid"])
        return 0

    from nas.data import load_data
    from nas.errors import TrainingFailed
    from nas.search import load_space
    from nas.train import train_proxy

    info = machine_info()
    print_machine(info)
    space = load_space(args.space)
    data_spec = args.data or space.data or "synthetic"
    data = load_data(data_spec)
    n = args.configs or (64 if args.full else 32)
    rungs = space.proxy.rungs()
    grid = eval_grid(rungs, args.grid or rungs[0] / 2)
    print(f"space {space.name} ({space.path}), data {data_spec} ({data.train.n_clips} train / "
          f"{data.val.n_clips} val clips, {data.val.n_texts} val captions); default rungs "
          f"{rungs} epochs (eta {space.proxy.eta:g}); evaluated at {grid}; {n} configs "
          f"(draw seed {args.seed}, {args.agnostic:.0%} drawn text-agnostic)", flush=True)
    configs = draw(space, n, args.agnostic, args.seed, data.shapes)
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
        rows.append({"config_id": f.fusion_id, "params": params,
                     **{k: [signal(h, k) for h in res.history] for k in SIGNALS},
                     "epochs": [h["epochs"] for h in res.history], "wall_s": res.wall_s,
                     "text_conditioned": f.text_conditioned})
        write_json(args.out, {"partial": True, "rungs": rungs, "grid": grid,
                              "configs": rows})  # a stopped run keeps these
        print(f"[{i + 1}/{n}] {f.fusion_id} {'text-cond' if f.text_conditioned else 'agnostic '}"
              f" recall by epoch " + " ".join(f"{e:g}:{r:.1f}" for e, r in rec.items())
              + f"  ({time.monotonic() - t0:.1f} s)", flush=True)
    points, first, strata, robust = summarize(rows, rungs, grid)
    print(f"wall: {time.monotonic() - t_all:.0f} s")
    write_json(args.out, {"machine": info, "space": space.path, "data": data_spec,
                          "rungs": rungs, "grid": grid, "configs": rows, "points": points,
                          "first_rung": first, "strata": strata, "robust": robust,
                          "target": TARGET, "wall_s": time.monotonic() - t_all})
    print(f"json: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
