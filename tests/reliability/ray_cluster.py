"""A Ray cluster of the test's own, started with `ray start` on this machine.

Each node has its own temp dir and ports, and each `ray start` runs in a session of its
own: ``close`` stops exactly those process groups; ``kill(node)`` SIGKILLs every process
of the node's session, its raylet and its workers (a node that leaves). Never `ray stop`,
which would stop every Ray on the machine. Ray resolves ``--node-ip-address 127.0.0.1``
to the machine's own address (``services.resolve_ip_for_localhost``); traffic stays on
this host.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reliability_helpers import nas_env

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(pgid: int) -> None:
    """Stop one `ray start`'s process group: TERM, then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def kill_session(sid: int) -> int:
    """SIGKILL every process of one `ray start`'s session at once (a machine that
    vanishes): its raylet and agents (the session's process group) and its workers
    (each in a process group of its own, in the same session). Returns how many."""
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == sid:  # field 6: session id
            try:
                os.kill(int(d), signal.SIGKILL)
                n += 1
            except ProcessLookupError:
                pass
    return n


class RayCluster:
    """``head()`` then ``worker()`` nodes; ``address``; ``kill(node)``; ``close()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []
        self.dirs: list[str] = []
        self.cpus = 0  # CPUs of the nodes started so far

    def _start(self, cpus: int, *args: str) -> int:
        d = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # Ray's socket paths must stay short
        self.dirs.append(d)
        p = subprocess.Popen([RAY, "start", *args, "--temp-dir", d, "--num-cpus", str(cpus),
                              "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                              "--dashboard-agent-listen-port", str(free_port())],
                             env=nas_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        self.cpus += cpus
        self.groups.append(p.pid)  # the group of everything this `ray start` leaves running
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out[-3000:]
        return p.pid

    def head(self, cpus: int = 1) -> int:
        return self._start(cpus, "--head", "--port", str(self.port),
                           "--include-dashboard=false", "--dashboard-port", str(free_port()))

    def worker(self, cpus: int = 1) -> int:
        pid = self._start(cpus, "--address", self.address)
        self.wait_nodes(len(self.groups))
        return pid

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        """Until the head counts ``n`` live nodes: `ray start` returns before a new node's
        resources are registered, and a search started then would see the head alone."""
        code = ("import sys, time, ray\n"
                f"ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False)\n"
                f"deadline = time.monotonic() + {timeout}\n"
                "while time.monotonic() < deadline:\n"
                "    alive = sum(1 for x in ray.nodes() if x['Alive'])\n"
                "    cpus = ray.cluster_resources().get('CPU', 0)\n"
                f"    if alive >= {n} and cpus >= {self.cpus}: sys.exit(0)\n"
                "    time.sleep(0.5)\n"
                "sys.exit(f'{alive} live node(s), {cpus} CPU(s)')\n")
        r = subprocess.run([sys.executable, "-c", code], env=nas_env(), capture_output=True,
                           text=True, timeout=timeout + 60)
        assert r.returncode == 0, f"waiting for {n} Ray nodes: {r.stderr[-2000:]}"

    def kill(self, node: int) -> None:
        assert kill_session(node), f"no process left in node {node}'s session"

    def close(self) -> None:
        for g in reversed(self.groups):
            stop_group(g)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
