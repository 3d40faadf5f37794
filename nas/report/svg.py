"""A small standalone SVG of a trial's gate distributions (the dashboard artifact).

plotly cannot write static images without kaleido (not a dependency), and a plotly HTML
file carries 4 MB of plotly.js, so the per-trial artifact is a hand-drawn SVG: one box per
(layer, gate) from the stored quantiles (whiskers 5%..95%, box 25%..75%, median line,
mean dot). optuna-dashboard previews ``image/svg+xml`` artifacts inline.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

from nas.report.data import GateSummary

__all__ = ["gate_svg"]

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]


def _q(g: GateSummary, p: float) -> float:
    """Quantile p (0..1) by linear interpolation of the stored quantiles (or samples)."""
    qs = g.quantiles if len(g.quantiles) >= 2 else sorted(g.samples)
    if not qs:
        return g.mean
    x = p * (len(qs) - 1)
    i = min(int(x), len(qs) - 2)
    return qs[i] + (qs[i + 1] - qs[i]) * (x - i)


def gate_svg(gates: Sequence[GateSummary], title: str, width: int = 720,
             height: int = 360) -> str:
    """The SVG text of a box plot of each gate per layer; a note when there are no gates."""
    t = escape(title)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">{t}</text>')
    if not gates:
        return head + (f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                       'no gate statistics recorded</text></svg>')
    names = sorted({g.gate for g in gates})
    layers = sorted({g.layer for g in gates})
    lo = min(min(_q(g, 0.0), g.mean) for g in gates)
    hi = max(max(_q(g, 1.0), g.mean) for g in gates)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top, bottom = 50, 20 + 90, 30, 40
    pw, ph = width - left - right, height - top - bottom

    def y(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo))

    parts = [head]
    # axes and y ticks
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" '
                 'stroke="black"/>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left + pw}" y2="{y(v):.1f}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    group_w = pw / len(layers)
    box_w = min(28.0, 0.8 * group_w / len(names))
    for li, layer in enumerate(layers):
        cx0 = left + group_w * li
        parts.append(f'<text x="{cx0 + group_w / 2:.1f}" y="{top + ph + 18}" '
                     f'text-anchor="middle">layer {layer}</text>')
        for gi, name in enumerate(names):
            g = next((g for g in gates if g.layer == layer and g.gate == name), None)
            if g is None:
                continue
            c = _PALETTE[gi % len(_PALETTE)]
            x = cx0 + group_w / 2 + box_w * (gi - (len(names) - 1) / 2)  # centred group
            q05, q25, q50, q75, q95 = (_q(g, p) for p in (0.05, 0.25, 0.5, 0.75, 0.95))
            parts.append(f'<line x1="{x:.1f}" y1="{y(q05):.1f}" x2="{x:.1f}" y2="{y(q95):.1f}" '
                         f'stroke="{c}"/>')
            parts.append(f'<rect x="{x - box_w * 0.4:.1f}" y="{y(q75):.1f}" '
                         f'width="{box_w * 0.8:.1f}" height="{max(y(q25) - y(q75), 1):.1f}" '
                         f'fill="{c}" fill-opacity="0.35" stroke="{c}">'
                         f'<title>layer {layer} {escape(name)} ({escape(g.kind)}): mean '
                         f'{g.mean:.3f}, std {g.std:.3f}, saturation {g.saturation:.3f}</title>'
                         '</rect>')
            parts.append(f'<line x1="{x - box_w * 0.4:.1f}" y1="{y(q50):.1f}" '
                         f'x2="{x + box_w * 0.4:.1f}" y2="{y(q50):.1f}" stroke="{c}" '
                         'stroke-width="2"/>')
            parts.append(f'<circle cx="{x:.1f}" cy="{y(g.mean):.1f}" r="2.5" fill="black"/>')
    # legend
    for gi, name in enumerate(names):
        c = _PALETTE[gi % len(_PALETTE)]
        ly = top + 16 * gi
        parts.append(f'<rect x="{width - right + 10}" y="{ly}" width="10" height="10" '
                     f'fill="{c}"/>')
        parts.append(f'<text x="{width - right + 24}" y="{ly + 9}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
