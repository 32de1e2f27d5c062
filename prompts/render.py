"""Drawing prompts and masks over an image: green foreground dots, red background dots, the box
outline, and coloured mask overlays, edged in white so that a mask shows on an object of its own
colour, captioned with their predicted IoU."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from prompts.clicks import FOREGROUND, PromptState

FOREGROUND_COLOUR = (40, 200, 60)
BACKGROUND_COLOUR = (230, 40, 40)
BOX_COLOUR = (255, 200, 0)
MASK_COLOUR = (30, 144, 255)
MASK_ALPHA = 0.5
OUTLINE_COLOUR = (255, 255, 255)


def iou_caption(score: float, clip_score: float | None = None) -> str:
    """'IoU 0.93', or 'IoU 0.93 · CLIP 0.71' for a text prompt's candidate."""
    if clip_score is None:
        return f"IoU {score:.2f}"
    return f"IoU {score:.2f} · CLIP {clip_score:.2f}"


def distinct_colours(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) uint8 bright colours, reproducible (golden-ratio hues)."""
    hues = (seed * 0.13 + np.arange(count) * 0.618034) % 1.0
    hsv = np.stack([hues * 255, np.full(count, 200), np.full(count, 240)], axis=1)
    pixels = Image.fromarray(hsv.astype(np.uint8)[None], mode="HSV").convert("RGB")
    return np.asarray(pixels)[0]


def colour_masks(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8 with each (H, W) bool mask tinted its own colour, in order (so later,
    smaller masks stay visible on top of larger ones when given largest first)."""
    out = image[:, :, :3].astype(np.float32)
    for mask, colour in zip(masks, distinct_colours(len(masks)), strict=True):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]}")
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _marker_radius(size: tuple[int, int]) -> int:
    return max(3, round(min(size) / 80))


def _outline_width(size: tuple[int, int]) -> int:
    return max(1, round(min(size) / 200))


def mask_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: the outermost ``width`` pixels of ``mask``, all around it (where the mask
    meets the image's border, that border is its edge)."""
    interior = ndimage.minimum_filter(mask, size=2 * width + 1, mode="constant", cval=0)
    return mask & ~interior


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = MASK_COLOUR,
    alpha: float = MASK_ALPHA,
    outline: tuple[int, int, int] | None = OUTLINE_COLOUR,
) -> np.ndarray:
    """(H, W, 3) uint8 with ``mask`` (H, W) tinted in ``colour`` and its edge drawn in
    ``outline`` (none if None), about 1/200 of the image's short side wide; a new array."""
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]}")
    out = image.astype(np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
    if outline is not None:
        out[mask_outline(mask, _outline_width(mask.shape))] = outline
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def draw_prompts(image: np.ndarray, prompts: PromptState) -> np.ndarray:
    """(H, W, 3) uint8 with the prompts drawn on it; a new array."""
    canvas = Image.fromarray(np.ascontiguousarray(image[:, :, :3]))
    draw = ImageDraw.Draw(canvas)
    radius = _marker_radius(prompts.image_size)
    if prompts.box is not None:
        draw.rectangle(prompts.box, outline=BOX_COLOUR, width=max(2, radius // 2))
    if prompts.pending_corner is not None:
        x, y = prompts.pending_corner
        draw.line((x - 2 * radius, y, x + 2 * radius, y), fill=BOX_COLOUR, width=2)
        draw.line((x, y - 2 * radius, x, y + 2 * radius), fill=BOX_COLOUR, width=2)
    for point in prompts.points:
        colour = FOREGROUND_COLOUR if point.label == FOREGROUND else BACKGROUND_COLOUR
        bounds = (point.x - radius, point.y - radius, point.x + radius, point.y + radius)
        draw.ellipse(bounds, fill=colour, outline=(255, 255, 255), width=1)
    return np.asarray(canvas)


def candidate_views(
    image: np.ndarray,
    masks: list[np.ndarray],
    scores: list[float],
    prompts: PromptState,
    max_side: int | None = None,
    clip_scores: list[float] | None = None,
) -> list[tuple[np.ndarray, str]]:
    """One (picture, 'IoU 0.93') pair per candidate mask, in the order given (captions add
    'CLIP 0.71' when ``clip_scores`` are given); pictures are shrunk to ``max_side`` pixels on
    their long side if larger (thumbnails)."""
    clip_scores = clip_scores if clip_scores is not None else [None] * len(masks)
    return [
        (
            shrink(draw_prompts(overlay_mask(image, mask), prompts), max_side),
            iou_caption(score, clip_score),
        )
        for mask, score, clip_score in zip(masks, scores, clip_scores, strict=True)
    ]


def shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` resized so its long side is at most ``max_side`` (unchanged if None)."""
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
