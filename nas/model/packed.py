"""CPU inference with the linear layers on packed weights (oneDNN), bias and QuickGELU fused,
and attention keys padded to whole vectors.

On the CPU, ``nn.Linear`` with a bias (``addmm``) first writes the bias into every row of
the output and then adds the product to it: for this model's small widths that extra pass
costs about a fifth of each product (measured: ``[12288, 128] @ [128, 512]`` in 5.5 ms with
the bias, 4.6 ms without). oneDNN's linear kernel adds the bias (and an activation) inside
the product, on a weight reordered once into its own blocked layout. ``packed_inference``
swaps every linear layer's ``forward`` for that kernel for the duration of a ``with``
block, and puts the originals back after:

- ``nn.Linear``: ``x W^T + b`` on the packed ``W``;
- ``linear_add``: the residual connections (``x + layer(...)``) add inside the kernel;
- the QuickGELU MLPs (``nas.model.common``, ``x W1 + b1 -> h sigmoid(1.702 h) -> . W2 +
  b2``): QuickGELU(h) = silu(1.702 h) / 1.702, so the first product runs on 1.702 W1 and
  1.702 b1 with oneDNN's silu fused in, and the second on W2 / 1.702: no pass of its own
  over the hidden layer, four times the width.

Attention (``nas.model.attention.MultiHeadAttention.attend``) pads its keys and values to a
multiple of ``KEY_MULTIPLE`` inside the block when a short remainder is missing (at most a
quarter of the multiple: 12 keys become 16), the padding masked out (``-inf``; the softmax
gives it weight 0: the same function). torch's CPU attention kernel runs whole blocks of 16
keys on its vectorised path and a remainder slowly: measured on a 2-core Xeon, the
benchmark's ``[1024, 4, 12, 32]`` self-attention took 3.8 ms, padded to 16 keys 2.8 ms with
the copies (1 thread: 7.4 -> 5.3 ms), and its cross-attention over a clip's 12 audio keys
3.1 -> 1.3 ms. A longer padding costs about what it saves (6 keys to 16: 3.0 -> 3.2 ms; 10
to 16 with 1 thread: 0.85 -> 1.17 ms), so those keep the plain call.

Inputs of fewer than ``MIN_ROWS`` rows keep the plain kernels. Same functions, same
parameters; the results agree with the plain path to float32 rounding
(``tests/model/test_packed.py``). It is used only where it applies: float32 weights on the
CPU, oneDNN present, no autocast, no gradient recorded (the packed copies carry none).
``NAS_PACKED_LINEAR=0`` turns it off (``bench/bench_scoring.py`` compares both).
``nas.evaluate.similarity`` scores under it.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from nas.model.common import _QG, _QuickGELUMlp

__all__ = ["KEY_MULTIPLE", "padded_keys", "packed_inference", "packing_applies", "linear_add"]


def _ops() -> Any:
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def packing_applies(model: nn.Module) -> bool:
    """Whether ``packed_inference`` packs this model now (see the module docstring)."""
    if os.environ.get("NAS_PACKED_LINEAR", "1") == "0" or torch.is_grad_enabled():
        return False
    if not torch.backends.mkldnn.is_available() or _ops() is None:
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    return bool(weights) and all(w.device.type == "cpu" and w.dtype == torch.float32
                                 for w in weights)


def _pack(weight: Tensor) -> Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)


#: Below this many rows a oneDNN call costs more than it saves (measured, 128 -> 128 on a
#: 2-core Xeon: 18 us against 7 us at 12 rows, even at 1024, 10 % faster at 4096), so
#: small inputs (one clip, one text) keep the plain kernels.
MIN_ROWS = 1024


#: Attention keys are padded to a multiple of this inside ``packed_inference`` (16 float32:
#: one AVX-512 vector, two AVX2 ones).
KEY_MULTIPLE = 16
_KEY_MULTIPLE: ContextVar[int] = ContextVar("nas_key_multiple", default=0)


def padded_keys(m: int) -> int:
    """How many keys attention over ``m`` keys runs with now: ``m`` rounded up to a
    multiple of ``KEY_MULTIPLE`` inside ``packed_inference`` when that adds at most a
    quarter of the multiple, else ``m`` (see the module docstring)."""
    multiple = _KEY_MULTIPLE.get()
    extra = -m % multiple if multiple else 0
    return m + extra if extra <= multiple // 4 else m


def _rows(x: Tensor) -> int:
    return x.numel() // max(1, x.shape[-1])


class _PackedLinear:
    """``forward`` of one ``nn.Linear``: ``x W^T + b`` (``attr`` "none") or silu of it;
    ``plain`` is the layer's own forward, for inputs of fewer than ``MIN_ROWS`` rows."""

    def __init__(self, weight: Tensor, bias: Tensor | None, attr: str = "none",
                 plain: Any = None) -> None:
        self.weight, self.bias, self.attr, self.plain = _pack(weight), bias, attr, plain

    def __call__(self, x: Tensor) -> Tensor:
        if self.plain is not None and _rows(x) < MIN_ROWS:
            return self.plain(x)
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, self.attr, [], "")

    def add(self, x: Tensor, residual: Tensor) -> Tensor:
        """``x W^T + b + residual`` with the add fused (``attr`` must be "none")."""
        if self.plain is not None and _rows(x) < MIN_ROWS:
            return self.plain(x) + residual
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, self.weight, self.bias,
                                                         "add")


