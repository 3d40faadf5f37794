"""Plot data for the report: pure functions from trial records to plain numbers.

Every function here takes plain values (or ``FrozenTrial`` records, read only) and returns
plain Python/numpy data, so it can be tested on known inputs without drawing anything.
``nas.report.draw`` turns these into plotly figures.

Conventions (docs/ARCHITECTURE.md "Study records"):

- full-budget trials are COMPLETE trials whose user attr ``full_budget`` is true (a record
  without the attr counts as full budget when COMPLETE, since only full-budget trials are
  COMPLETE by contract);
- the Pareto front, the full-budget filter and the hypervolume are ``nas.search.pareto``'s
  (the one implementation; re-exported here for the report's callers);
- intermediate values: step = rung index, value = ``recall`` at that rung.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from nas.search.pareto import (
    _state_name,
    direction_signs,
    full_budget_trials,
    is_full_budget,
    pareto_mask,
)

__all__ = [
    "GateSummary",
    "front_table",
    "full_budget_trials",
    "gate_summaries",
    "is_full_budget",
    "learning_curves",
    "normalise",
    "param_importances",
    "pareto_mask",
    "pareto_points",
    "proxy_fidelity",
    "spearman",
    "violin_samples",
]


# ---------------------------------------------------------------------------------
# Pareto scatter
# ---------------------------------------------------------------------------------

def normalise(loss: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map losses to [0, 1] per objective with ``lo`` -> 0 and ``hi`` -> 1.

    A constant objective (hi == lo) maps to 0 so it does not create a zero-width box.
    """
    span = np.where(hi > lo, hi - lo, 1.0)
    return (np.asarray(loss, dtype=float) - lo) / span


@dataclass
class ParetoPoints:
    """Points of the Pareto scatter: every full-budget trial, with the front flagged."""

    numbers: list[int]
    values: np.ndarray  # [n, k] objective values in metric-name order
    on_front: np.ndarray  # [n] bool
    hover: list[str]  # one text per point: trial, values and configuration
    front_order: list[int] = field(default_factory=list)  # indices of front points, by objective 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def canonical_params(trial: Any) -> dict[str, Any]:
    """The trial's searched dimensions with the values of the configuration it trained.

    A suggestion can differ from what was trained: the space canonicalises settings that
    do nothing (``rerank_k`` is 0 on a text-agnostic configuration), and the trial's
    ``fusion`` / ``train`` attributes hold the configuration as trained (and exported).
    """
    ua = trial.user_attrs
    conf = {**(ua.get("train") or {}), **(ua.get("fusion") or {})}
    return {k: conf.get(k, v) for k, v in trial.params.items()}


def config_text(params: Mapping[str, Any], sep: str = "<br>") -> str:
    """The configuration (searched dimensions) as ``name=value`` lines, sorted by name."""
    return sep.join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))


def pareto_points(trials: Sequence[Any], directions: Sequence[Any],
                  metric_names: Sequence[str]) -> ParetoPoints:
    """Scatter data of the full-budget trials with the non-dominated ones flagged."""
    full = full_budget_trials(trials)
    k = len(directions)
    vals = np.asarray([t.values for t in full], dtype=float).reshape(-1, k)
    mask = pareto_mask(vals, directions) if len(full) else np.zeros(0, dtype=bool)
    hover = []
    for t, v in zip(full, vals):
        head = f"trial {t.number} ({t.user_attrs.get('config_id', '?')})"
        objs = "<br>".join(f"{n}={_fmt(float(x))}" for n, x in zip(metric_names, v))
        hover.append(f"{head}<br>{objs}<br>{config_text(canonical_params(t))}")
    front_idx = [int(i) for i in np.flatnonzero(mask)]
    front_idx.sort(key=lambda i: (vals[i, 0], vals[i, 1] if k > 1 else 0.0))
    return ParetoPoints([t.number for t in full], vals, mask, hover, front_idx)


# ---------------------------------------------------------------------------------
# learning curves and proxy fidelity
# ---------------------------------------------------------------------------------

@dataclass
class Curve:
    """One trial's recall per rung."""

    number: int
    epochs: list[float]  # x: epochs at each reported rung (rung index when unknown)
    values: list[float]
    status: str  # user attr status, else the Optuna state in lower case
    stopped: bool


