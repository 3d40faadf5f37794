"""Warms a worker of the local Ray cluster that ``nas search`` starts, as the worker starts.

``ray_adapter.init_ray`` names this module in Ray's ``preload_python_modules`` system
setting, so each Python worker the cluster pre-starts (one per CPU) imports it before it
takes any work: Tune, torch and the evaluator get imported, and the search's data is
loaded into the worker's cache (``ray_adapter._DATA_CACHE``), while the driver is still
loading its own copy, opening the study and setting Tune up. Tune's trial actors then
start on these warm workers instead of fresh processes (a fresh one takes 7-9 s on a
2-core machine before its first step).

When it is done (or has failed) the worker leaves an empty file named by its pid in the
folder ``ray_adapter.PRELOAD_ENV["ready"]`` names, so that the driver can wait for a warm
pool before it asks for the first trial (``ray_adapter.wait_warm``).

Nothing here may break a worker: any failure leaves the work to the trial, which loads
what it needs itself and reports its own error.
"""

from __future__ import annotations

import os
import time

STARTED_AT = time.time()  # when this worker began to warm up (tests/search/test_ray_warm.py)


def warm() -> None:
    env: dict[str, str] = {}
    try:
        from nas.search import ray_adapter
        from nas.search.evaluator import import_object

        env = ray_adapter.PRELOAD_ENV
        train = os.environ.get(env["train"])
        if train:
            import_object(train)
        loader, spec = os.environ.get(env["loader"]), os.environ.get(env["spec"])
        if loader and spec:
            ray_adapter._load_data(loader, spec)
    except Exception:  # noqa: BLE001 - the trial redoes it and reports the error
        pass
    finally:
        ready = os.environ.get(env.get("ready", ""))
        if ready:
            try:
                open(os.path.join(ready, str(os.getpid())), "w").close()
            except OSError:
                pass


warm()
