"""Issue 6.2: worker faults on a real Ray. A trial whose worker process dies, raises or
produces NaN is FAIL with its reason (or retried with --trial-retries); the search goes on.

Faults are injected through the data spec of the test evaluator
(``tests/faulty_evaluator.py``): it is the one value that reaches every Ray worker unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from nas.search.driver import SearchOptions, run_search
from nas.search.evaluator import EvaluatorSpec, RayOptions
from tests.faulty_evaluator import FAULTY

from reliability_helpers import FOUR, TINY, check_finished, load

pytestmark = pytest.mark.slow


def _opts(tmp_path: Path, data: str, trials: int, retries: int = 0, **kw) -> SearchOptions:
    base = dict(space="quick", study="w", storage=f"sqlite:///{tmp_path}/s.db", data=data,
                trials=trials, seed=3, quiet=True, evaluator=EvaluatorSpec.of_module(FAULTY),
                ray=RayOptions(concurrency=2, max_failures=retries))
    base.update(kw)
    return SearchOptions(**base)


def _expected(t, rules: list[tuple[str, str, str]]) -> str | None:
    """The fault a trial's configuration triggers (first matching rule), else None."""
    cfg = {**t.user_attrs["train"], **t.user_attrs["fusion"]}
    hit = [k for k, f, v in rules if str(cfg[f]).lower() == v]
    for k in hit:
        if k != "nan":
            return k
    return "nan" if hit else None


SIX = """
name: six
base: {fusion: {width: 16, layers: 1, heads: 2, resampler_layers: 1, resampler_queries: 4}}
dimensions:
  query_fusion: {choices: [none, scalar, per_head]}
  layers: {choices: [1, 2]}
proxy: {min_budget: 1, max_budget: 2, eta: 2}
"""


def test_exit_raise_and_nan_are_failed_with_reason(ray_session, tmp_path: Path) -> None:
    rules = [("exit", "query_fusion", "per_head"), ("raise", "query_fusion", "scalar"),
             ("nan", "layers", "2")]
    data = "synthetic|" + "|".join(f"{k}:{f}={v}" for k, f, v in rules)
    space = tmp_path / "six.yaml"  # 6 configurations, all trained: every fault occurs
    space.write_text(SIX)
    s = run_search(_opts(tmp_path, data, trials=6, space=str(space)))
    study = load(s.storage, "w")
    check_finished(study, 6)
    seen: dict[str | None, int] = {}
    for t in study.trials:
        if t.user_attrs["status"] not in ("complete", "stopped", "failed"):
            continue
        kind = _expected(t, rules)
        seen[kind] = seen.get(kind, 0) + 1
        reason = t.user_attrs.get("fail_reason", "")
        if kind is None:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), (t.number, reason)
            continue
        assert t.state == TrialState.FAIL and t.user_attrs["status"] == "failed"
        want = {"exit": "worker process died", "raise": "RuntimeError: injected fault",
                "nan": "non-finite objective"}[kind]
        assert want in reason, (kind, reason)
    print("trained trials by injected fault:", seen)  # figures for docs/reliability.md (-rP)
    assert seen.get("exit") and seen.get("raise") and seen.get("nan") and seen.get(None), seen


def test_retries_rescue_a_once_dying_worker(ray_session, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    space = tmp_path / "four.yaml"  # 4 configurations, all trained: every case occurs
    space.write_text(FOUR)
    data = f"synthetic|exit_once:layers=2@{marks}|kill:width=16"
    s = run_search(_opts(tmp_path, data, trials=4, retries=1, space=str(space)))
    study = load(s.storage, "w")
    check_finished(study, 4)
    rescued = dead = 0
    for t in study.trials:
        if t.user_attrs["status"] not in ("complete", "stopped", "failed"):
            continue
        f = t.user_attrs["fusion"]
        if f["width"] == 16:  # killed on every attempt: FAIL after 1 + 1 retry
            assert t.state == TrialState.FAIL
            assert "worker process died (2 attempts)" in t.user_attrs["fail_reason"]
            dead += 1
        elif f["layers"] == 2:  # died once, the retry trained it
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED), t.user_attrs
            assert t.user_attrs["retries"] == 1
            rescued += 1
        else:
            assert t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            assert "retries" not in t.user_attrs
    print(f"rescued by a retry: {rescued}, dead on every attempt: {dead}")
    assert rescued and dead


def test_a_configuration_that_always_fails_does_not_stall(ray_session, tmp_path: Path) -> None:
    data = "synthetic|exit:heads=2"  # every configuration of the quick space
    s = run_search(_opts(tmp_path, data, trials=4, retries=1))
    study = load(s.storage, "w")
    check_finished(study, 4)
    assert all(t.state == TrialState.FAIL for t in study.trials)
    assert s.trained == 4 and not s.front


def test_real_training_nan_is_failed_with_reason(tmp_path: Path) -> None:
    space = tmp_path / "nan.yaml"
    space.write_text(
        "name: nan\nbase:\n  fusion: {width: 16, layers: 1, heads: 2, resampler_layers: 1,"
        " resampler_queries: 4}\n  train: {batch_size: 16, num_threads: 1}\n"
        "dimensions:\n  lr: {choices: [1.0e-3, 1.0e+6]}\nproxy: {min_budget: 1, max_budget: 1}\n")
    s = run_search(SearchOptions(space=str(space), storage=f"sqlite:///{tmp_path}/s.db",
                                 data=TINY, trials=2, executor="local", quiet=True))
    study = load(s.storage, "nan")
    check_finished(study, 2)
    by_lr = {t.params["lr"]: t for t in study.trials}
    assert by_lr[1e-3].state == TrialState.COMPLETE
    bad = by_lr[1e6]
    assert bad.state == TrialState.FAIL and "loss is nan" in bad.user_attrs["fail_reason"]
