"""The search report: plot data (pure functions, ``data``), drawing (``draw``), HTML (``html``).

``write_report(study, path)`` writes one self-contained plotly HTML file; ``gate_svg`` draws
the small per-trial gate plot that the dashboard shows as an artifact.

Names are resolved lazily, so importing ``nas.report.data`` or ``nas.report.svg`` (as
``nas export`` and ``nas dashboard`` do) never imports plotly.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "full_budget_trials": "nas.report.data",
    "gate_summaries": "nas.report.data",
    "pareto_mask": "nas.report.data",
    "build_report": "nas.report.html",
    "write_report": "nas.report.html",
    "gate_svg": "nas.report.svg",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'nas.report' has no attribute {name!r}")
