"""The encoder's pieces against Meta's reference functions."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import image_encoder as reference

from sam.modeling import image_encoder
from sam.modeling.image_encoder import rel_pos_attention, window_partition, window_unpartition


def _reference_attention(q, k, v, rel_pos_h, rel_pos_w, size):
    """Meta's unfused attention: (q * scale) @ k^T + decomposed bias, softmax, @ v."""
    batch, heads, tokens, dim = q.shape
    flat = lambda t: t.reshape(batch * heads, tokens, dim)  # noqa: E731
    attn = (flat(q) * dim**-0.5) @ flat(k).transpose(-2, -1)
    attn = reference.add_decomposed_rel_pos(attn, flat(q), rel_pos_h, rel_pos_w, size, size)
    return (attn.softmax(dim=-1) @ flat(v)).reshape(batch, heads, tokens, dim)


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("size", [(5, 5), (23, 23)])
def test_rel_pos_attention_matches_reference(fused, size, monkeypatch):
    monkeypatch.setattr(image_encoder, "QUERY_CHUNK", 100)  # several chunks, a ragged last one
    generator = torch.Generator().manual_seed(0)
    tokens = size[0] * size[1]
    q, k, v = (torch.randn(2, 3, tokens, 8, generator=generator) for _ in range(3))
    rel_pos_h = torch.randn(2 * size[0] - 1, 8, generator=generator)
    rel_pos_w = torch.randn(2 * size[1] - 1, 8, generator=generator)
    ours = rel_pos_attention(q, k, v, rel_pos_h, rel_pos_w, size, fused=fused)
    expected = _reference_attention(q, k, v, rel_pos_h, rel_pos_w, size)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_rel_pos_tables_are_interpolated_like_the_reference():
    table = torch.randn(9, 4)  # made for size 5, used for size 7
    torch.testing.assert_close(
        image_encoder.get_rel_pos(7, 7, table), reference.get_rel_pos(7, 7, table)
    )


@pytest.mark.parametrize("hw", [(14, 14), (13, 20), (64, 64)])
def test_window_partition_round_trip(hw):
    x = torch.randn(2, *hw, 6)
    windows, padded = window_partition(x, 14)
    ref_windows, ref_padded = reference.window_partition(x, 14)
    assert padded == ref_padded and torch.equal(windows, ref_windows)
    assert torch.equal(window_unpartition(windows, 14, padded, hw), x)


def test_rel_pos_attention_same_with_and_without_autograd():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 12 * 12, 8) for _ in range(3))  # 144 tokens: two chunks
    rel_h, rel_w = torch.randn(23, 8), torch.randn(23, 8)
    with torch.no_grad():  # reused buffers
        expected = rel_pos_attention(q, k, v, rel_h, rel_w, (12, 12))
    q.requires_grad_(True)
    out = rel_pos_attention(q, k, v, rel_h, rel_w, (12, 12))  # fresh tensors, differentiable
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    assert q.grad is not None and q.grad.abs().sum() > 0
