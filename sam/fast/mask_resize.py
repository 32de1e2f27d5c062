"""Low-res mask logits to the image's size, as the reference resizes them, without its
frame-sized intermediate.

The reference upscales the decoder's (4h, 4w) logits bilinearly to the encoder's frame (1024 by
1024 for Meta's models), crops the padding and resizes bilinearly again to the image: for an
image smaller than the frame most of the work is the frame-sized intermediate. Per axis those
steps are linear maps, so their composition is one too, an (image side, low-res side) matrix
with at most three non-zeros per row. :func:`resize_logits_composed` applies it to the rows as a
sparse product, and takes the columns, which lie along memory, through the two resizes in 1-D,
so that no intermediate is larger than (image rows, frame width). For images near or above the
frame's size the reference's order stays (:func:`composed_is_faster`). Either way only the
low-res rows and columns that cover the image are upscaled (:func:`valid_low_res`), not the
padding that the crop then drops.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from sam.modeling.sam import Sam


@lru_cache(maxsize=64)
def axis_operator(low_res: int, factor: float, valid: int, target: int) -> torch.Tensor:
    """The reference's resizes along one axis as a sparse (target, low_res) matrix: upscale
    ``low_res`` samples by ``factor``, keep the first ``valid``, resize those to ``target``."""
    identity = torch.eye(low_res).unsqueeze(0)  # (1, low_res, low_res): one channel per input
    upscaled = F.interpolate(identity, scale_factor=factor, mode="linear", align_corners=False)
    resized = F.interpolate(
        upscaled[..., :valid], target, mode="linear", align_corners=False
    )  # (1, low_res, target)
    return resized[0].T.to_sparse()


def composed_is_faster(
    masks: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> bool:
    """Whether :func:`resize_logits_composed` should serve: on CPU, for float logits, when the
    cropped frame has at least twice the image's pixels. Its largest intermediate is (image
    rows, frame width) per mask, the reference order's the cropped frame; the threshold is where
    it measured faster (docs/benchmarks.md). Off the CPU the reference's order stays."""
    if masks.device.type != "cpu" or masks.dtype not in (torch.float32, torch.float64):
        return False
    return 2 * original_size[0] * original_size[1] <= input_size[0] * input_size[1]


def resize_logits_composed(
    masks: torch.Tensor, factor: float, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Logits (B, C, l, l') -> (B, C, *original_size), the reference's upscaling by ``factor``
    (frame / low-res side), crop to ``input_size`` and resize: rows through the composed map
    (:func:`axis_operator`), then columns, which lie along memory, through the two linear
    resizes themselves (each row is upscaled to the frame's width only). ``masks`` may already
    be cut to the rows and columns that the crop keeps (:func:`valid_low_res`)."""
    batch, channels, low_rows, low_cols = masks.shape
    (rows, cols), count = original_size, batch * channels
    row_map = axis_operator(low_rows, factor, input_size[0], rows).to(masks.dtype)
    by_row = masks.reshape(count, low_rows, low_cols).transpose(0, 1).reshape(low_rows, -1)
    resized_rows = torch.sparse.mm(row_map, by_row)  # (rows, count * low_cols)
    resized_rows = resized_rows.view(rows, count, low_cols).transpose(0, 1)
    upscaled = F.interpolate(
        resized_rows.reshape(count * rows, 1, low_cols),
        scale_factor=factor,
        mode="linear",
        align_corners=False,
    )[..., : input_size[1]]
    resized = F.interpolate(upscaled, cols, mode="linear", align_corners=False)
    return resized.view(batch, channels, rows, cols)


class ResizingSam(Sam):
    """:class:`Sam` whose :meth:`postprocess_masks` upscales only the image's part of the
    logits, in one composed step where that is faster; equal to the reference's result."""

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        side = self.image_encoder.img_size
        factor = side / masks.shape[-1]
        input_size = (int(input_size[0]), int(input_size[1]))
        original_size = (int(original_size[0]), int(original_size[1]))
        valid = valid_low_res(masks, input_size, side)
        if composed_is_faster(masks, input_size, original_size):
            return resize_logits_composed(valid, factor, input_size, original_size)
        masks = F.interpolate(valid, scale_factor=factor, mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


def valid_low_res(masks: torch.Tensor, input_size: tuple[int, ...], side: int) -> torch.Tensor:
    """Low-res logits (..., 4H, 4W) of a ``side``-pixel frame -> the rows and columns that cover
    the resized image (``input_size``) rather than its padding, plus the one row and column that
    bilinear upscaling still reads at the image's edge (a view)."""
    scale = masks.shape[-1] / side
    rows = min(math.ceil(input_size[0] * scale) + 1, masks.shape[-2])
    cols = min(math.ceil(input_size[1] * scale) + 1, masks.shape[-1])
    return masks[..., :rows, :cols]
