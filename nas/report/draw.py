"""Thin plotly layer: one function per figure, drawing data computed in ``nas.report.data``.

Nothing here computes anything that a test would need to check; it only maps the data
classes onto plotly traces and axes.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from nas.report.data import Curve, Fidelity, GateSummary, ParetoPoints
from nas.search.pareto import direction_signs

__all__ = [
    "curves_figure",
    "fidelity_figure",
    "gates_figure",
    "hypervolume_figure",
    "importance_figure",
    "pareto_axes",
    "pareto_figure",
]

_LAYOUT = dict(template="plotly_white", height=420, margin=dict(l=60, r=20, t=50, b=50))


def pareto_axes(directions: Sequence[Any]) -> tuple[int, int]:
    """(x, y) objective indices: x = the first minimised (cost), y = the first maximised."""
    signs = direction_signs(directions)
    mins = [i for i, s in enumerate(signs) if s > 0]
    maxs = [i for i, s in enumerate(signs) if s < 0]
    if len(signs) == 1:
        return 0, 0
    x = mins[0] if mins else 1
    y = maxs[0] if maxs else next(i for i in range(len(signs)) if i != x)
    return x, y


def pareto_figure(pts: ParetoPoints, metric_names: Sequence[str],
                  directions: Sequence[Any]) -> go.Figure:
    """All full-budget trials (grey) and the Pareto front (line); cost on a log axis."""
    xi, yi = pareto_axes(directions)
    fig = go.Figure()
    other = ~pts.on_front
    if other.any():
        fig.add_trace(go.Scatter(
            x=pts.values[other, xi], y=pts.values[other, yi], mode="markers",
            name="dominated", marker=dict(color="#aaa", size=8),
            text=[h for h, o in zip(pts.hover, other) if o], hoverinfo="text"))
    order = sorted(pts.front_order, key=lambda i: pts.values[i, xi])
    if order:
        fig.add_trace(go.Scatter(
            x=pts.values[order, xi], y=pts.values[order, yi], mode="markers+lines",
            name="Pareto front", marker=dict(color="#d62728", size=11),
            line=dict(shape="hv", dash="dot"),
            text=[pts.hover[i] for i in order], hoverinfo="text"))
    # cost spans orders of magnitude; a log axis needs positive values
    log_x = direction_signs(directions)[xi] > 0 and len(pts.values) and \
        bool(np.all(pts.values[:, xi] > 0))
    fig.update_layout(title="Pareto front of full-budget trials",
                      xaxis_title=metric_names[xi], yaxis_title=metric_names[yi], **_LAYOUT)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def hypervolume_figure(numbers: Sequence[int], hv: np.ndarray) -> go.Figure:
    """Normalised hypervolume after each full-budget trial."""
    fig = go.Figure(go.Scatter(x=list(numbers), y=list(map(float, hv)), mode="lines+markers",
                               name="hypervolume"))
    fig.update_layout(title="Hypervolume history (normalised, reference 1.1 per objective)",
                      xaxis_title="trial number", yaxis_title="hypervolume (fraction)",
                      **_LAYOUT)
    return fig


def importance_figure(imps: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """Horizontal bars of parameter importance, one colour per objective."""
    fig = go.Figure()
    params = sorted({p for d in imps.values() for p in d})
    for name, d in imps.items():
        fig.add_trace(go.Bar(y=params, x=[d.get(p, 0.0) for p in params], orientation="h",
                             name=name))
    fig.update_layout(title="Parameter importance per objective (PED-ANOVA, full-budget trials)",
                      barmode="group", xaxis_title="importance (share)", **_LAYOUT)
    fig.update_layout(height=max(300, 40 + 28 * len(params) * max(1, len(imps))))
    return fig


def curves_figure(curves: Sequence[Curve], metric: str = "recall") -> go.Figure:
    """Recall per rung for every trial; stopped trials dashed grey with an x at their end."""
    fig = go.Figure()
    shown: set[str] = set()
    for c in curves:
        group = "stopped" if c.stopped else c.status
        style = (dict(color="#999", dash="dash") if c.stopped else dict(color=None))
        fig.add_trace(go.Scatter(
            x=c.epochs, y=c.values, mode="lines+markers", line=style, legendgroup=group,
            name=group, showlegend=group not in shown,
            marker=dict(symbol=["circle"] * (len(c.values) - 1)
                        + ["x" if c.stopped else "circle"], size=7),
            hovertemplate=f"trial {c.number} ({c.status})<br>epochs %{{x}}<br>{metric} %{{y:.3f}}"
                          "<extra></extra>"))
        shown.add(group)
    fig.update_layout(title=f"Learning curves by rung ({metric} on val)", xaxis_title="epochs",
                      yaxis_title=metric, **_LAYOUT)
    return fig


def fidelity_figure(fid: Sequence[Fidelity]) -> go.Figure:
    """Spearman rho between recall at each rung and at the full budget."""
    fig = go.Figure(go.Bar(
        x=[f"rung {f.rung} ({f.epochs:g} ep)" for f in fid],
        y=[None if np.isnan(f.rho) else f.rho for f in fid],
        text=[f"n={f.n}" for f in fid], textposition="outside"))
    fig.update_layout(title="Proxy fidelity: rank correlation with full-budget recall",
                      yaxis_title="Spearman rho", yaxis_range=[-1, 1.1], **_LAYOUT)
    return fig


def gates_figure(gates: Sequence[GateSummary], title: str) -> go.Figure:
    """Violins of each gate kind per layer, drawn from the stored distributions."""
    fig = go.Figure()
    for name in sorted({g.gate for g in gates}):
        sel = [g for g in gates if g.gate == name and g.samples]
        if not sel:
            continue
        xs = [f"layer {g.layer}" for g in sel for _ in g.samples]
        ys = [v for g in sel for v in g.samples]
        kinds = sorted({g.kind for g in sel if g.kind})
        label = f"{name} ({'/'.join(kinds)})" if kinds else name
        fig.add_trace(go.Violin(x=xs, y=ys, name=label, box_visible=True,
                                meanline_visible=True, points=False, scalemode="width",
                                spanmode="hard"))
    fig.update_layout(title=title, violinmode="group", yaxis_title="gate value", **_LAYOUT)
    return fig
