"""A synthetic study in the format of docs/ARCHITECTURE.md "Study records", built with Optuna
directly (no training), with known values so picks, fronts and correlations are known."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from nas.config import FusionConfig, TrainConfig, config_key

RUNGS = [0.5, 1.5, 4.5]
# tiny synthetic data whose shapes match the trials' FusionConfig dims (so an exported
# config trains on it unchanged)
DATA = ("synthetic:clips=32,val_clips=16,test_clips=0,frames=4,audio_tokens=6,text_tokens=3,"
        "video_dim=32,audio_dim=32,text_dim=32")
# number -> (recall, query_gflops, recall per rung); all full budget unless listed below.
FULL = {
    0: (100.0, 1.0, [10.0, 50.0, 100.0]),
    1: (150.0, 10.0, [30.0, 80.0, 150.0]),   # the knee
    2: (120.0, 20.0, [20.0, 60.0, 120.0]),   # dominated by 1
    3: (200.0, 100.0, [40.0, 120.0, 200.0]),  # best recall
    # 4: stopped at rung 1 (1.5 of 4.5 epochs), 5: failed
    6: (90.0, 0.5, [50.0, 40.0, 90.0]),      # cheapest
}
FRONT = {0, 1, 3, 6}


def gate_stats(seed: int, layers: int = 2) -> dict[str, Any]:
    """A gate_statistics-shaped dict: per-layer attn (tanh) and ffn (sigmoid) gates."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for layer in range(layers):
        for gate, kind, lo in (("attn", "tanh", -1.0), ("ffn", "sigmoid", 0.0)):
            x = np.clip(rng.normal(0.2 * layer, 0.3, 500), lo, 1.0)
            hist, edges = np.histogram(x, bins=10)
            out[f"layer{layer}/{gate}"] = {
                "mean": float(x.mean()), "std": float(x.std()),
                "saturation": float(np.mean(np.abs(x) > 0.95)),
                "hist": hist.tolist(), "edges": edges.tolist(),
                "quantiles": np.quantile(x, np.linspace(0, 1, 21)).tolist(), "kind": kind}
    out["decay"] = [1.0, 0.5]
    out["warnings"] = []
    return out


def make_study(storage: Any = None, name: str = "synthetic") -> Any:
    """The synthetic study (in memory unless ``storage`` is given)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage,
                                directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(["recall", "query_gflops"])
    train = TrainConfig(epochs=RUNGS[-1], batch_size=16, seed=0, num_threads=1, device="cpu")
    for k, v in {"objectives": ["recall", "query_gflops"], "rungs": RUNGS,
                 "full_budget": RUNGS[-1], "data": DATA,
                 "space": "search_spaces/quick.yaml", "train_config": train.to_dict(),
                 "seed": 0}.items():
        study.set_user_attr(k, v)
    dists = {"width": CategoricalDistribution([32, 64]),
             "layer_decay": CategoricalDistribution(["none", "fixed", "learnable"]),
             "lr": FloatDistribution(1e-4, 1e-2, log=True)}
    decays = ["none", "fixed", "learnable"]
    for n in range(7):
        params = {"width": [32, 64][n % 2], "layer_decay": decays[n % 3],
                  "lr": 1e-3 * (1 + n)}
        fusion = FusionConfig(video_dim=32, audio_dim=32, text_dim=32, max_frames=4,
                              width=params["width"], layers=1, heads=2, resampler_queries=4,
                              layer_decay=params["layer_decay"])
        tr = train.replace(lr=params["lr"])
        ua: dict[str, Any] = {"config_id": config_key(fusion, tr),
                              "fusion_id": fusion.fusion_id, "fusion": fusion.to_dict(),
                              "train": tr.to_dict(),
                              "rung_epochs": RUNGS, "node_id": "local", "wall_s": 1.0}
        if n in FULL:
            rec, gfl, iv = FULL[n]
            ua.update(status="complete", budget=RUNGS[-1], full_budget=True,
                      costs={"query_gflops": gfl, "params": 1000.0},
                      metrics={"recall": rec}, gates=gate_stats(n))
            t = create_trial(state=TrialState.COMPLETE, values=[rec, gfl], params=params,
                             distributions=dists, user_attrs=ua,
                             intermediate_values=dict(enumerate(iv)))
        elif n == 4:
            ua.update(status="stopped", budget=1.5, full_budget=False,
                      costs={"query_gflops": 5.0}, metrics={"recall": 20.0})
            t = create_trial(state=TrialState.PRUNED, params=params, distributions=dists,
                             user_attrs=ua, intermediate_values={0: 5.0, 1: 20.0})
        else:
            ua.update(status="failed", budget=0.5, full_budget=False,
                      fail_reason="at epoch 0 step 3: loss is nan")
            t = create_trial(state=TrialState.FAIL, params=params, distributions=dists,
                             user_attrs=ua, intermediate_values={0: 1.0})
        study.add_trial(t)
    return study
