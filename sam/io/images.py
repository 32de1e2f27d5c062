"""Reading images: ONE reader with one set of rules for the app, the command line and training.

Any Pillow-readable file -> (H, W, 3) uint8 RGB. Corrupt and empty files, decompression bombs,
images too small or too thin for the model are refused with a ValueError that says what was
wrong. 16-bit and float images are scaled to 8 bits (not clipped), CMYK and palette images
converted, EXIF rotation applied, and an animation's first frame used.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Larger images are refused before they are decoded (Pillow's own guard against bombs).
MAX_IMAGE_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
# Thinner images would shrink to nothing across when resized to the model's input.
MAX_ASPECT_RATIO = 100
MIN_SIDE = 2
# what folders are searched for (the reader itself takes any file Pillow can open)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, upright per its EXIF orientation."""
    return _decode(path, os.path.basename(os.fspath(path)), lambda: os.path.getsize(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """An image file's contents (fetched from any filesystem) as :func:`read_image` reads the
    file; ``name`` is the file's name, for the messages."""
    return _decode(io.BytesIO(data), name, lambda: len(data))


def _decode(
    source: str | os.PathLike | io.BytesIO, name: str, size: Callable[[], int]
) -> np.ndarray:
    try:
        if size() == 0:
            raise ValueError(f"could not read {name!r}: the file is empty")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                check_size(*image.size)
                return to_rgb(ImageOps.exif_transpose(image))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"image refused: {name!r} has more than {MAX_IMAGE_PIXELS:,} pixels: scale it down "
            "first"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"could not read {name!r} as an image: use a PNG, JPEG or WebP file"
        ) from error


def check_size(width: int, height: int) -> None:
    """Refuse (ValueError) images the model cannot use: too many pixels, too small, too thin."""
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"image refused: {width}x{height} is {width * height:,} pixels, more than the "
            f"{MAX_IMAGE_PIXELS:,} allowed: scale it down first"
        )
    if min(width, height) < MIN_SIDE:
        raise ValueError(
            f"image refused: {width}x{height} is too small (at least {MIN_SIDE} pixels a side)"
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ValueError(
            f"image refused: {width}x{height} is too thin (at most {MAX_ASPECT_RATIO}:1 "
            "between its sides): crop it first"
        )


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


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8; alpha is dropped."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255), got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]
