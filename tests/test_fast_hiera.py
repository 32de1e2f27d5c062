"""SAM 2's chunked Hiera (sam.fast.hiera) against the plain one on the same random weights."""

from __future__ import annotations

import copy

import pytest
import torch

from sam import build_sam2, optimize
from sam.fast import is_optimized
from sam.fast.hiera import (
    ChunkedHiera,
    ChunkedMultiScaleBlock,
    FusedMultiScaleAttention,
    linear,
    position_embedding,
)
from sam.fast.int8 import quantize_encoder
from sam.fast.mlp import onednn_serves
from sam.modeling.sam2.hiera import Hiera, MultiScaleBlock
from sam.weights.random_weights import randomize_weights

ONE_WINDOW_ROW = 1  # CHUNK_VALUES so small that each band is one row of windows


def _plain_and_chunked(module: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    plain = randomize_weights(module, seed=0).eval()
    return plain, optimize(copy.deepcopy(plain))


def _trunk() -> Hiera:
    """sam2_test's trunk: windows of 8, 4, 14 and 7, pooling blocks, one global block."""
    return build_sam2("sam2_test").image_encoder.trunk


@pytest.mark.parametrize("chunk_values", [ONE_WINDOW_ROW, 2**21])
@pytest.mark.parametrize("side", [128, 160])
def test_chunked_trunk_matches_plain(side, chunk_values, monkeypatch):
    # 128 px: grids 32, 16, 8 and 4, the last two padded to windows of 14 and 7;
    # 160 px: grids 40, 20, 10 and 5, so the pooling block into the last stage is padded too
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", chunk_values)
    plain, chunked = _plain_and_chunked(_trunk())
    assert type(chunked) is ChunkedHiera
    assert all(type(block) is ChunkedMultiScaleBlock for block in chunked.blocks)
    assert all(type(block.attn) is FusedMultiScaleAttention for block in chunked.blocks)
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, outputs = plain(pixels), chunked(pixels)
    assert len(outputs) == len(expected) == 4
    for level, (out, exp) in enumerate(zip(outputs, expected)):
        assert out.shape == exp.shape, level
        torch.testing.assert_close(
            out, exp, atol=1e-5, rtol=1e-5, msg=lambda m, level=level: f"{level}: {m}"
        )


@pytest.mark.parametrize(
    ("dim", "dim_out", "heads", "q_stride", "window", "hw"),
    [
        (8, 8, 1, None, 4, (10, 13)),  # windows do not divide the grid: padded
        (8, 8, 2, None, 3, (9, 9)),
        (8, 16, 2, (2, 2), 4, (10, 14)),  # pooling, padded, odd pooled grid (5 x 7)
        (8, 16, 2, (2, 2), 4, (16, 16)),
        (8, 8, 2, None, 0, (5, 7)),
    ],
)
def test_chunked_block_matches_plain(dim, dim_out, heads, q_stride, window, hw, monkeypatch):
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", ONE_WINDOW_ROW)
    block = MultiScaleBlock(dim, dim_out, heads, q_stride=q_stride, window_size=window)
    plain, chunked = _plain_and_chunked(block)
    x = torch.randn(2, *hw, dim, generator=torch.Generator().manual_seed(2))
    x_before = x.clone()
    with torch.no_grad():
        out = chunked(x)
        expected = plain(x)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(x, x_before)  # the input is left alone (Hiera keeps it as a stage output)


def test_windowed_block_runs_a_band_of_window_rows_at_a_time(monkeypatch):
    block = MultiScaleBlock(8, 16, 2, q_stride=(2, 2), window_size=4)
    _, chunked = _plain_and_chunked(block)
    # qkv of 3 * 16 values per token: one row of windows (4 x 12 tokens) per band
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", 3 * 16 * 4 * 12)
    attention_windows, mlp_tokens = [], []
    chunked.attn.register_forward_hook(lambda m, args, out: attention_windows.append(len(out)))
    chunked.mlp.register_forward_hook(lambda m, args, out: mlp_tokens.append(out[..., 0].numel()))
    with torch.no_grad():
        chunked(torch.randn(1, 18, 12, 8))
    assert attention_windows == [3] * 5  # 5 bands (the last padded) of 3 windows each
    assert mlp_tokens == [2 * 6] * 4 + [1 * 6]  # each band's pooled tokens, 9 x 6 in all


def test_global_block_runs_the_mlp_a_chunk_of_tokens_at_a_time(monkeypatch):
    _, chunked = _plain_and_chunked(MultiScaleBlock(8, 8, 2, window_size=0))
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", 32 * 10)  # 10 tokens of 32 hidden values
    mlp_tokens = []
    chunked.mlp.register_forward_hook(lambda m, args, out: mlp_tokens.append(out[..., 0].numel()))
    with torch.no_grad():
        chunked(torch.randn(1, 6, 7, 8))
    assert mlp_tokens == [10] * 4 + [2]


def test_training_takes_the_plain_path_and_its_gradients():
    block = MultiScaleBlock(8, 16, 2, q_stride=(2, 2), window_size=4)
    plain, chunked = _plain_and_chunked(block)
    x = torch.randn(1, 8, 8, 8)
    out = chunked(x)
    out.square().sum().backward()
    plain(x).square().sum().backward()
    torch.testing.assert_close(out, plain(x))
    torch.testing.assert_close(chunked.attn.qkv.weight.grad, plain.attn.qkv.weight.grad)


def test_optimize_swaps_sam2s_hiera_and_keeps_its_weights():
    model = build_sam2("sam2_test")
    before = {name: tensor.data_ptr() for name, tensor in model.state_dict().items()}
    assert not is_optimized(model)
    optimize(model)
    assert is_optimized(model) and type(model.image_encoder.trunk) is ChunkedHiera
    assert {name: t.data_ptr() for name, t in model.state_dict().items()} == before


def test_chunked_trunk_in_bf16_stays_close_to_plain(monkeypatch):
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", ONE_WINDOW_ROW)
    plain, chunked = (m.to(torch.bfloat16) for m in _plain_and_chunked(_trunk()))
    pixels = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        levels = zip(chunked(pixels.bfloat16()), plain(pixels.bfloat16()))
    for out, expected in levels:
        assert out.dtype == torch.bfloat16
        # bf16 keeps about 3 digits, and rounds each chunk's products in its own order
        error = (out.float() - expected.float()).norm() / expected.float().norm()
        assert error < 0.02


def test_chunked_int8_encoder_is_as_close_to_fp32_as_plain_int8(monkeypatch):
    # dynamic quantization scales each input by its range, so a chunk's scale differs from the
    # whole grid's: not equal to the plain int8 encoder, but no further from the float32 one
    monkeypatch.setattr("sam.fast.hiera.CHUNK_VALUES", ONE_WINDOW_ROW)
    exact = randomize_weights(build_sam2("sam2_test"), seed=0).eval()
    plain, chunked = quantize_encoder(copy.deepcopy(exact)), copy.deepcopy(exact)
    quantize_encoder(optimize(chunked))
    pixels = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        levels = zip(*(m.image_encoder(pixels) for m in (exact, plain, chunked)))
    for level, (expected, plain_int8, chunked_int8) in enumerate(levels):
        assert chunked_int8.dtype == torch.float32
        assert not torch.equal(chunked_int8, plain_int8)  # quantized per chunk
        error = (chunked_int8 - expected).norm() / expected.norm()
        plain_error = (plain_int8 - expected).norm() / expected.norm()
        assert 0 < error < 1.1 * plain_error, level


def test_position_embedding_equals_the_plain_tiled_one():
    trunk = randomize_weights(_trunk(), seed=5)
    with torch.no_grad():
        expected = trunk._get_pos_embed((32, 40))
        out = position_embedding(trunk.pos_embed, trunk.pos_embed_window, (32, 40))
    assert out.shape == (1, 32, 40, 16)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


def test_linear_goes_through_onednn_where_it_serves(monkeypatch):
    torch.manual_seed(0)
    layer = torch.nn.Linear(12, 20)
    x = torch.randn(2, 3, 5, 12)
    calls = []
    monkeypatch.setattr("sam.fast.hiera._onednn_linear", lambda *a: calls.append(1) or _fused(*a))
    with torch.no_grad():
        out = linear(x, layer)
        torch.testing.assert_close(out, layer(x), atol=1e-5, rtol=1e-5)
    assert out.shape == (2, 3, 5, 20) and bool(calls) == onednn_serves(torch.float32)
    calls.clear()
    linear(x, layer).sum().backward()  # gradients: the layer's own autograd path
    assert not calls and layer.weight.grad is not None
    int8 = torch.ao.nn.quantized.dynamic.Linear(12, 20)  # keeps its own forward
    with torch.no_grad():
        assert linear(x, int8).shape == (2, 3, 5, 20) and not calls


def _fused(x, layer, attr, algorithm):
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, attr, [], algorithm)
