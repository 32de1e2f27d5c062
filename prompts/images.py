"""Opening what a person uploads: any Pillow-readable file -> (H, W, 3) uint8, refusing corrupt
files and decompression bombs with a clear message."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before they are decoded (Pillow's own guard against bombs).
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def open_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, upright per its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError(_too_large(width, height))
                image = ImageOps.exif_transpose(image)
                return np.asarray(image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image refused: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"could not read {os.path.basename(os.fspath(path))!r} as an image "
            f"({type(error).__name__}): upload a PNG, JPEG or WebP file"
        ) from error


def _too_large(width: int, height: int) -> str:
    return (
        f"image refused: {width}x{height} is {width * height:,} pixels, more than the "
        f"{MAX_IMAGE_PIXELS:,} allowed"
    )
