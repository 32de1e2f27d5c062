import platform

import pytest
import torch
from torch import nn

from sam.modeling import common
from sam.modeling.common import MLPBlock


def plain_mlp(block: MLPBlock, x: torch.Tensor) -> torch.Tensor:
    return block.lin2(block.act(block.lin1(x)))


def test_onednn_fused_linear_is_available_on_x86():
    # CI runs on x86 CPUs, where torch ships oneDNN: the fast path must not silently vanish
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the fused path is only promised on x86")
    assert torch.float32 in common._ONEDNN_DTYPES


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 0.05)])
def test_mlp_inference_path_matches_plain(dtype, atol):
    torch.manual_seed(0)
    block = MLPBlock(48, 192).to(dtype)
    x = torch.randn(2, 5, 7, 48, dtype=dtype)
    with torch.no_grad():
        # bf16 takes the fused op only where oneDNN runs it (not on AVX2-only CPUs)
        assert common._use_onednn(x, block) == (dtype in common._ONEDNN_DTYPES)
        out = block(x)
        expected = plain_mlp(block, x)
    assert out.shape == (2, 5, 7, 48) and out.dtype == dtype
    torch.testing.assert_close(out.float(), expected.float(), atol=atol, rtol=0)


def test_mlp_training_takes_the_autograd_path():
    torch.manual_seed(0)
    block = MLPBlock(16, 32)
    x = torch.randn(3, 16)
    assert not common._use_onednn(x, block)  # parameters require grad
    out = block(x)
    out.sum().backward()
    assert block.lin1.weight.grad is not None
    torch.testing.assert_close(out, plain_mlp(block, x))


def test_other_activations_keep_their_own_path():
    torch.manual_seed(0)
    block = MLPBlock(16, 32, act=nn.ReLU)
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(block(x), plain_mlp(block, x))
