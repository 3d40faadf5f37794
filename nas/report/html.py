"""Assemble the report: one self-contained HTML file (plotly.js inlined once)."""

from __future__ import annotations

import datetime as _dt
from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.config import atomic_write_text
from nas.report import data as D
from nas.report import draw
from nas.search.pareto import hypervolume_history

__all__ = ["MAX_GATE_TRIALS", "build_report", "write_report"]

# The gate section draws one figure per front trial; beyond this many only the first ones
# (by the first objective) are drawn, to keep the file readable.
MAX_GATE_TRIALS = 8

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em} h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em} td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f4f4f4} .note{color:#666;font-style:italic} code{background:#f4f4f4}
"""


class _Doc:
    """Collects sections; the first figure carries plotly.js, the others reuse it."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self._js_done = False

    def h2(self, text: str) -> None:
        self.parts.append(f"<h2>{escape(text)}</h2>")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{escape(text)}</p>")

    def fig(self, fig: Any) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=not self._js_done,
                                      config={"displaylogo": False}))
        self._js_done = True

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        h = "".join(f"<th>{escape(c)}</th>" for c in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                       for r in rows)
        self.parts.append(f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")


def _metric_names(study: Any) -> list[str]:
    names = study.metric_names
    return list(names) if names else [f"objective {i}" for i in range(len(study.directions))]


def build_report(study: Any) -> str:
    """The report HTML of an Optuna study written by ``nas search``."""
    trials = study.get_trials(deepcopy=False)
    directions = study.directions
    names = _metric_names(study)
    attrs = study.user_attrs
    rungs = attrs.get("rungs")
    full = D.full_budget_trials(trials)
    counts: dict[str, int] = {}
    for t in trials:
        s = str(t.user_attrs.get("status", t.state.name.lower()))
        counts[s] = counts.get(s, 0) + 1

    doc = _Doc()
    dirs = ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, directions))
    doc.parts.append(f"<h1>NAS report: {escape(study.study_name)}</h1>")
    doc.p(f"Objectives: {dirs}. Trials: {len(trials)} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"{len(full)} reached the full budget ({attrs.get('full_budget', '?')} epochs). "
          f"Data: {attrs.get('data', '?')}. Space: {attrs.get('space', '?')}. "
          f"Written {_dt.datetime.now().isoformat(timespec='seconds')}.")

    # Pareto front -----------------------------------------------------------------
    doc.h2("Pareto front")
    pts = D.pareto_points(trials, directions, names)
    if len(full) == 0:
        doc.p("No trial reached the full budget yet: nothing to show.", "note")
    else:
        doc.fig(draw.pareto_figure(pts, names, directions))
        doc.p("Only full-budget trials are shown; hover a point for its configuration.", "note")

    # hypervolume --------------------------------------------------------------------
    doc.h2("Hypervolume history")
    if len(full) >= 1 and len(directions) >= 1:
        numbers, hv = hypervolume_history(study)
        doc.fig(draw.hypervolume_figure(numbers, np.asarray(hv)))
        doc.p("The share of the study's objective box that the front dominates (the number "
              "the search's progress line shows as hypervolume): recall from 300 to 0, each cost "
              "on a log axis from half the cheapest to twice the most expensive configuration "
              "the study tried (or its --max limit); the reference point is the box's worst "
              "corner. Every point uses the final box.", "note")
    else:
        doc.p("No full-budget trial yet.", "note")

    # importance ---------------------------------------------------------------------
    doc.h2("Parameter importance")
    imps, notes = D.param_importances(trials, directions, names)
    if imps:
        doc.fig(draw.importance_figure(imps))
    for name, note in notes.items():
        doc.p(f"{name}: {note}", "note")

    # learning curves ------------------------------------------------------------------
    doc.h2("Learning curves by rung")
    curves = D.learning_curves(trials, rungs)
    if curves:
        doc.fig(draw.curves_figure(curves))
    else:
        doc.p("No intermediate values recorded.", "note")

    # proxy fidelity -------------------------------------------------------------------
    doc.h2("Proxy fidelity")
    fid = D.proxy_fidelity(trials, names, rungs)
    if fid:
        doc.fig(draw.fidelity_figure(fid))
        doc.p("Spearman rank correlation between recall at each rung and recall at the full "
              "budget, over the trials that reached the full budget (NaN below 3 trials).",
              "note")
    else:
        doc.p("Needs full-budget trials with more than one rung.", "note")

    # gates ------------------------------------------------------------------------------
    doc.h2("Gate distributions of the front's trials")
    front = list(pts.front_order)
    by_number = {t.number: t for t in full}
    for i in front[:MAX_GATE_TRIALS]:
        t = by_number[pts.numbers[i]]
        g = D.gate_summaries(t.user_attrs.get("gates"))
        if not g:
            doc.p(f"trial {t.number}: no per-layer gate statistics recorded.", "note")
            continue
        vals = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(names, pts.values[i]))
        doc.fig(draw.gates_figure(g, f"trial {t.number}: {vals}"))
        warns = (t.user_attrs.get("gates") or {}).get("warnings") or []
        for w in warns:
            doc.p(f"trial {t.number}: {w}", "note")
    if len(front) > MAX_GATE_TRIALS:
        doc.p(f"{len(front) - MAX_GATE_TRIALS} more front trials not drawn.", "note")
    if not front:
        doc.p("No front yet.", "note")

    # table ------------------------------------------------------------------------------
    doc.h2("The front")
    header, rows = D.front_table(trials, directions, names)
    if rows:
        doc.table(header, rows)
    else:
        doc.p("No front yet.", "note")

    # verdicts (written by nas verdict) -------------------------------------------------
    _verdict_section(doc, attrs.get("verdict"))

    body = "\n".join(doc.parts)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>NAS report: {escape(study.study_name)}</title><style>{_CSS}</style>"
            f"</head><body>{body}</body></html>")


def _verdict_section(doc: _Doc, verdict: Any) -> None:
    """The latest ``nas verdict`` of the study (its ``verdict`` user attribute), if any."""
    from nas.verdict import output

    doc.h2("Verdicts: which variants pay, and at what cost")
    if not isinstance(verdict, dict) or "rows" not in verdict:
        doc.p("No verdict yet: run nas verdict --study NAME.", "note")
        return
    text = output.format_table(verdict).splitlines()
    doc.p(text[0])
    doc.table(*output.table_rows(verdict))
    doc.p("Effect = variant on minus variant off, paired by seed, with its 90% t-interval. "
          "pays: recall measurably up (or costs measurably down at unchanged recall); costs "
          "without paying: recall measurably down, or a cost measurably up at unchanged "
          "recall; no measurable effect: every interval covers 0; not tested: fewer than 2 "
          "paired seeds.", "note")
    doc.h2("Quick estimate (no training; not a verdict)")
    doc.p(output.format_quick(verdict).splitlines()[0], "note")
    doc.table(*output.quick_rows(verdict))


def write_report(study: Any, path: str | Path) -> Path:
    """Write the report atomically (temp file + rename) and return its path."""
    p = Path(path)
    atomic_write_text(p, build_report(study))
    return p

