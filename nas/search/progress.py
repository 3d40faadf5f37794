"""What the driver prints: the live progress line and the Pareto-front table."""

from __future__ import annotations

import time
from typing import TextIO

import optuna

from nas.search import records
from nas.search.pareto import pareto_front, study_hypervolume
from nas.search.searcher import AskTellSearcher

__all__ = ["Progress", "fmt_s", "format_front"]


class Progress:
    """One live status line on stderr (\\r-updated on a tty, plain lines otherwise)."""

    def __init__(self, study: optuna.Study, core: AskTellSearcher, out: TextIO, quiet: bool,
                 min_interval: float = 0.5, deadline: float | None = None) -> None:
        self.study = study
        self.core = core
        self.out = out
        self.quiet = quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.t0 = time.monotonic()
        self.done0 = core.done
        self.last = 0.0
        self.last_line = ""
        self.min_interval = min_interval if self.tty else 5.0
        self.deadline = deadline  # time.monotonic() at which the time budget ends

    def counts(self) -> dict[str, int]:
        """Trial counts by status (from the storage)."""
        c = {s.value: 0 for s in records.STATUS}
        for t in self.study.get_trials(deepcopy=False):
            s = records.status_of(t)
            if s is not None and s.value in c:
                c[s.value] += 1
        return c

    def line(self) -> str:
        c = self.counts()
        front = pareto_front(self.study)
        hv = study_hypervolume(self.study, front)
        el = time.monotonic() - self.t0
        done_now = self.core.done - self.done0
        left = self.core.n_trials - self.core.done
        eta = f"{fmt_s(el / done_now * left)}" if done_now and left > 0 else "-"
        if self.deadline is not None:
            eta += f", budget left {fmt_s(max(0.0, self.deadline - time.monotonic()))}"
        return (f"trials {self.core.done}/{self.core.n_trials} done "
                f"(complete {c['complete']}, stopped {c['stopped']}, failed {c['failed']}, "
                f"infeasible {c['infeasible']}, duplicate {c['duplicate']}) | running "
                f"{len(self.core.in_flight)} | front {len(front)} | hypervolume {hv:.3f} | "
                f"{fmt_s(el)} elapsed, ETA {eta}")

    def update(self, force: bool = False) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self.last < self.min_interval:
            return
        self.last = now
        line = self.line()
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        elif line != self.last_line:
            self.out.write(line + "\n")
        self.last_line = line
        self.out.flush()

    def close(self) -> None:
        if self.quiet:
            return
        self.update(force=True)
        if self.tty:
            self.out.write("\n")
        self.out.flush()


def _short(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def format_front(study: optuna.Study, front: list[optuna.trial.FrozenTrial] | None = None
                 ) -> str:
    """A text table of the full-budget Pareto front."""
    from nas.report.data import canonical_params  # here: nas.report imports plotly

    front = pareto_front(study) if front is None else front
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    if not front:
        return "Pareto front: no full-budget trial yet."
    head = ["trial", *names, "config_id", "changed from reference"]
    rows = [head]
    ref = study.user_attrs.get("reference_params") or {}
    for t in front:
        changed = ", ".join(f"{k}={_short(v)}" for k, v in canonical_params(t).items()
                            if k not in ref or ref[k] != v) or "(reference)"
        rows.append([str(t.number), *(f"{v:.4g}" for v in t.values),
                     str(t.user_attrs.get("config_id", "")), changed[:100]])
    w = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(x) for c, x in zip(r, w)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return f"Pareto front ({len(front)} full-budget trials):\n" + "\n".join(lines)
