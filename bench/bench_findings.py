"""Does the searched knee beat the original AVIGATE configuration on the held-out test split?

    python bench/bench_findings.py --storage sqlite:///studies.db --study digits
    python bench/bench_findings.py --study digits --seeds 5 --point trial:12
    python bench/bench_findings.py --study digits --data "digits:test_clips=500"

Reads a study written by ``nas search``: the front point (``--point``, the knee by default,
as ``nas verdict`` picks it) and the warm start's first configuration (user attr
``warm_start`` = ``avigate (text-agnostic baseline)``: text-agnostic gates
``gate_inputs: va``, no query fusion, at the space's base sizes). Trains both with
``nas.train.Trainer`` for the study's full budget (the epochs of a full-budget trial), with
each trial's own training settings, once per seed
(``seed``, ``seed + 1``, ... like ``nas verdict``), on the study's data (or ``--data``), and
scores each trained model on the TEST split (never seen by the search, which ranked on
val) and on val. Prints per seed and mean ± std (sample std over seeds) of t2v recall
(R@1+R@5+R@10), R@1 and the paired difference point - AVIGATE with a 90 % t-interval, and
the costs of both. ``--cache FILE`` records each run and reuses recorded ones, so
``--arms avigate`` can train one side while the search still runs. Single process,
``nice`` it on a shared machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_out_arg, machine_info, print_machine, write_json


def _avigate_trial(study: Any) -> Any:
    for t in study.get_trials(deepcopy=False):
        if str(t.user_attrs.get("warm_start", "")).startswith("avigate") and isinstance(
                t.user_attrs.get("fusion"), dict):
            return t
    sys.exit(f"study {study.study_name!r}: no trial with user attr warm_start 'avigate ...' and a "
             "'fusion' attr (was it created by nas search with the AVIGATE warm start?)")


def _configs(study: Any, trial: Any) -> tuple[Any, Any]:
    from nas.config import FusionConfig, TrainConfig

    src = f"study {study.study_name!r} trial {trial.number}"
    fusion = FusionConfig.from_dict(trial.user_attrs["fusion"], source=f"{src} [fusion]")
    train = TrainConfig.from_dict(trial.user_attrs.get("train")
                                  or study.user_attrs.get("train_config"),
                                  source=f"{src} [train]")
    return fusion, train


def _train_and_score(fusion: Any, train: Any, data: Any, epochs: float) -> dict[str, Any]:
    from nas.train import Trainer, training_runtime

    t0 = time.perf_counter()
    tr = Trainer(fusion, train, data, budget_epochs=epochs)
    with training_runtime(train, tr.device):
        tr.train_until(tr.steps_for(epochs))
        test = tr.evaluate(data.test)
        val = tr.evaluate()
    return {"test": test, "val": val, "wall_s": time.perf_counter() - t0}


def _key(fusion: Any, train: Any, data_spec: str, epochs: float) -> str:
    canon = json.dumps({"fusion": fusion.to_dict(), "train": train.to_dict(), "data": data_spec,
                        "epochs": epochs}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _cached_run(cache: Path | None, fusion: Any, train: Any, data: Any, data_spec: str,
                epochs: float) -> dict[str, Any]:
    """``_train_and_score``, reusing a run recorded in the ``--cache`` JSON file."""
    runs = json.loads(cache.read_text()) if cache and cache.exists() else {}
    key = _key(fusion, train, data_spec, epochs)
    if key in runs:
        return runs[key] | {"reused": True}
    r = _train_and_score(fusion, train, data, epochs)
    if cache:
        runs = json.loads(cache.read_text()) if cache.exists() else {}
        runs[key] = r
        write_json(cache, runs)
    return r


def _ms(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{statistics.fmean(xs):7.2f} ± {sd:5.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", required=True)
    ap.add_argument("--storage", default="sqlite:///studies.db")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--point", default="knee", help="front point as nas verdict takes it")
    ap.add_argument("--data", default=None, help="data spec (default: the study's)")
    ap.add_argument("--arms", default="knee,avigate",
                    help="train only these now (e.g. avigate while the search still runs)")
    ap.add_argument("--cache", default=None, metavar="JSON",
                    help="record each run here and reuse recorded ones (same config, seed, "
                         "data, epochs)")
    add_out_arg(ap, "findings.json")
    a = ap.parse_args()
    if a.seeds < 2:
        sys.exit("--seeds: at least 2 for a std and an interval")

    import optuna

    from nas.cost import estimate_costs
    from nas.data import load_data
    from nas.verdict.core import pick_point
    from nas.verdict.stats import paired_interval

    info = machine_info()
    print_machine(info)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=a.study, storage=a.storage)
    data_spec = a.data or str(study.user_attrs.get("data") or "synthetic")
    ua = study.user_attrs
    epochs = float((ua.get("rungs") or [ua.get("full_budget")])[-1])
    data = load_data(data_spec)
    if data.test is None or data.test.n_clips == 0:
        sys.exit(f"data {data_spec!r} has no test split")
    want = [x.strip() for x in a.arms.split(",") if x.strip()]
    if not want or set(want) - {"knee", "avigate"}:
        sys.exit(f"--arms: knee and/or avigate, got {a.arms!r}")
    arms = {}
    if "knee" in want:
        knee_t = pick_point(study, a.point)
        arms["knee"] = (knee_t, *_configs(study, knee_t))
    if "avigate" in want:
        avi_t = _avigate_trial(study)
        arms["avigate"] = (avi_t, *_configs(study, avi_t))
    cache = Path(a.cache) if a.cache else None
    print(f"study {a.study!r}, data {data_spec!r} (test: {data.test.n_clips} clips, "
          f"{data.test.n_texts} captions), {epochs:g} epochs, seeds {a.seeds}")
    label = {"knee": "knee" if a.point == "knee" else "point", "avigate": "avigate"}
    for name, (t, f, tr) in arms.items():
        c = estimate_costs(f, data.shapes, gallery=1000)
        state = t.state.name + ("" if t.values is None else
                                " " + ", ".join(f"{v:.4g}" for v in t.values))
        print(f"  {label[name]:8s} trial {t.number} ({state}): {f.fusion_id}; "
              f"query {c['query_gflops']:.3g} GFLOPs, index {c['index_gflops']:.3g} GFLOPs, "
              f"params {c['params']:.0f}; text_conditioned={getattr(f, 'text_conditioned', '?')}")
    res: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
    for i in range(a.seeds):
        for name, (_, f, tr) in arms.items():
            r = _cached_run(cache, f, tr.replace(seed=tr.seed + i), data, data_spec, epochs)
            res[name].append(r)
            print(f"{'(reused) ' if r.get('reused') else ''}seed {tr.seed + i} {label[name]:8s}: "
                  f"test recall {r['test']['recall']:6.2f} "
                  f"(R@1 {r['test']['t2v_r1']:5.2f}), val recall {r['val']['recall']:6.2f} "
                  f"[{r['wall_s']:.0f} s]", flush=True)
    if len(arms) < 2:
        return
    print(f"\nmean ± std over {a.seeds} seeds ({epochs:g} epochs each):")
    print(f"{'':10s}{'test recall':>18s}{'test R@1':>18s}{'val recall':>18s}")
    for name in arms:
        print(f"{label[name]:10s}{_ms([r['test']['recall'] for r in res[name]]):>18s}"
              f"{_ms([r['test']['t2v_r1'] for r in res[name]]):>18s}"
              f"{_ms([r['val']['recall'] for r in res[name]]):>18s}")
    out: dict[str, Any] = {"machine": info, "study": a.study, "data": data_spec,
                           "epochs": epochs, "seeds": a.seeds,
                           "trials": {k: v[0].number for k, v in arms.items()},
                           "runs": res, "load_at_end": list(__import__("os").getloadavg())}
    for split, key in (("test", "recall"), ("test", "t2v_r1"), ("val", "recall")):
        d = [k[split][key] - v[split][key] for k, v in zip(res["knee"], res["avigate"])]
        iv = paired_interval(d)
        out[f"diff_{split}_{key}"] = {"mean": iv.mean, "lo": iv.lo, "hi": iv.hi, "n": iv.n}
        print(f"{label['knee']} - avigate, {split} {key}: {iv.mean:+.2f} "
              f"[90 %: {iv.lo:+.2f}, {iv.hi:+.2f}] over {iv.n} paired seeds")
    print(f"load at end: {tuple(round(x, 1) for x in out['load_at_end'])}")
    if a.out:
        write_json(a.out, out)


if __name__ == "__main__":
    main()