class _PackedMlp:
    """``forward`` of a QuickGELU MLP: silu(1.702 (x W1 + b1)) (W2 / 1.702) + b2."""

    def __init__(self, mlp: _QuickGELUMlp) -> None:
        fc1, fc2 = mlp[0], mlp[2]
        assert isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear)
        b1 = None if fc1.bias is None else fc1.bias.detach() * _QG
        self.fc1 = _PackedLinear(fc1.weight.detach() * _QG, b1, "swish")
        b2 = None if fc2.bias is None else fc2.bias.detach()
        self.fc2 = _PackedLinear(fc2.weight.detach() / _QG, b2)
        self.plain = partial(type(mlp).forward, mlp)

    def __call__(self, x: Tensor) -> Tensor:
        if _rows(x) < MIN_ROWS:
            return self.plain(x)
        return self.fc2(self.fc1(x))

    def add(self, x: Tensor, residual: Tensor) -> Tensor:
        if _rows(x) < MIN_ROWS:
            return self.plain(x) + residual
        return self.fc2.add(self.fc1(x), residual)


def linear_add(layer: nn.Module, x: Tensor, residual: Tensor | None) -> Tensor:
    """``layer(x) + residual`` (``layer``: an ``nn.Linear`` or a QuickGELU MLP): on packed
    weights the residual add rides in the last product's kernel instead of a pass of its
    own (the transformer's residual connections). ``residual`` None: ``layer(x)``."""
    packed = layer.__dict__.get("forward")
    if residual is None:
        return layer(x)
    if isinstance(packed, (_PackedLinear, _PackedMlp)) and residual.is_contiguous():
        return packed.add(x, residual)
    return layer(x) + residual


@contextmanager
def packed_inference(model: nn.Module) -> Iterator[bool]:
    """Run ``model``'s linear layers on packed weights inside the block (yields whether it
    did; a no-op where ``packing_applies`` says no). Weights are packed on entry: do not
    change the parameters inside the block."""
    if not packing_applies(model):
        yield False
        return
    if any(isinstance(m.__dict__.get("forward"), (_PackedLinear, _PackedMlp))
           for m in model.modules()):
        yield True  # already packed by an enclosing block, which puts the modules back
        return
    swapped: list[nn.Module] = []
    token = _KEY_MULTIPLE.set(KEY_MULTIPLE)
    try:
        inner: set[int] = set()
        for m in model.modules():
            if isinstance(m, _QuickGELUMlp):
                m.__dict__["forward"] = _PackedMlp(m)  # the instance's forward, until exit
                swapped.append(m)
                inner.update(id(c) for c in m.children())
        for m in model.modules():
            if isinstance(m, nn.Linear) and id(m) not in inner:
                bias = None if m.bias is None else m.bias.detach()
                m.__dict__["forward"] = _PackedLinear(m.weight, bias,
                                                      plain=partial(nn.Linear.forward, m))
                swapped.append(m)
        yield True
    finally:
        _KEY_MULTIPLE.reset(token)
        for m in swapped:
            del m.__dict__["forward"]
