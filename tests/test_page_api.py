"""The API endpoints' functions, called directly (prompts/page_api.py): one object with points,
a box or text; several objects in one call; bad input as one clear gradio.Error. Through
gradio_client and a served page: tests/test_app_api.py."""

from __future__ import annotations

import logging
import re

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from prompts.clip_model import create_random_clip
from prompts.model_shelf import ModelShelf
from prompts.page_api import Api
from prompts.page_handlers import Handlers
from prompts.text_prompter import TextModel
from sam import save_checkpoint


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_sam):
    checkpoint = save_checkpoint(tiny_sam, tmp_path_factory.mktemp("m") / "tiny.safetensors")
    clip = create_random_clip(seed=0)
    shelf = ModelShelf(device="cpu", clip_loader=lambda kind: TextModel(clip, "untrained"))
    return Api(Handlers(shelf, str(checkpoint)))


@pytest.fixture
def image_file(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "photo.png")
    return str(tmp_path / "photo.png")


def mask_of(file: str) -> np.ndarray:
    return np.asarray(Image.open(file)) > 0


def test_segment_gives_three_ranked_masks(api, image_file):
    masks, scores, message = api.segment(image_file, [[10, 20]], [1], [2, 2, 40, 40])
    assert len(masks) == 3 and scores == sorted(scores, reverse=True) and message == ""
    assert [caption for _, caption in masks] == [f"IoU {s:.2f}" for s in scores]
    assert mask_of(masks[0][0]).shape == (48, 64)


def test_segment_with_text_and_a_click(api, image_file):
    masks, scores, message = api.segment(image_file, [[10, 20]], [1], None, "red ellipse")
    assert message.startswith(('Found "red ellipse"', '"red ellipse" was not found'))
    assert len(masks) == len(scores) == 3 and scores == sorted(scores, reverse=True)
    if message.startswith("Found"):
        assert all(" · CLIP " in caption for _, caption in masks)
    else:  # masks from the click alone carry no CLIP score
        assert all("CLIP" not in caption for _, caption in masks)


BAD_SEGMENT_CALLS = [
    ((None, [[1, 1]], [1]), r"^No image: give an image file"),
    (("{image}",), r"^No prompt: give points, a box or a text\.$"),
    (("{image}", [[5000, 5000]], [1]), r"^Click \(5000, 5000\) is outside the 64x48 image"),
    (("{image}", [[1, 1]], [1, 1]), r"^1 points but 2 labels"),
    (("{image}", [], [1]), r"^0 points but 1 labels"),
    (
        ("{image}", [["a", 1]], [1]),
        r"^Points must be \[\[x, y\], \.\.\.\] in pixels, got \[\['a', 1\]\]\.$",
    ),
    (("{image}", None, None, [0, 0, 500, 10]), r"inside the 64x48 image"),
    (("{image}", None, None, None, "   "), r"^The text is empty"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SEGMENT_CALLS)
def test_segment_refuses_bad_input_in_one_sentence_without_a_traceback(
    api, image_file, caplog, args, message
):
    args = tuple(image_file if a == "{image}" else a for a in args)
    with caplog.at_level(logging.INFO), pytest.raises(gr.Error) as info:
        api.segment(*args)
    assert re.search(message, info.value.message), info.value.message
    assert info.value.print_exception is False and "Traceback" not in caplog.text


def test_segment_objects_gives_one_mask_per_box_or_point_set(api, image_file):
    boxes = [[2, 2, 30, 30], [30, 10, 60, 45]]
    masks, scores, message = api.segment_objects(image_file, boxes)
    assert len(masks) == len(scores) == 2 and message == "2 objects segmented."
    assert [caption for _, caption in masks] == [
        f"object {i + 1} · IoU {s:.2f}" for i, s in enumerate(scores)
    ]
    for (file, _), box, score in zip(masks, boxes, scores):
        alone, alone_scores, _ = api.segment(image_file, None, None, box)
        assert score == pytest.approx(alone_scores[0], abs=1e-4)
        assert (mask_of(file) != mask_of(alone[0][0])).mean() < 1e-3
    masks, _, _ = api.segment_objects(
        image_file, None, [[[10, 20]], [[50, 40], [5, 5]]], [[1], [1, 0]]
    )
    assert len(masks) == 2
    masks, _, _ = api.segment_objects(image_file, boxes, [[[10, 20]], []], [[1], []])
    assert len(masks) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((None,), r"^No prompt: give boxes"),
        ((None, [[[1, 1]]]), r"^Give one list of labels per list of points"),
        (([[0, 0, 5, 5]], [[[1, 1]], [[2, 2]]], [[1], [1]]), r"^1 boxes but 2 point lists"),
        (([[0, 0, 500, 5]],), r"inside the 64x48 image"),
        (([],), r"^Give between 1 and 64 objects"),
        (([[0, 0, 5, 5]] * 65,), r"^Give between 1 and 64 objects"),
        ((None, [[[5000, 1]]], [[1]]), r"outside the 64x48 image"),
        ((None, [[]], [[]]), r"^Every object needs a box or at least one point"),
    ],
)
def test_segment_objects_refuses_bad_input(api, image_file, args, message):
    with pytest.raises(gr.Error) as info:
        api.segment_objects(image_file, *args)
    assert re.search(message, info.value.message), info.value.message
