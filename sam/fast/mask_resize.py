"""Low-res mask logits to the image's size, as the reference resizes them, without its
frame-sized intermediate.

The reference upscales the decoder's (4h, 4w) logits bilinearly to the encoder's frame (1024 by
1024 for Meta's models), crops the padding and resizes bilinearly again to the image: for an
image smaller than the frame most of the work is the frame-sized intermediate. Per axis those
steps are linear maps, so their composition is one too, an (image side, low-res side) matrix
with at most three non-zeros per row. :func:`resize_logits_composed` applies it to the rows as a
sparse product, and takes the columns, which lie along memory, through the two resizes in 1-D,
so that no intermediate is larger than (image rows, frame width). Three 512 by 512 masks from
vit_b's 256 by 256 logits, 2 CPU cores: 4.7 -> 2.1 ms; 192 of them: 509 -> 382 ms. For images
near or above the frame's size the reference's order stays (:func:`composed_is_faster`).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


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
    rows, frame width) per mask, the reference order's the cropped frame; measured faster below
    that ratio for 1 to 192 masks, mixed above it (13% faster to 70% slower), slower for images
    larger than the frame (2 cores, 2026-11-28). Off the CPU it was not measured."""
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
    be cut to the rows and columns that the crop keeps (``Sam.valid_low_res``)."""
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
