"""The warm start: configurations enqueued when a study is created, before any is sampled."""

from __future__ import annotations

from typing import Any, Mapping

from nas.search.space import SearchSpace

__all__ = ["AVIGATE", "WARM_START", "warm_start_configs"]

# The research plan's recommended single variants (system.md "Warm start").
WARM_START: list[tuple[str, dict[str, Any]]] = [
    ("1A layer_decay=fixed", {"layer_decay": "fixed"}),
    ("3 residual_gate", {"residual_gate": True}),
    ("2 attn_temperature=scalar", {"attn_temperature": "scalar"}),
    ("4 query_fusion=per_head", {"query_fusion": "per_head"}),
    ("5 text_audio=keys", {"text_audio": "keys"}),
]


# The original AVIGATE configuration: the reference's sizes with gates that read only
# [video; audio] and no text-guided query fusion (model.md keeps it as ``gate_inputs: va``).
AVIGATE: tuple[str, dict[str, Any]] = ("avigate (text-agnostic baseline)",
                                       {"gate_inputs": "va", "query_fusion": "none"})


def warm_start_configs(space: SearchSpace, overrides: Mapping[str, Any]
                       ) -> list[tuple[str, dict[str, Any]]]:
    """(label, params) to enqueue on creation, in this order: the original AVIGATE
    configuration, the reference, then the plan's single variants, as far as the space
    can express them (duplicates and inexpressible ones left out).

    Why AVIGATE first (cost-aware warm start). The reference and the plan's variants are
    all text-conditioned: each answers a query with one fused pass per gallery clip, two
    to three orders of magnitude more query FLOPs than a text-agnostic configuration,
    and several times the training time per epoch. The front's cheap end (and most of
    the hypervolume, whose cost axis runs from 0 to the reference point) belongs to
    text-agnostic configurations, and AVIGATE is the baseline the plan sets out to
    improve on. Trained first, it costs a fraction of one text-conditioned trial, puts
    a point on the cheap end of the front at once, and gives MO-ASHA a yardstick at
    every rung: the text-conditioned warm-start trials that follow are only continued
    where they beat it on recall (at their cost they cannot beat it on cost), instead
    of each running to the full budget because it was the first at its rungs.
    """
    ref_params = space.reference_params()
    ref_f, ref_t = space.build(ref_params, overrides)
    out: list[tuple[str, dict[str, Any]]] = []
    try:
        base = space.params_of(ref_f.replace(**AVIGATE[1]), ref_t)
    except Exception:  # noqa: BLE001 - not expressible with this base: leave it out
        base = None
    if base is not None and base != ref_params:
        out.append((AVIGATE[0], base))
    out.append(("reference", ref_params))
    for label, change in WARM_START:
        try:
            f = ref_f.replace(**change)
        except Exception:  # noqa: BLE001 - an impossible variant for this base: skip it
            continue
        p = space.params_of(f, ref_t)
        if p is not None and all(p != q for _, q in out):
            out.append((label, p))
    return out
