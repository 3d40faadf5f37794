"""A PostgreSQL cluster of the test's own, to stop and restart (never the shared `main`).

Debian's ``pg_createcluster`` (PostgreSQL from ``.ci/run``), as root: a new cluster with a
unique name on a free loopback port, a role and a database for the tests; ``stop``,
``start`` and ``restart`` it with ``pg_ctlcluster``; ``drop`` removes it and its files.
Without root or without the Debian tools the tests skip (and fail in CI, ``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest


def _run(*cmd: str, timeout: float = 120) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create its own PostgreSQL cluster (pg_createcluster)"
    for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian's postgresql-common; see .ci/run)"
    if not os.path.isdir("/usr/lib/postgresql"):
        return "no PostgreSQL server installed under /usr/lib/postgresql"
    return None


class PgCluster:
    """One dedicated cluster: ``url`` for the tests; stop/start/restart; drop at the end."""

    def __init__(self) -> None:
        why = _unavailable()
        if why:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"PostgreSQL fault tests cannot run in CI: {why}")
            pytest.skip(why)
        self.version = sorted(os.listdir("/usr/lib/postgresql"), key=float)[-1]
        self.name = f"nasfault{uuid.uuid4().hex[:6]}"
        self.port = _free_port()
        self.url = f"postgresql://nas:nas@127.0.0.1:{self.port}/nasfault"
        _run("pg_createcluster", self.version, self.name, "-p", str(self.port),
             "--", "--auth-local=trust", "--auth-host=scram-sha-256")
        self.created = True
        self.start()
        self.psql("CREATE ROLE nas LOGIN PASSWORD 'nas'")
        self.psql("CREATE DATABASE nasfault OWNER nas")

    def psql(self, sql: str) -> str:
        return _run("su", "postgres", "-c", f"psql -p {self.port} -tAc \"{sql}\"")

    def ctl(self, action: str) -> None:
        _run("pg_ctlcluster", self.version, self.name, action)

    def start(self) -> None:
        self.ctl("start")
        self.wait_ready()

    def stop(self) -> None:
        self.ctl("stop")

    def restart(self) -> None:
        self.ctl("restart")
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster {self.name} not ready within {timeout} s")

    def drop(self) -> None:
        if self.created:
            subprocess.run(["pg_dropcluster", "--stop", self.version, self.name],
                           capture_output=True, timeout=120, cwd="/")
            self.created = False
