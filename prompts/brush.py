"""Brush strokes -> model prompts: an image-editor layer becomes a binary mask, then a low-res
``mask_input`` in the model's padded frame and/or a box around the stroke."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Logit magnitude given to painted (+) and unpainted (-) low-res cells.
BRUSH_LOGIT = 10.0
LOW_RES_SIDE = 256


def layer_mask(layer: np.ndarray) -> np.ndarray:
    """(H, W, 4) RGBA layer -> (H, W) bool: painted where alpha > 0. (H, W, 3) RGB or (H, W)
    layers count any non-black pixel as painted."""
    layer = np.asarray(layer)
    if layer.ndim == 2:
        return layer > 0
    if layer.ndim != 3 or layer.shape[2] not in (3, 4):
        raise ValueError(f"brush layer must be (H, W), (H, W, 3) or (H, W, 4), got {layer.shape}")
    if layer.shape[2] == 4:
        return layer[:, :, 3] > 0
    return layer.any(axis=2)


def editor_mask(layers: list[np.ndarray], image_size: tuple[int, int]) -> np.ndarray | None:
    """The union of an image editor's layers as an (H, W) bool mask, or None if nothing is
    painted. Layers of another size than ``image_size`` (H, W) are refused."""
    mask = np.zeros(image_size, dtype=bool)
    for layer in layers:
        painted = layer_mask(layer)
        if painted.shape != tuple(image_size):
            raise ValueError(
                f"brush layer is {painted.shape[1]}x{painted.shape[0]} but the image is "
                f"{image_size[1]}x{image_size[0]}"
            )
        mask |= painted
    return mask if mask.any() else None


def mask_to_mask_input(
    mask: np.ndarray, side: int = LOW_RES_SIDE, logit: float = BRUSH_LOGIT
) -> np.ndarray:
    """(H, W) bool -> (1, side, side) float32 logits in the model's padded frame.

    As the model sees images: the long side is resized to ``side`` (ResizeLongestSide), the rest
    is padded at the bottom/right. Each cell gets ``logit * (2 * coverage - 1)``, so fully
    painted cells are +logit, untouched and padded ones -logit.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty (H, W) array, got shape {mask.shape}")
    height, width = mask.shape
    scale = side / max(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    coverage = Image.fromarray(mask.astype(np.float32)).resize((new_w, new_h), Image.BILINEAR)
    logits = np.full((1, side, side), -logit, dtype=np.float32)
    logits[0, :new_h, :new_w] = logit * (2.0 * np.clip(np.asarray(coverage), 0.0, 1.0) - 1.0)
    return logits
