"""Drawing prompts and candidates over an image: green foreground dots, red background dots,
the box outline, and the masks (through :mod:`sam.io.overlay`) captioned with their predicted
IoU."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from prompts.clicks import FOREGROUND, PromptState
from sam.io.overlay import overlay_mask, overlay_masks

FOREGROUND_COLOUR = (40, 200, 60)
BACKGROUND_COLOUR = (230, 40, 40)
BOX_COLOUR = (255, 200, 0)


def iou_caption(score: float, clip_score: float | None = None) -> str:
    """'IoU 0.93', or 'IoU 0.93 · CLIP 0.71' for a text prompt's candidate."""
    if clip_score is None:
        return f"IoU {score:.2f}"
    return f"IoU {score:.2f} · CLIP {clip_score:.2f}"


def colour_masks(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.6) -> np.ndarray:
    """Every mask of segment everything in its own colour (largest first, so that smaller ones
    stay visible on top)."""
    return overlay_masks(image, masks, alpha=alpha)


def _marker_radius(size: tuple[int, int]) -> int:
    return max(3, round(min(size) / 80))


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
