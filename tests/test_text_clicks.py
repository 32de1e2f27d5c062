"""Text plus clicks on a bundled scene with the bundled demo models: the text finds one object,
a positive click on another adds it (prompts/text_clicks.py)."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.model_shelf import load_text_model
from prompts.text_clicks import quoted, segment_text_with_clicks
from sam import SamPredictor, load_sam
from sam.train.scenes import generate_scene, whole_masks


@pytest.fixture(scope="module")
def scene_and_prompter():
    scene = generate_scene(np.random.default_rng(7), 320)  # assets/examples/shapes_7.png
    prompter = load_text_model("demo").prompter(SamPredictor(load_sam("demo", device="cpu")))
    return scene, whole_masks(scene), prompter


def inside_point(mask: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return int(x), int(y)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_click_on_a_second_object_extends_the_text_mask(scene_and_prompter):
    scene, truths, prompter = scene_and_prompter
    captions = [o.caption for o in scene.objects]
    red, purple = (
        truths[captions.index("red ellipse")],
        truths[captions.index("purple striped ellipse")],
    )
    alone, clip, status = segment_text_with_clicks(
        prompter, scene.image, "red ellipse", None, None, None
    )
    assert status.startswith('Found "red ellipse"') and clip is not None
    assert iou(alone[0].mask, red) > 0.8 and iou(alone[0].mask, purple) < 0.05
    click = np.array([inside_point(purple)], np.float32)
    both, clip, _ = segment_text_with_clicks(
        prompter, scene.image, "red ellipse", click, np.array([1]), None
    )
    assert clip is not None and iou(both[0].mask, red | purple) > 0.8


def test_quoted_text_is_short():
    assert quoted("red ellipse") == '"red ellipse"'
    assert quoted("x" * 100) == '"' + "x" * 39 + '…"'
