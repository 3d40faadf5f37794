"""``run_verdict``: the paired evidence around a front point, and its summary.

1. Read the study: its objectives (names, directions), data, rungs, full-budget trials;
   pick the point (the knee by default; ``trial:N`` must be on the front).
2. Quick estimate from the study's trials (``quick``), no training.
3. Plan: per seed, the point itself (base) and the point with each variant toggled (added
   when off, removed when on), all at the study's full budget and rungs (``jobs.plan``).
4. Train what the companion study ``<study>:verdict`` does not hold yet, on Ray
   (``nas.search.ray_runs``) or in process, recording each run as it finishes (``record``).
5. Summarise: per variant and objective, the paired differences (variant on - off) over
   the seeds where both runs finished, a 90 % t-interval and the word (``stats``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TextIO

import optuna

from nas.errors import UserError
from nas.search.evaluator import EvaluatorSpec, RayOptions
from nas.search.faults import faultpoint
from nas.search.objectives import OBJECTIVES
from nas.search.pareto import full_budget_trials, pareto_front
from nas.variants import Variant, parse_variant_names
from nas.verdict import jobs as J
from nas.verdict import record as R
from nas.verdict.quick import quick_estimate
from nas.verdict.stats import LEVEL, UNTESTED, Interval, paired_interval, verdict_word

__all__ = ["VerdictError", "VerdictOptions", "VerdictResult", "pick_point", "run_verdict",
           "study_objectives", "summarise"]


class VerdictError(UserError):
    """A study or point a verdict cannot be given for."""


@dataclass
class VerdictOptions:
    """Everything ``nas verdict`` takes (the CLI fills it)."""

    point: str = "knee"
    seeds: int = 3
    variants: str | None = None  # comma-separated plan variant names; None = all
    quick_only: bool = False
    ray: RayOptions = field(default_factory=RayOptions)
    evaluator: EvaluatorSpec = field(default_factory=EvaluatorSpec)
    executor: str = "ray"  # "ray" | "local"


@dataclass
class VerdictResult:
    """The verdict document (JSON-able ``doc``) and what the run did."""

    doc: dict[str, Any]
    trained: int = 0
    reused: int = 0
    lost: int = 0  # runs whose worker was lost (not recorded: retried next time)
    elapsed_s: float = 0.0


def study_objectives(study: optuna.Study) -> list[tuple[str, bool, str]]:
    """``(name, maximize, source)`` per objective of the study, from its metric names and
    directions (any number of them)."""
    names = list(study.metric_names or [])
    if len(names) != len(study.directions):
        raise VerdictError(f"study {study.study_name!r} has no objective names; was it "
                           "written by nas search?")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise VerdictError(f"study {study.study_name!r}: unknown objective(s) {unknown}; "
                           f"known: {', '.join(OBJECTIVES)}")
    out = [(n, d == optuna.study.StudyDirection.MAXIMIZE, OBJECTIVES[n].source)
           for n, d in zip(names, study.directions)]
    if not any(src == "metrics" for _, _, src in out):
        raise VerdictError(f"study {study.study_name!r} has no quality objective "
                           f"(objectives {names})")
    return out


def _front_text(study: optuna.Study, front: Sequence[Any]) -> str:
    names = study.metric_names or []
    return "; ".join(f"trial {t.number} (" + ", ".join(
        f"{n}={v:.4g}" for n, v in zip(names, t.values)) + ")" for t in front)


def pick_point(study: optuna.Study, point: str) -> Any:
    """The front trial named by ``point`` (``knee``, ``best:OBJ``, ``under:OBJ<=V``,
    ``trial:N``); an error naming the study when no trial reached the full budget, and
    listing the front when ``trial:N`` is not on it."""
    from nas.export import ExportError, choose_trial, parse_pick

    if not full_budget_trials(study):
        raise VerdictError(f"study {study.study_name!r} has no trial that reached the full "
                           "budget: there is no front to give a verdict around; run (or "
                           "resume) nas search first")
    try:
        pick = parse_pick(point)
        front = pareto_front(study)
        if pick.kind != "trial":
            trial = choose_trial(study, pick)
        else:
            match = [t for t in front if t.number == pick.number]
            if not match:
                raise VerdictError(f"--point {point!r}: trial {pick.number} is not on the "
                                   f"Pareto front of study {study.study_name!r}; the front "
                                   f"is: {_front_text(study, front)}")
            trial = match[0]
    except ExportError as e:  # export's picks, under this command's flag name
        raise VerdictError(str(e).replace("--pick", "--point", 1)) from None
    if not isinstance(trial.user_attrs.get("fusion"), dict):
        raise VerdictError(f"study {study.study_name!r} trial {trial.number} has no 'fusion' "
                           "user attribute; was the study written by nas search?")
    return trial


def _interval(diffs: Sequence[float]) -> Interval:
    return paired_interval(diffs, LEVEL)


def summarise(toggles: Sequence[J.Toggle], runs: dict[str, Any], plan: Sequence[J.Job],
              objectives: Sequence[tuple[str, bool, str]]) -> list[dict[str, Any]]:
    """One row per variant: action, seeds paired, effects per objective (on - off) with
    interval, the base mean, and the word. ``runs`` maps keys to finished-run values
    (``{objective: value}``, or None for a failed run)."""
    bases = {j.seed: runs.get(j.key) for j in plan if j.role == "base"}
    by_variant: dict[str, dict[int, Any]] = {}
    for j in plan:
        if j.role == "variant":
            by_variant.setdefault(j.variant or "", {})[j.seed] = runs.get(j.key)
    quality = next(o for o in objectives if o[2] == "metrics")
    rows = []
    for tg in toggles:
        v: Variant = tg.variant
        row: dict[str, Any] = {"variant": v.name, "plan": v.plan, "title": v.title,
                               "action": tg.action or "", "reason": tg.reason or "",
                               "fusion_id": tg.fusion.fusion_id if tg.fusion else ""}
        pairs = []
        for seed, vals in sorted(by_variant.get(v.name, {}).items()):
            base = bases.get(seed)
            if vals is None or base is None:
                continue
            on, off = (vals, base) if tg.action == "add" else (base, vals)
            pairs.append((on, off))
        effects = {name: _interval([on[name] - off[name] for on, off in pairs])
                   for name, _, _ in objectives}
        costs = {name: effects[name] for name, _, src in objectives if src == "costs"}
        maxi = {name: m for name, m, _ in objectives}
        base_vals = [b for b in bases.values() if b is not None]
        base_mean = {name: (sum(b[name] for b in base_vals) / len(base_vals)
                            if base_vals else float("nan")) for name, _, _ in objectives}
        word = UNTESTED if tg.fusion is None else verdict_word(
            effects[quality[0]], quality[1], costs, maxi, base_mean)
        if tg.fusion is not None and len(pairs) < 2 and not row["reason"]:
            row["reason"] = f"{len(pairs)} seed(s) with both runs finished; 2 needed"
        row.update(n=len(pairs), word=word, quality=quality[0],
                   effects={k: iv.as_dict() for k, iv in effects.items()}, base=base_mean)
        rows.append(row)
    return rows


def _execute(todo: Sequence[J.Job], opts: VerdictOptions, data_spec: str,
             names: list[str], rungs: list[float], on_done: Callable[[J.Job, Any, str | None],
                                                                    None],
             log: Callable[[str], None]) -> None:
    if opts.executor == "local":
        for job in todo:
            on_done(job, J.execute(job, opts.evaluator, data_spec, names, rungs), None)
        return
    from nas.search import ray_runs

    cpu_only = opts.ray.gpus_per_trial == 0
    payloads = [J.payload(j, opts.evaluator, data_spec, names, rungs, cpu_only) for j in todo]
    ray_runs.run_calls("nas.verdict.jobs:execute_payload", payloads, opts.ray,
                       lambda i, res, err: on_done(todo[i], res, err),
                       on_start=lambda n: log(f"on Ray: {n} run(s) at a time"))


def run_verdict(study: optuna.Study, storage: Any, opts: VerdictOptions,
                out: TextIO | None = None) -> VerdictResult:
    """Give the verdict around ``opts.point`` (see the module docstring)."""
    out = out or sys.stderr
    t0 = time.monotonic()

    def log(msg: str) -> None:
        out.write(f"nas verdict: {msg}\n")
        out.flush()

    if opts.seeds < 2:
        raise VerdictError(f"--seeds: at least 2 are needed for an interval, got {opts.seeds}")
    try:
        variants = parse_variant_names(opts.variants)
    except KeyError as e:
        raise VerdictError(f"--variants: {e.args[0]}") from None
    objectives = study_objectives(study)
    names = [o[0] for o in objectives]
    trial = pick_point(study, opts.point)
    from nas.config import FusionConfig, TrainConfig

    src = f"study {study.study_name!r} trial {trial.number}"
    fusion = FusionConfig.from_dict(trial.user_attrs.get("fusion"), source=f"{src} [fusion]")
    train = TrainConfig.from_dict(trial.user_attrs.get("train")
                                  or study.user_attrs.get("train_config"),
                                  source=f"{src} [train]")
    ua = study.user_attrs
    data_spec = str(ua.get("data") or "synthetic")
    rungs = [float(r) for r in (ua.get("rungs") or [ua.get("full_budget") or train.epochs])]
    full = full_budget_trials(study)
    doc: dict[str, Any] = {
        "study": study.study_name, "companion": R.companion_name(study.study_name),
        "point": {"pick": opts.point, "trial": trial.number, "fusion_id": fusion.fusion_id,
                  "values": dict(zip(names, map(float, trial.values)))},
        "objectives": [{"name": n, "direction": "maximize" if m else "minimize",
                        "kind": "quality" if s == "metrics" else "cost"}
                       for n, m, s in objectives],
        "level": LEVEL, "seeds": opts.seeds, "data": data_spec, "epochs": rungs[-1],
        "quick_estimate": {"n_trials": len(full),
                           "rows": quick_estimate(full, names, variants)},
    }
    result = VerdictResult(doc)
    if opts.quick_only:
        result.elapsed_s = time.monotonic() - t0
        return result

    plan, toggles = J.plan(fusion, train, variants, opts.seeds, data_spec, rungs)
    comp = R.open_companion(study, storage)
    have = R.recorded(comp)
    todo = [j for j in plan if j.key not in have]
    result.reused = len(plan) - len(todo)
    log(f"point trial {trial.number} ({fusion.fusion_id}); {len(toggles)} variant(s) x "
        f"{opts.seeds} seed(s) + base: {len(plan)} run(s) of {rungs[-1]:g} epochs, "
        f"{result.reused} already recorded in {comp.study_name!r}, {len(todo)} to train")

    def on_done(job: J.Job, outcome: Any, err: str | None) -> None:
        if outcome is None:  # the worker was lost: not recorded, retried next time
            result.lost += 1
            log(f"run {job.variant or 'base'} seed {job.seed} lost ({err}); rerun to retry")
            return
        have[job.key] = R.record(comp, job, outcome, trial.number, names)
        result.trained += 1
        faultpoint("verdict_after_record")  # test hook: a crash between two records
        what = (f"failed: {outcome['error']}" if outcome.get("error") else
                ", ".join(f"{n}={outcome['values'][n]:.4g}" for n in names))
        log(f"[{result.trained}/{len(todo)}] "
            f"{job.variant or 'base'}{' (' + job.action + ')' if job.action else ''} "
            f"seed {job.seed}: {what} ({outcome.get('wall_s', 0):.1f} s)")

    if todo:
        _execute(todo, opts, data_spec, names, rungs, on_done, log)
    runs = {k: (dict(zip(names, t.values)) if t.state.name == "COMPLETE" else None)
            for k, t in have.items()}
    doc["runs"] = {"planned": len(plan), "trained_now": result.trained,
                   "reused": result.reused, "lost": result.lost,
                   "failed": sum(1 for j in plan if j.key in runs and runs[j.key] is None)}
    doc["rows"] = summarise(toggles, runs, plan, objectives)
    result.elapsed_s = time.monotonic() - t0
    doc["wall_s"] = result.elapsed_s
    doc["train_s"] = sum(float(have[j.key].user_attrs.get("wall_s") or 0.0)
                         for j in plan if j.key in have)
    return result
