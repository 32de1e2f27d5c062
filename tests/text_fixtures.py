"""What the text-prompt tests share (``pytest_plugins = ["tests.text_fixtures"]``): a tiny random
CLIP and a predictor over the tiny random SAM, a small scene with a red circle on a dark
background, and the TextPrompter options that let every query through the gates (a random CLIP
would otherwise rarely find anything)."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.clip_model import create_random_clip
from sam import SamPredictor

ALWAYS = {"existence_threshold": -np.inf, "verify_threshold": -np.inf}


def red_circle_scene(seed=0, size=(72, 96)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[: size[0], : size[1]]
    image[(yy - 30) ** 2 + (xx - 40) ** 2 < 15**2] = (220, 30, 30)
    return image


@pytest.fixture(scope="module")
def clip():
    return create_random_clip(seed=0)


@pytest.fixture
def predictor(tiny_sam):
    return SamPredictor(tiny_sam)
