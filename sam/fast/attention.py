"""The encoder's attention a chunk of queries at a time, equal to the reference's.

The reference forms the whole (heads, H*W, H*W) score matrix plus a bias of the same size: for
vit_b's global blocks (64 x 64 tokens) that is 200 MB per image in fp32. Here the decomposed
relative-position bias is built for ``QUERY_CHUNK`` query rows at a time and, on the CPU, enters
the scores' matrix product as its input (``baddbmm``), with the scores and probabilities in two
buffers reused by every chunk.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sam.fast.mlp import needs_grad
from sam.modeling.image_encoder import Attention, get_rel_pos

# Query rows per chunk (see docs/benchmarks.md for the measurement that chose it).
QUERY_CHUNK = 128


class ChunkedAttention(Attention):
    """:class:`Attention` with the same parameters, computed by :func:`rel_pos_attention`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        tokens = height * width
        # (3, B, heads, tokens, head_dim)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.use_rel_pos:
            out = rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, (height, width))
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, height, width, -1)
        return self.proj(out)


def rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
    fused: bool | None = None,
) -> torch.Tensor:
    """Self-attention over an (H, W) grid with MViTv2's decomposed relative-position bias.

    q, k, v: (B, heads, H*W, head_dim) -> (B, heads, H*W, head_dim).

    The bias between query (qh, qw) and key (kh, kw) is ``rel_h[q, kh] + rel_w[q, kw]``, built
    for ``QUERY_CHUNK`` query rows at a time so the full (heads, H*W, H*W) bias never exists.
    ``fused`` (default: on CUDA) passes it as the mask of ``scaled_dot_product_attention``;
    otherwise it is the input of the scores' ``baddbmm``, which measured faster on CPU.
    """
    batch, heads, tokens, dim = q.shape
    height, width = size
    fused = q.is_cuda if fused is None else fused
    table_h = get_rel_pos(height, height, rel_pos_h).to(q.dtype)  # (H, H, head_dim)
    table_w = get_rel_pos(width, width, rel_pos_w).to(q.dtype)  # (W, W, head_dim)
    grid_q = q.reshape(batch, heads, height, width, dim)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, table_h).reshape(batch, heads, tokens, height)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, table_w).reshape(batch, heads, tokens, width)
    if fused:
        outs = []
        for start in range(0, tokens, QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            bias = rel_h[:, :, rows, :, None] + rel_w[:, :, rows, None, :]  # (B, heads, rows, H, W)
            bias = bias.view(batch, heads, -1, tokens)
            outs.append(F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=bias))
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)

    scaled_q = (q * dim**-0.5).flatten(0, 1)
    # laid out once as the chunks' matrix products read them (else each chunk copies them)
    key_t, v = k.transpose(-2, -1).contiguous().flatten(0, 1), v.contiguous().flatten(0, 1)
    # Scores and probabilities live in two buffers reused by every chunk: fresh tensors of this
    # size (12-25 MB for vit_b's global blocks) are page-faulted in anew each time.
    chunk = min(QUERY_CHUNK, tokens)
    # out= arguments have no autograd: training takes fresh tensors
    reuse = not needs_grad(q, k, v, rel_pos_h, rel_pos_w)
    if reuse:
        scores_buffer = q.new_empty(batch * heads * chunk * tokens)
        probs_buffer = torch.empty_like(scores_buffer)
    outs = []
    for start in range(0, tokens, chunk):
        rows = min(chunk, tokens - start)
        rel = slice(start, start + rows)
        bias_h, bias_w = rel_h[:, :, rel, :, None], rel_w[:, :, rel, None, :]
        # the bias enters the scores' matrix product (beta = 1) instead of two passes after it
        if reuse:
            size = batch * heads * rows * tokens
            scores = scores_buffer[:size].view(batch, heads, rows, height, width)
            torch.add(bias_h, bias_w, out=scores)
            scores = scores.view(batch * heads, rows, tokens).baddbmm_(scaled_q[:, rel], key_t)
            probs = torch.softmax(scores, dim=-1, out=probs_buffer[:size].view_as(scores))
        else:
            bias = (bias_h + bias_w).view(batch * heads, rows, tokens)
            probs = torch.baddbmm(bias, scaled_q[:, rel], key_t).softmax(dim=-1)
        outs.append(probs @ v)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out.view(batch, heads, tokens, dim)
