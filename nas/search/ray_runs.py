"""Independent runs on Ray (tasks, not Tune): the executor of ``nas verdict``.

The search needs Tune (a searcher and an early-stopping scheduler); a verdict only needs a
fixed list of full-budget trainings run in parallel on the same cluster. ``run_calls``
sends each payload to a Ray task that calls a function given by import path, keeps at most
``concurrency`` in flight, and hands every result to ``on_result`` in the driver as soon as
it arrives (the driver records it, so an interrupted run keeps everything finished).

With ``nas/search/ray_adapter.py`` this is the only module that imports Ray.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402

from nas.search.evaluator import RayOptions, import_object  # noqa: E402
from nas.search.ray_adapter import init_ray  # noqa: E402

__all__ = ["run_calls"]


@ray.remote(max_retries=0)
def _call(fn_path: str, payload: dict[str, Any]) -> Any:
    return import_object(fn_path)(payload)


def run_calls(fn_path: str, payloads: Sequence[dict[str, Any]], opts: RayOptions,
              on_result: Callable[[int, Any, str | None], None],
              on_start: Callable[[int], None] | None = None) -> None:
    """Call ``fn_path(payload)`` for every payload on Ray; ``on_result(index, result, None)``
    for each that returns, ``on_result(index, None, reason)`` for one whose task or worker
    failed. Ctrl-C cancels what is still running and re-raises."""
    started = init_ray(opts)
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        limit = opts.concurrency or max(1, int(cpus // max(opts.cpus_per_trial, 1e-9)))
        if on_start:
            on_start(limit)
        remote = _call.options(num_cpus=opts.cpus_per_trial, num_gpus=opts.gpus_per_trial)
        todo = list(range(len(payloads)))[::-1]
        running: dict[Any, int] = {}
        try:
            while todo or running:
                while todo and len(running) < limit:
                    i = todo.pop()
                    running[remote.remote(fn_path, payloads[i])] = i
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    i = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a lost worker, a task error
                        first = (str(e).splitlines() or [""])[0]
                        on_result(i, None, f"{type(e).__name__}: {first}")
                        continue
                    on_result(i, result, None)
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
