"""Drawing for the page: every object's mask in its own colour (translucent fill, outline, through
:mod:`sam.io.overlay`), the prompts of the object being refined (green foreground dots, red
background dots, the box), segment everything's masks, the candidates' captions and the list of
objects."""

from __future__ import annotations

import html

import numpy as np
from PIL import Image, ImageDraw

from prompts.clicks import FOREGROUND, PromptState
from sam.io.overlay import overlay_masks

FOREGROUND_COLOUR = (40, 200, 60)
BACKGROUND_COLOUR = (230, 40, 40)
BOX_COLOUR = (255, 200, 0)
OUTLINE = (255, 255, 255)
OBJECT_ALPHA = 0.3  # the other objects: the image stays readable under them
ACTIVE_ALPHA = 0.5  # the object being refined
EVERYTHING_ALPHA = 0.35

Coloured = tuple[np.ndarray, tuple[int, int, int]]  # an (H, W) bool mask and its colour


def iou_caption(score: float, clip_score: float | None = None) -> str:
    """'IoU 0.93', or 'IoU 0.93 · CLIP 0.71' for a text prompt's candidate."""
    if clip_score is None:
        return f"IoU {score:.2f}"
    return f"IoU {score:.2f} · CLIP {clip_score:.2f}"


def candidate_choices(
    scores: list[float], clip_scores: list[float] | None = None
) -> list[tuple[str, int]]:
    """The candidate toggle's choices: ('1 · IoU 0.93', 0), ... best first."""
    clips = clip_scores if clip_scores is not None else [None] * len(scores)
    return [
        (f"{rank + 1} · {iou_caption(score, clip)}", rank)
        for rank, (score, clip) in enumerate(zip(scores, clips, strict=True))
    ]


def draw_canvas(
    image: np.ndarray,
    others: list[Coloured],
    active: Coloured | None,
    prompts: PromptState | None,
) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` with the other objects lightly tinted, the active object's
    mask stronger, every mask outlined, and the prompts on top; a new array."""
    shown = image[:, :, :3]
    if others:
        masks, colours = zip(*others)
        shown = overlay_masks(shown, list(masks), list(colours), OBJECT_ALPHA, OUTLINE)
    if active is not None:
        shown = overlay_masks(shown, [active[0]], [active[1]], ACTIVE_ALPHA, OUTLINE)
    return shown if prompts is None else draw_prompts(shown, prompts)


def colour_masks(image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Every mask of segment everything in its own colour, given largest first: each pixel is
    tinted once, by the smallest mask over it, so that the image shows through however many
    masks overlap there."""
    owner = np.full(image.shape[:2], -1)
    for index, mask in enumerate(masks):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]}")
        owner[mask] = index
    own = [owner == index for index in range(len(masks))]
    return overlay_masks(image, own, alpha=EVERYTHING_ALPHA)


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


def object_rows(rows: list[tuple[str, str, int, float, bool]]) -> str:
    """HTML list of objects: (colour '#rrggbb', label, area, predicted IoU, is active) each,
    with a swatch of its colour."""
    if not rows:
        return '<p class="objects-empty">No objects yet: click on one in the image.</p>'
    items = []
    for colour, label, area, score, active in rows:
        mark = " (refining)" if active else ""
        items.append(
            f'<li class="{"active" if active else ""}"><span class="swatch" '
            f'style="background:{colour}"></span>{html.escape(label)} · {area:,} px · '
            f"IoU {score:.2f}{mark}</li>"
        )
    return f'<ul class="objects">{"".join(items)}</ul>'
