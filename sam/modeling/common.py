"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import torch
from torch import nn


class MLPBlock(nn.Module):
    """Two-layer feed-forward block: ``lin2(act(lin1(x)))``."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            _use_onednn(x, self)
            and isinstance(self.act, nn.GELU)
            and self.act.approximate == "none"
        ):
            # the GELU applied inside the first matrix product, not in a pass of its own
            hidden = _onednn_linear(x.reshape(-1, x.shape[-1]), self.lin1, "gelu", "none")
            return _onednn_linear(hidden, self.lin2, "none", "").view(*x.shape[:-1], -1)
        return self.lin2(self.act(self.lin1(x)))


def _onednn_linear(x: torch.Tensor, linear: nn.Linear, attr: str, algorithm: str) -> torch.Tensor:
    """oneDNN's linear with a fused pointwise epilogue (the op torch.compile emits on CPU):
    (N, in) -> (N, out)."""
    return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, attr, [], algorithm)


def _use_onednn(x: torch.Tensor, module: nn.Module) -> bool:
    """Inference on a CPU whose torch build has oneDNN's fused linear. The whole vit_b encoder
    in bf16, five interleaved runs on 2 cores (2026-11-28): median 4.86 -> 4.71 s, mean 4.76 ->
    4.57 s. The op has no autograd, so anything that needs gradients takes the plain path."""
    return (
        x.device.type == "cpu"
        and x.dtype in _ONEDNN_DTYPES
        and not needs_grad(x, *module.parameters())
    )


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will record an op on ``tensors`` (ops without autograd must not run)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _onednn_linear_works(dtype: torch.dtype) -> bool:
    """Whether the fused op runs in ``dtype`` here: on an AVX2-only AMD EPYC it raised "could not
    create a primitive descriptor" in bf16 (2026-12-02), while it ran on AVX512-BF16 CPUs."""
    if not torch.backends.mkldnn.is_available():
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


# the dtypes the fused linear serves on this machine
_ONEDNN_DTYPES = frozenset(d for d in (torch.float32, torch.bfloat16) if _onednn_linear_works(d))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
