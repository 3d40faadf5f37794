"""Cost model: parameters, FLOPs to index a clip and to answer a query, latency.

Costs are known before any training: they come from a model built from the config
with random weights, run on a few tiny inputs under ``torch.utils.flop_counter``.

- ``index_gflops``: text-independent work per clip (projections, resampler, and for
  text-agnostic configs the whole fusion), done once when a clip enters the index.
- ``query_gflops``: work that depends on one new text, to rank a gallery of G clips:
  text encoding plus the pair scoring. Text-agnostic configs pay G similarity
  computations; text-conditioned ones G fused passes, or with ``rerank_k = k`` a cheap
  text-agnostic first stage over G plus k fused passes.

Pair work is linear in the number of pairs, so it is measured at two small pair counts
and extrapolated (exactly) to G. FLOPs count a multiply-add as 2 (torch's convention).

``FlopCounterMode`` has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to here, and would count it as 0; this module
registers one (the same count torch uses for the CUDA kernels).
"""

from __future__ import annotations

import functools
import math
import statistics
import time
from typing import Any, Callable

import torch
import torch.utils.flop_counter as _fc
from torch.utils.flop_counter import FlopCounterMode

from nas.config import FusionConfig

__all__ = ["DEFAULT_SHAPES", "count_flops", "estimate_costs", "measure_latency_ms"]


# ----------------------------------------------------------------------------------
# FLOP formulas for the CPU attention kernels
# ----------------------------------------------------------------------------------

def _register_cpu_sdpa_formulas() -> None:
    """Give the CPU SDPA kernels the same FLOP formula torch uses for the CUDA ones.

    On CPU, ``F.scaled_dot_product_attention`` dispatches to
    ``aten._scaled_dot_product_flash_attention_for_cpu`` (and its ``_backward``), which
    ``FlopCounterMode`` does not know. Idempotent: registering twice raises in torch.
    """
    aten = torch.ops.aten

    def fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    def bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
            **kwargs) -> int:
        return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):
        op = getattr(aten, name, None)
        if op is not None and op not in _fc.flop_registry:
            _fc.register_flop_formula(op)(formula)


_register_cpu_sdpa_formulas()


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs (multiply-add = 2) of running ``fn()`` once, attention included."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())
