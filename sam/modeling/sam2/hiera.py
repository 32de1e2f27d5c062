"""Hiera (Ryali et al., 2023), the hierarchical ViT trunk of SAM 2's image encoder.

Four stages of blocks on a channels-last grid; the first block of each later stage doubles the
width and halves the grid by max-pooling its queries (and its shortcut), so the trunk returns
features at strides 4, 8, 16 and 32. Blocks attend within windows, except the few listed as
global. Parameter names are Meta's (``image_encoder.trunk.*``) except the MLPs, which are
:class:`~sam.modeling.common.MLPBlock` (``mlp.lin1``/``mlp.lin2`` for Meta's
``mlp.layers.0``/``mlp.layers.1``; :mod:`sam.weights.sam2_keys` renames them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common import MLPBlock
from ..image_encoder import PatchEmbed, window_partition, window_unpartition


class Hiera(nn.Module):
    """(B, 3, S, S) normalised image -> one (B, C_i, S / 2^(i+2), S / 2^(i+2)) map per stage,
    high resolution first."""

    def __init__(
        self,
        embed_dim: int = 96,
        num_heads: int = 1,
        stages: tuple[int, ...] = (1, 2, 7, 2),
        global_att_blocks: tuple[int, ...] = (5, 7, 9),
        window_spec: tuple[int, ...] = (8, 4, 14, 7),
        window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7),
        q_pool: int = 3,
        q_stride: tuple[int, int] = (2, 2),
    ) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError("stages and window_spec need one entry per stage")
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]
        self.patch_embed = PatchEmbed(patch_size=4, embed_dim=embed_dim, kernel_size=7, padding=3)
        # A background position embedding interpolated to the grid, plus one tiled per window
        # (Bolya et al., 2023, "Window attention is bugged").
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )
        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(stages)):
            dim_out = embed_dim
            # the first block of a stage still uses the previous stage's window
            window_size = 0 if i in global_att_blocks else window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out, num_heads, stage = 2 * embed_dim, 2 * num_heads, stage + 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=embed_dim,
                    dim_out=dim_out,
                    num_heads=num_heads,
                    q_stride=q_stride if i in q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            embed_dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Position embedding of an (H, W) grid: (1, H, W, C)."""
        pos_embed = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        pos_embed = pos_embed + window.tile([x // y for x, y in zip(pos_embed.shape, window.shape)])
        return pos_embed.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)  # (B, S/4, S/4, C)
        x = x + self._get_pos_embed(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class MultiScaleBlock(nn.Module):
    """Pre-norm attention and MLP on a (B, H, W, C) grid. With ``q_stride`` the block pools its
    queries and its shortcut, and widens from ``dim`` to ``dim_out``: (B, H/2, W/2, dim_out)."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size, self.q_stride = window_size, q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads=num_heads, q_stride=q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLPBlock(dim_out, int(dim_out * mlp_ratio), act=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = do_pool(self.proj(x), self.q_stride)
        window_size = self.window_size
        if window_size > 0:
            height, width = x.shape[1], x.shape[2]
            x, padded_hw = window_partition(x, window_size)
        x = self.attn(x)
        if self.q_stride:
            # pooled queries shrank each window, and the grid with them
            window_size = self.window_size // self.q_stride[0]
            height, width = shortcut.shape[1:3]
            padded_hw = (height + (-height) % window_size, width + (-width) % window_size)
        if self.window_size > 0:
            x = window_unpartition(x, window_size, padded_hw, (height, width))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class MultiScaleAttention(nn.Module):
    """Multi-head attention on a (B, H, W, dim) grid, queries optionally max-pooled:
    -> (B, H', W', dim_out)."""

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.num_heads, self.q_stride = num_heads, q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        qkv = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)  # each (B, H * W, heads, C / heads)
        if self.q_stride:
            q = do_pool(q.reshape(batch, height, width, -1), self.q_stride)
            height, width = q.shape[1:3]
            q = q.reshape(batch, height * width, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.proj(x.transpose(1, 2).reshape(batch, height, width, -1))


def do_pool(x: torch.Tensor, stride: tuple[int, int] | None) -> torch.Tensor:
    """Max-pool a (B, H, W, C) grid by ``stride`` (no-op without one)."""
    if stride is None:
        return x
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)
