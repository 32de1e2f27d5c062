"""Masks drawn over an image: ONE colour overlay for the page, the command line and the docs.

Masks are tinted with a translucent colour and may be edged, so that a mask shows even on an
object of its own colour.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

MASK_COLOUR = (30, 144, 255)
MASK_ALPHA = 0.5
OUTLINE_COLOUR = (255, 255, 255)


def distinct_colours(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) uint8 bright colours, reproducible (golden-ratio hues)."""
    hues = (seed * 0.13 + np.arange(count) * 0.618034) % 1.0
    hsv = np.stack([hues * 255, np.full(count, 200), np.full(count, 240)], axis=1)
    pixels = Image.fromarray(hsv.astype(np.uint8)[None], mode="HSV").convert("RGB")
    return np.asarray(pixels)[0]


def outline_width(size: tuple[int, int]) -> int:
    """An edge about 1/200 of the image's short side wide, at least one pixel."""
    return max(1, round(min(size) / 200))


def mask_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """(H, W) bool: the outermost ``width`` pixels of ``mask``, all around it (where the mask
    meets the image's border, that border is its edge)."""
    interior = ndimage.minimum_filter(mask, size=2 * width + 1, mode="constant", cval=0)
    return mask & ~interior


def overlay_masks(
    image: np.ndarray,
    masks: list[np.ndarray],
    colours: np.ndarray | list[tuple[int, int, int]] | None = None,
    alpha: float = MASK_ALPHA,
    outline: tuple[int, int, int] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` with each (H, W) bool mask tinted its colour (by default
    :func:`distinct_colours`) in the order given, so that later, smaller masks stay visible on
    top of larger ones given first, each edged in ``outline`` (none if None); a new array."""
    colours = distinct_colours(len(masks)) if colours is None else colours
    out = image[:, :, :3].astype(np.float32)
    for mask, colour in zip(masks, colours, strict=True):
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]}")
        out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
        if outline is not None:
            out[mask_outline(mask, outline_width(mask.shape))] = outline
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = MASK_COLOUR,
    alpha: float = MASK_ALPHA,
    outline: tuple[int, int, int] | None = OUTLINE_COLOUR,
) -> np.ndarray:
    """One mask (H, W) tinted in ``colour`` and edged in ``outline``: (H, W, 3) uint8."""
    return overlay_masks(image, [mask], [colour], alpha, outline)
