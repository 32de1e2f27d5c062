"""The chunked encoder attention (sam.fast.attention) against Meta's and the plain one."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import image_encoder as reference

from sam.fast import attention
from sam.fast.attention import ChunkedAttention, rel_pos_attention
from sam.modeling.image_encoder import Attention


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
    monkeypatch.setattr(attention, "QUERY_CHUNK", 100)  # several chunks, a ragged last one
    generator = torch.Generator().manual_seed(0)
    tokens = size[0] * size[1]
    q, k, v = (torch.randn(2, 3, tokens, 8, generator=generator) for _ in range(3))
    rel_pos_h = torch.randn(2 * size[0] - 1, 8, generator=generator)
    rel_pos_w = torch.randn(2 * size[1] - 1, 8, generator=generator)
    ours = rel_pos_attention(q, k, v, rel_pos_h, rel_pos_w, size, fused=fused)
    expected = _reference_attention(q, k, v, rel_pos_h, rel_pos_w, size)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


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


@pytest.mark.parametrize("use_rel_pos", [True, False])
def test_chunked_attention_module_equals_the_plain_one(use_rel_pos, monkeypatch):
    monkeypatch.setattr(attention, "QUERY_CHUNK", 7)
    torch.manual_seed(0)
    plain = Attention(24, num_heads=3, use_rel_pos=use_rel_pos, input_size=(6, 5))
    for parameter in plain.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    chunked = ChunkedAttention(24, num_heads=3, use_rel_pos=use_rel_pos, input_size=(6, 5))
    chunked.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 6, 5, 24)
    with torch.no_grad():
        torch.testing.assert_close(chunked(x), plain(x), atol=1e-5, rtol=1e-5)