def _rung_epochs(trial: Any, rungs: Sequence[float] | None, step: int) -> float:
    own = trial.user_attrs.get("rung_epochs")
    for src in (own, rungs):
        if isinstance(src, (list, tuple)) and step < len(src):
            return float(src[step])
    return float(step)


def learning_curves(trials: Sequence[Any], rungs: Sequence[float] | None = None) -> list[Curve]:
    """Recall per rung for every trial with intermediate values, stopped ones flagged."""
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        iv = t.intermediate_values
        if not iv:
            continue
        steps = sorted(iv)
        status = str(t.user_attrs.get("status", _state_name(t).lower()))
        stopped = status == "stopped" or _state_name(t) == "PRUNED"
        out.append(Curve(t.number, [_rung_epochs(t, rungs, s) for s in steps],
                         [float(iv[s]) for s in steps], status, stopped))
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN below 3 pairs or if constant."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3:
        return float("nan")
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class Fidelity:
    """Rank correlation between recall at one rung and recall at the full budget."""

    rung: int
    epochs: float
    n: int
    rho: float


def _final_recall(trial: Any, metric_names: Sequence[str]) -> float | None:
    if "recall" in metric_names and trial.values is not None:
        return float(trial.values[list(metric_names).index("recall")])
    m = trial.user_attrs.get("metrics") or {}
    if "recall" in m:
        return float(m["recall"])
    iv = trial.intermediate_values
    return float(iv[max(iv)]) if iv else None


def proxy_fidelity(trials: Sequence[Any], metric_names: Sequence[str],
                   rungs: Sequence[float] | None = None) -> list[Fidelity]:
    """Spearman correlation of recall at each rung with full-budget recall.

    Computed over the trials that reached the full budget (they have every rung), so a
    high rho at an early rung means the early stopping ranked configurations the way the
    full training would. The last rung is the full budget itself (rho = 1 by definition)
    and is left out.
    """
    full = full_budget_trials(trials)
    finals = {t.number: _final_recall(t, metric_names) for t in full}
    steps = sorted({s for t in full for s in t.intermediate_values})
    if steps:
        steps = steps[:-1]
    out = []
    for s in steps:
        xs, ys = [], []
        for t in full:
            final = finals[t.number]
            if s in t.intermediate_values and final is not None:
                xs.append(t.intermediate_values[s])
                ys.append(final)
        ep = _rung_epochs(full[0], rungs, s) if full else float(s)
        out.append(Fidelity(s, ep, len(xs), spearman(xs, ys)))
    return out


# ---------------------------------------------------------------------------------
# gate distributions
# ---------------------------------------------------------------------------------

_GATE_KEY = re.compile(r"^layer(\d+)/(.+)$")


@dataclass
class GateSummary:
    """One gate of one layer: summary statistics and a distribution to draw."""

    layer: int
    gate: str  # the gate's name within the layer, e.g. "attn", "ffn"
    kind: str  # activation: "tanh" | "sigmoid" | ...
    mean: float
    std: float
    saturation: float
    quantiles: list[float]  # 0%..100% (may be empty)
    samples: list[float]  # quasi-samples for a violin (see violin_samples)


def violin_samples(quantiles: Sequence[float] | None = None,
                   hist: Sequence[float] | None = None,
                   edges: Sequence[float] | None = None, n: int = 101) -> list[float]:
    """Deterministic quasi-samples of a distribution stored as quantiles or a histogram.

    The stored statistics are not raw gate values, so a violin is drawn from points placed
    at evenly spaced probabilities of the inverse CDF: linear interpolation between the
    stored quantiles (preferred), else of the histogram's cumulative counts. A kernel
    density of these points follows the stored distribution.
    """
    p = (np.arange(n) + 0.5) / n
    if quantiles is not None and len(quantiles) >= 2:
        q = np.asarray(quantiles, dtype=float)
        return np.interp(p, np.linspace(0.0, 1.0, len(q)), q).tolist()
    if hist is not None and edges is not None and len(edges) == len(hist) + 1 and sum(hist) > 0:
        h = np.asarray(hist, dtype=float)
        e = np.asarray(edges, dtype=float)
        c = np.concatenate([[0.0], np.cumsum(h)]) / h.sum()
        # bin j holds p in [c[j], c[j+1]); empty bins have c[j] == c[j+1] and are never hit
        j = np.clip(np.searchsorted(c, p, side="right") - 1, 0, len(h) - 1)
        frac = (p - c[j]) / np.where(h[j] > 0, c[j + 1] - c[j], 1.0)
        return (e[j] + frac * (e[j + 1] - e[j])).tolist()
    return []


