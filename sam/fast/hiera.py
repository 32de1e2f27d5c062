"""SAM 2's Hiera trunk with a smaller peak: its blocks a band of windows at a time.

The plain block holds several full-grid temporaries at once: at the first stage of a 1024-pixel
image (256 x 256 tokens) the qkv of the stage's pooling block is 65536 x 576 values, the MLP's
hidden layer four times the block's width, and window partition and unpartition copy the grid.
Windows are independent, so on the CPU the norm, qkv, attention, projection, shortcut and MLP
run over a band of window rows at a time, written into the block's output: besides the block's
input and output, only one band's temporaries exist at a time. Blocks attending globally run
their MLP over chunks of tokens.

The linear layers go through oneDNN's linear, which adds the bias inside the matrix product
(``addmm`` writes it in a pass of its own first).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam.fast.mlp import _onednn_linear, needs_grad, onednn_serves
from sam.modeling.image_encoder import window_partition, window_unpartition
from sam.modeling.sam2.hiera import Hiera, MultiScaleAttention, MultiScaleBlock, do_pool

# About the values in a band's largest temporary (its qkv, or its MLP's hidden layer). Each band
# costs a round of parallel ops, which a CPU shared with other processes makes slow to gather:
# large enough to keep them few, small enough to be a sliver of the peak.
CHUNK_VALUES = 2**21


class ChunkedHiera(Hiera):
    """:class:`Hiera` with the same parameters, adding the position embedding in place."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if needs_grad(x, *self.parameters()):
            return super().forward(x)
        x = self.patch_embed(x)  # (B, S/4, S/4, C), a fresh tensor
        x += position_embedding(self.pos_embed, self.pos_embed_window, x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


def position_embedding(
    background: torch.Tensor, window: torch.Tensor, hw: tuple[int, int]
) -> torch.Tensor:
    """``Hiera._get_pos_embed`` without its tiled copy: the (1, C, h, w) background interpolated
    to the (H, W) grid plus the (1, C, wh, ww) window embedding repeated over it, which must
    divide the grid: (1, H, W, C)."""
    pos_embed = F.interpolate(background, size=hw, mode="bicubic")
    _, channels, height, width = pos_embed.shape
    _, _, window_h, window_w = window.shape
    tiles = pos_embed.view(1, channels, height // window_h, window_h, width // window_w, window_w)
    tiles += window.view(1, channels, 1, window_h, 1, window_w)
    return pos_embed.permute(0, 2, 3, 1)


class ChunkedMultiScaleBlock(MultiScaleBlock):
    """:class:`MultiScaleBlock` with the same parameters, on the CPU a band of window rows (or,
    attending globally, a chunk of the MLP's tokens) at a time. Other devices, and anything
    needing gradients, take the plain path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or needs_grad(x, *self.parameters()):
            return super().forward(x)
        if self.window_size > 0:
            return self._windowed_forward(x)
        x_norm = self.norm1(x)
        out = self.attn(x_norm)  # (B, H', W', dim_out), a fresh tensor
        out += self._shortcut(x, x_norm)
        tokens = out.view(-1, self.dim_out)
        chunk = max(1, CHUNK_VALUES // self.mlp.lin1.out_features)
        for start in range(0, tokens.shape[0], chunk):
            self._add_mlp(tokens[start : start + chunk])
        return out

    def _shortcut(self, x: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
        """The residual of a (B, h, W, dim) band: ``x`` itself, or ``x_norm`` projected to
        ``dim_out`` and pooled when the block widens."""
        if self.dim != self.dim_out:
            return do_pool(linear(x_norm, self.proj), self.q_stride)
        return x

    def _add_mlp(self, x: torch.Tensor) -> None:
        """``x += mlp(norm2(x))``, in place."""
        x += self.mlp(self.norm2(x))

    def _windowed_forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out), a band of whole window rows at a time: its
        windows' attention plus its shortcut written into the output, then the MLP on it."""
        batch, height, width, _ = x.shape
        window = self.window_size
        stride_h, stride_w = self.q_stride or (1, 1)
        out = x.new_empty(batch, height // stride_h, width // stride_w, self.dim_out)
        # the band's largest temporary: its qkv, or its (pooled) tokens' MLP hidden layer;
        # whole rows of windows, the nearest number to the budget
        hidden = self.mlp.lin1.out_features / (stride_h * stride_w)
        values_per_token = batch * max(3 * self.dim_out, hidden)
        padded_w = width + (-width) % window
        window_rows = max(1, round(CHUNK_VALUES / (values_per_token * window * padded_w)))
        rows = window_rows * window
        for top in range(0, height, rows):
            # a call per band, so that its temporaries are freed before the next band's
            self._band_forward(x[:, top : top + rows], out[:, top // stride_h :])
        return out

    def _band_forward(self, band: torch.Tensor, out: torch.Tensor) -> None:
        """Write a (B, h, W, dim) band of whole window rows into the rows of ``out`` it
        yields (the first h / stride of ``out``): attention plus shortcut, then the MLP."""
        band_norm = self.norm1(band)
        shortcut = self._shortcut(band, band_norm)
        out = out[:, : shortcut.shape[1]]
        windows, _ = window_partition(band_norm, self.window_size)
        # pooled queries shrink each window, and the grid with it
        attended = self.attn(windows)  # (B * windows, ws / stride, ws / stride, dim_out)
        add_windows(shortcut, attended, out=out)
        self._add_mlp(out)


class FusedMultiScaleAttention(MultiScaleAttention):
    """:class:`MultiScaleAttention` with the same parameters, its linear layers through
    :func:`linear`. Anything needing gradients takes the plain path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if needs_grad(x, *self.parameters()):
            return super().forward(x)
        batch, height, width, _ = x.shape
        qkv = linear(x, self.qkv).view(batch, height * width, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)  # each (B, H * W, heads, C / heads)
        if self.q_stride:
            q = do_pool(q.reshape(batch, height, width, -1), self.q_stride)
            height, width = q.shape[1:3]
            q = q.view(batch, height * width, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return linear(x.transpose(1, 2).reshape(batch, height, width, -1), self.proj)


def linear(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """``layer(x)`` for (..., in) ``x``: through oneDNN's linear, bias included, where it serves
    the dtype on the CPU; otherwise (a quantized layer, another device, gradients) ``layer``."""
    if (
        type(layer) is nn.Linear
        and x.device.type == "cpu"
        and not needs_grad(x, *layer.parameters())
        and onednn_serves(x.dtype)
    ):
        out = _onednn_linear(x.reshape(-1, x.shape[-1]), layer, "none", "")
        return out.view(*x.shape[:-1], -1)
    return layer(x)


def add_windows(shortcut: torch.Tensor, windows: torch.Tensor, out: torch.Tensor) -> None:
    """``out = shortcut + windows`` laid back on the grid: ``shortcut`` and ``out`` (B, h, w, C),
    ``windows`` (B * windows, ws, ws, C) tiling the grid padded to whole windows, in
    :func:`window_partition`'s order. Without padding, the windows are read in place."""
    batch, height, width, channels = out.shape
    window = windows.shape[1]
    if height % window or width % window:
        padded_hw = (height + (-height) % window, width + (-width) % window)
        windows = window_unpartition(windows, window, padded_hw, (height, width))
        torch.add(shortcut, windows, out=out)
        return
    rows, cols = height // window, width // window
    grid = (batch, rows, window, cols, window, channels)
    on_grid = windows.view(batch, rows, cols, window, window, channels).transpose(2, 3)
    torch.add(shortcut.view(grid), on_grid, out=out.view(grid))
