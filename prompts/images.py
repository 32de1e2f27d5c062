"""Opening what a person uploads: any Pillow-readable file -> (H, W, 3) uint8, refusing corrupt
files and decompression bombs with a clear message. 16-bit and float images are scaled to 8 bits
(not clipped), CMYK and palette images converted, EXIF rotation applied, and an animation's first
frame used."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before they are decoded (Pillow's own guard against bombs).
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Thinner images would shrink to nothing across when resized to the model's input.
MAX_ASPECT_RATIO = 100


def open_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright per its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(_too_large(width, height))
                if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                    raise ValueError(
                        f"image refused: {width}x{height} is too thin (at most "
                        f"{MAX_ASPECT_RATIO}:1 between its sides): crop it first"
                    )
                image = ImageOps.exif_transpose(image)
                return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image refused: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"could not read {os.path.basename(os.fspath(path))!r} as an image "
            f"({type(error).__name__}): upload a PNG, JPEG or WebP file"
        ) from error


def to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) uint8. 16-bit greys are divided by 257; 32-bit integer
    and float greys are scaled from the range their values use (0..1, 0..255, 0..65535, else
    their own min..max)."""
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return np.asarray(image.convert("RGB"))
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (low >= 0 and 255 < high <= 65535):
        values = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low < 0 or high > 255:
        values = (values - low) * (255.0 / max(high - low, 1e-12))
    grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _too_large(width: int, height: int) -> str:
    return (
        f"image refused: {width}x{height} is {width * height:,} pixels, more than the "
        f"{MAX_IMAGE_PIXELS:,} allowed"
    )