def gate_summaries(gates: Mapping[str, Any] | None, n_samples: int = 101) -> list[GateSummary]:
    """Per-layer, per-gate summaries from a ``gate_statistics`` dict, by (layer, gate).

    Entries whose key is not ``layer<N>/<gate>`` (decay, temperature, routing, warnings)
    are not per-layer gate distributions and are skipped.
    """
    out = []
    for key, st in (gates or {}).items():
        m = _GATE_KEY.match(str(key))
        if not m or not isinstance(st, Mapping):
            continue
        q = [float(x) for x in st.get("quantiles") or []]
        out.append(GateSummary(
            layer=int(m.group(1)), gate=m.group(2), kind=str(st.get("kind", "")),
            mean=float(st.get("mean", math.nan)), std=float(st.get("std", math.nan)),
            saturation=float(st.get("saturation", math.nan)), quantiles=q,
            samples=violin_samples(q, st.get("hist"), st.get("edges"), n_samples)))
    out.sort(key=lambda g: (g.layer, g.gate))
    return out


# ---------------------------------------------------------------------------------
# table of the front
# ---------------------------------------------------------------------------------

def front_table(trials: Sequence[Any], directions: Sequence[Any],
                metric_names: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (strings) of the Pareto front, sorted by the first objective."""
    pts = pareto_points(trials, directions, metric_names)
    full = {t.number: t for t in full_budget_trials(trials)}
    header = ["trial", "config_id", *metric_names, "configuration"]
    rows = []
    for i in pts.front_order:
        t = full[pts.numbers[i]]
        rows.append([str(t.number), str(t.user_attrs.get("config_id", "")),
                     *(_fmt(float(x)) for x in pts.values[i]),
                     config_text(canonical_params(t), sep=", ")])
    return header, rows


# ---------------------------------------------------------------------------------
# parameter importance
# ---------------------------------------------------------------------------------

def param_importances(trials: Sequence[Any], directions: Sequence[Any],
                      metric_names: Sequence[str],
                      min_trials: int = 3) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """PED-ANOVA parameter importance per objective over the full-budget trials.

    Returns ``(importances, notes)``: ``importances[objective] = {param: share}`` and
    ``notes[objective]`` says why an objective has none (too few trials, no parameter that
    varies). Uses Optuna's ``get_param_importances`` with ``PedAnovaImportanceEvaluator``
    (what optuna-dashboard uses; the default fANOVA needs scikit-learn, not a dependency)
    on an in-memory copy that holds only the full-budget trials, so stopped trials'
    low-budget values never enter it. PED-ANOVA treats low targets as good, so maximised
    objectives are negated in the target.
    """
    import warnings

    import optuna

    full = full_budget_trials(trials)
    imps: dict[str, dict[str, float]] = {}
    notes: dict[str, str] = {}
    if len(full) < min_trials:
        msg = (f"only {len(full)} full-budget trial(s); parameter importance needs at least "
               f"{min_trials}")
        return {}, {name: msg for name in metric_names}
    signs = direction_signs(directions)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(directions=["minimize"] * len(directions))
    finally:
        optuna.logging.set_verbosity(level)
    study.add_trials(full)
    for i, name in enumerate(metric_names):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "computes importances for low targets"
                res = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                    target=lambda t: float(signs[i] * t.values[i]))
        except (ValueError, RuntimeError) as e:  # e.g. no parameter common to all trials
            notes[name] = f"not computable: {e}"
            continue
        if not res or not any(v > 0 for v in res.values()):
            notes[name] = "no searched parameter separates the best full-budget trials"
            continue
        imps[name] = {k: float(v) for k, v in res.items()}
    return imps, notes
