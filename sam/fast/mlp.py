"""The encoder's MLP through oneDNN's fused linear: GELU applied inside the first matrix product.

``torch.ops.mkldnn._linear_pointwise`` is the op that ``torch.compile`` emits for this pattern
on CPU. It has no autograd, so anything that needs gradients takes the plain path, and it is
probed once per dtype on first use, since some CPUs lack a kernel for some dtypes (bf16 on
AVX2-only machines raises "could not create a primitive descriptor").
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from sam.modeling.common import MLPBlock


class FusedMLPBlock(MLPBlock):
    """:class:`MLPBlock` with the same parameters, fused on CPU where oneDNN serves the dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            type(self.lin1) is nn.Linear  # not a quantized stand-in (sam.fast.int8)
            and isinstance(self.act, nn.GELU)
            and self.act.approximate == "none"
            and x.device.type == "cpu"
            and not needs_grad(x, *self.parameters())
            and onednn_serves(x.dtype)
        ):
            hidden = _onednn_linear(x.reshape(-1, x.shape[-1]), self.lin1, "gelu", "none")
            return _onednn_linear(hidden, self.lin2, "none", "").view(*x.shape[:-1], -1)
        return super().forward(x)


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record an op on ``tensors`` (ops without autograd must not run)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _onednn_linear(x: torch.Tensor, linear: nn.Linear, attr: str, algorithm: str) -> torch.Tensor:
    """oneDNN's linear with a fused pointwise epilogue: (N, in) -> (N, out)."""
    return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, attr, [], algorithm)


@cache
def onednn_serves(dtype: torch.dtype) -> bool:
    """Whether the fused op runs, and agrees with the plain one, in ``dtype`` on this machine."""
    if dtype not in (torch.float32, torch.bfloat16) or not torch.backends.mkldnn.is_available():
        return False
    try:
        probe = nn.Linear(4, 4).to(dtype)
        x = torch.ones(2, 4, dtype=dtype)
        with torch.no_grad():
            out = _onednn_linear(x, probe, "gelu", "none")
            expected = nn.functional.gelu(probe(x))
        atol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16 keeps about 3 digits
        return torch.allclose(out.float(), expected.float(), atol=atol)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
