"""Reading what a person uploads (:func:`sam.io.images.read_image`): any Pillow-readable file
-> (H, W, 3) uint8, awkward formats converted, decompression bombs refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sam.io.images import MAX_IMAGE_PIXELS, decode_image, read_image


def saved(tmp_path, name: str, image: Image.Image, **options) -> str:
    image.save(tmp_path / name, **options)
    return str(tmp_path / name)


def test_decompression_bombs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(bomb)  # tiny file, 64 megapixels
    assert MAX_IMAGE_PIXELS < 8000 * 8000
    with pytest.raises(ValueError, match="image refused"):
        read_image(bomb)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    grey = read_image(saved(tmp_path, "deep.png", Image.fromarray(ramp)))
    assert grey.shape == (48, 64, 3) and grey.dtype == np.uint8
    np.testing.assert_allclose(grey[..., 0], ramp / 257, atol=1)
    unit = np.linspace(0, 1, 48 * 64, dtype=np.float32).reshape(48, 64)
    floats = read_image(saved(tmp_path, "float.tiff", Image.fromarray(unit, mode="F")))
    np.testing.assert_allclose(floats[..., 0], unit * 255, atol=1)


def test_cmyk_grayscale_palette_and_alpha_images_become_rgb(tmp_path):
    cases = {
        "cmyk.jpg": Image.new("CMYK", (30, 20), (0, 255, 255, 0)),
        "grey.png": Image.new("L", (30, 20), 77),
        "palette.png": Image.new("P", (30, 20)),
        "alpha.png": Image.new("RGBA", (30, 20), (255, 0, 0, 0)),
        "one_bit.png": Image.new("1", (30, 20)),
    }
    for name, image in cases.items():
        pixels = read_image(saved(tmp_path, name, image))
        assert pixels.shape == (20, 30, 3) and pixels.dtype == np.uint8, name
    assert tuple(read_image(tmp_path / "cmyk.jpg")[0, 0]) == pytest.approx((255, 0, 0), abs=3)
    assert tuple(read_image(tmp_path / "grey.png")[0, 0]) == (77, 77, 77)


def test_exif_rotation_and_animations(tmp_path):
    upright = Image.new("RGB", (30, 20), (0, 255, 0))
    exif = upright.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    assert read_image(saved(tmp_path, "rotated.jpg", upright, exif=exif)).shape == (30, 20, 3)
    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = saved(tmp_path, "animated.gif", frames[0], save_all=True, append_images=frames[1:])
    first = read_image(path)
    assert first.shape == (20, 30, 3) and tuple(first[0, 0]) == (255, 0, 0)


def test_file_contents_decode_as_the_file_reads(tmp_path):
    """Images fetched from another filesystem arrive as bytes; the same rules apply."""
    ramp = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64)
    path = saved(tmp_path, "deep.png", Image.fromarray(ramp))
    data = (tmp_path / "deep.png").read_bytes()
    np.testing.assert_array_equal(decode_image(data, "deep.png"), read_image(path))
    with pytest.raises(ValueError, match=r"could not read 'empty\.png': the file is empty"):
        decode_image(b"", "empty.png")
    with pytest.raises(ValueError, match=r"could not read 'bad\.jpg' as an image"):
        decode_image(b"\xff\xd8 not a jpeg", "bad.jpg")
