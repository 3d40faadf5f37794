"""The quick estimate: signed marginal effects from the study's own full-budget trials.

No training. For each variant, the full-budget trials with it on against those with it
off: the difference of the means of each objective and its 90 % Welch t-interval. The
trials differ in much more than the variant (the sampler chose them together), so this is
an observational first look, confounded by everything else that varies, and never a
verdict: it is reported apart from the paired evidence and says no word.
"""

from __future__ import annotations

from typing import Any, Sequence

from nas.variants import Variant
from nas.verdict.stats import welch_interval

__all__ = ["quick_estimate"]


def quick_estimate(trials: Sequence[Any], objectives: Sequence[str],
                   variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """One row per variant: ``n_on``, ``n_off`` and ``effects[objective]`` (mean on - mean
    off, lo, hi) over ``trials`` (full-budget trials with a ``fusion`` user attr)."""
    rows = []
    usable = [t for t in trials if isinstance(t.user_attrs.get("fusion"), dict)]
    for v in variants:
        on = [t for t in usable if v.is_on(t.user_attrs["fusion"])]
        off = [t for t in usable if not v.is_on(t.user_attrs["fusion"])]
        effects = {o: welch_interval([t.values[i] for t in on], [t.values[i] for t in off])
                   .as_dict() for i, o in enumerate(objectives)}
        rows.append({"variant": v.name, "plan": v.plan, "n_on": len(on), "n_off": len(off),
                     "effects": effects})
    return rows
