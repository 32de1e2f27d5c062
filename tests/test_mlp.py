"""The fused MLP (sam.fast.mlp) against the plain one."""

import platform

import pytest
import torch
from torch import nn

from sam.fast.mlp import FusedMLPBlock, onednn_serves
from sam.modeling.common import MLPBlock


def fused_twin(block: MLPBlock) -> FusedMLPBlock:
    """A fused block holding the same parameters as ``block``."""
    twin = FusedMLPBlock(block.lin1.in_features, block.lin1.out_features, type(block.act))
    twin.load_state_dict(block.state_dict())
    return twin.to(block.lin1.weight.dtype)


def test_onednn_fused_linear_is_available_on_x86():
    # CI runs on x86 CPUs, where torch ships oneDNN: the fast path must not silently vanish
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the fused path is only promised on x86")
    assert onednn_serves(torch.float32)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_fused_mlp_matches_plain(dtype, atol, monkeypatch):
    torch.manual_seed(0)
    plain = MLPBlock(48, 192).to(dtype)
    fused = fused_twin(plain)
    x = torch.randn(2, 5, 7, 48, dtype=dtype)
    calls = []
    op = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr("sam.fast.mlp._onednn_linear", lambda *a: calls.append(1) or _call(op, *a))
    with torch.no_grad():
        out = fused(x)
        expected = plain(x)
    # bf16 takes the fused op only where oneDNN runs it (not on AVX2-only CPUs)
    assert bool(calls) == onednn_serves(dtype)
    assert out.shape == (2, 5, 7, 48) and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected.float(), atol=atol, rtol=0)


def _call(op, x, linear, attr, algorithm):
    return op(x, linear.weight, linear.bias, attr, [], algorithm)


def test_training_takes_the_autograd_path():
    torch.manual_seed(0)
    plain = MLPBlock(16, 32)
    fused = fused_twin(plain)
    x = torch.randn(3, 16)
    out = fused(x)  # parameters require grad: the plain path
    out.sum().backward()
    assert fused.lin1.weight.grad is not None
    torch.testing.assert_close(out, plain(x))


def test_other_activations_keep_their_own_path():
    torch.manual_seed(0)
    plain = MLPBlock(16, 32, act=nn.ReLU)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused_twin(plain)(x), plain(x))


def test_unserved_dtypes_are_refused_by_the_probe():
    assert not onednn_serves(torch.float16)
    assert not onednn_serves(torch.float64)
