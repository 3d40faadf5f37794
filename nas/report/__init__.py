"""The search report: plot data (pure functions, ``data``), drawing (``draw``), HTML (``html``).

``write_report(study, path)`` writes one self-contained plotly HTML file; ``gate_svg`` draws
the small per-trial gate plot that the dashboard shows as an artifact.
"""

from nas.report.data import full_budget_trials, gate_summaries, pareto_mask
from nas.report.html import build_report, write_report
from nas.report.svg import gate_svg

__all__ = ["build_report", "full_budget_trials", "gate_summaries", "gate_svg", "pareto_mask",
           "write_report"]
