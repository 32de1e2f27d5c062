"""The instant view's server side: the state it hands the page, and the clicks it reads back."""

from __future__ import annotations

import io
import os

import numpy as np
import onnxruntime
import pytest
from PIL import Image

from prompts import instant
from prompts.clicks import PromptState
from prompts.instant import instant_value, read_click, view_size
from sam import SamPredictor
from sam.io.masks import mask_iou, mask_to_uncompressed_rle, rle_to_mask
from sam.modeling.sam2 import build_sam2

HEIGHT, WIDTH = 60, 80


@pytest.fixture(autouse=True)
def files(tmp_path_factory, monkeypatch):
    """The served files in a folder of the tests' own."""
    folder = tmp_path_factory.getbasetemp() / "instant_files"
    monkeypatch.setattr(instant, "FILES", folder)
    return folder


@pytest.fixture(scope="module")
def shown():
    """The image, as the page shows it."""
    return np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def predictor(tiny_sam, shown):
    encoded = SamPredictor(tiny_sam)
    encoded.set_image(shown)
    return encoded


@pytest.mark.slow  # exports the decoder once (seconds)
def test_value_holds_what_the_browser_needs(predictor, shown):
    prompts = PromptState((HEIGHT, WIDTH)).add_point(10, 20, 1).add_corner(5, 5)
    logits = np.random.default_rng(1).standard_normal((1, 32, 32)).astype(np.float32)
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[10:30, 5:40] = True
    value = instant_value(predictor, shown, prompts.with_logits(logits), mask, mode="box")

    assert (value["width"], value["height"]) == (WIDTH, HEIGHT)
    # SAM: prompts scaled to the long side's frame; logits up to the square, the padding cropped
    assert value["input_size"] == value["mask_crop"] == [96, 128]
    assert value["mask_frame"] == [128, 128] and value["box_first"] is False
    assert value["points"] == [[10.0, 20.0, 1]] and value["corners"] == [[5.0, 5.0]]
    assert value["mode"] == "box" and value["mask_input_size"] == 32
    (feature,) = value["features"]
    assert feature["name"] == "image_embeddings"
    embedding = np.fromfile(feature["path"], "<f4").reshape(feature["shape"])
    np.testing.assert_array_equal(embedding, predictor.get_image_embedding().numpy())
    np.testing.assert_array_equal(np.fromfile(value["logits"], "<f4").reshape(1, 32, 32), logits)
    np.testing.assert_array_equal(rle_to_mask(value["mask"]), mask)
    with open(value["image"], "rb") as file:
        assert Image.open(io.BytesIO(file.read())).size == (WIDTH, HEIGHT)
    session = onnxruntime.InferenceSession(value["decoder"])
    assert session.get_inputs()[0].name == "image_embeddings"

    again = instant_value(predictor, shown, prompts)
    assert again["decoder"] == value["decoder"]  # exported once per model
    assert again["features"] == value["features"]  # stored once per image
    assert again["logits"] is None and again["mask"] is None
    os.remove(feature["path"])  # pruned meanwhile: stored again
    third = instant_value(predictor, shown, prompts)
    np.testing.assert_array_equal(
        np.fromfile(third["features"][0]["path"], "<f4"), embedding.ravel()
    )


@pytest.mark.slow  # exports the decoder once (seconds)
def test_large_images_are_decoded_at_a_view(tiny_sam):
    height, width = 1500, 2100
    image = np.zeros((height, width, 3), dtype=np.uint8)
    large = SamPredictor(tiny_sam)
    large.set_image(image)
    mask = np.zeros((height, width), dtype=bool)
    mask[300:900, 600:1500] = True
    value = instant_value(large, image, mask=mask)
    assert (value["height"], value["width"]) == (height, width)
    assert (value["view_height"], value["view_width"]) == view_size((height, width)) == (731, 1024)
    assert value["mask"]["size"] == [731, 1024]
    with open(value["image"], "rb") as file:
        assert Image.open(io.BytesIO(file.read())).size == (1024, 731)

    view_mask = rle_to_mask(value["mask"])
    data = _click_data([view_mask] * 3, size=[731, 1024])
    click = read_click(data, (height, width))
    assert click.candidates[0].mask.shape == (height, width)
    assert mask_iou(click.candidates[0].mask, mask) > 0.99


def test_value_refusals(predictor, shown):
    assert instant_value(predictor, shown, PromptState((HEIGHT, WIDTH)).with_text("dog")) is None
    with pytest.raises(ValueError, match="mode must be one of"):
        instant_value(predictor, shown, mode="lasso")
    with pytest.raises(ValueError, match="shown is"):
        instant_value(predictor, shown[:10])


@pytest.mark.slow  # exports the decoder once (seconds)
def test_sam2_value_holds_its_three_features(shown):
    """SAM 2: the embedding and both high-resolution maps; prompts scaled to the square frame,
    box corners first; logits resized straight to the view."""
    predictor = SamPredictor(build_sam2("sam2_test"))
    predictor.set_image(shown)
    value = instant_value(predictor, shown)
    features = predictor.features
    expected = [features.image_embed, *features.high_res_feats]
    assert [f["name"] for f in value["features"]] == [
        "image_embed",
        "high_res_feats_0",
        "high_res_feats_1",
    ]
    for feature, tensor in zip(value["features"], expected):
        array = np.fromfile(feature["path"], "<f4").reshape(feature["shape"])
        np.testing.assert_array_equal(array, tensor.numpy())
    assert value["input_size"] == [128, 128] and value["box_first"] is True
    assert value["mask_frame"] == value["mask_crop"] == [HEIGHT, WIDTH]
    session = onnxruntime.InferenceSession(value["decoder"])
    assert [i.name for i in session.get_inputs()[:3]] == [f["name"] for f in value["features"]]


def test_old_files_go_beyond_the_budget(files, monkeypatch):
    monkeypatch.setattr(instant, "FILES_BUDGET", 250)
    paths = []
    for i in range(3):
        paths.append(instant._store(bytes([i]) * 100, ".f32"))
        os.utime(paths[-1], (i, i))  # written in this order
    assert [p.exists() for p in paths] == [False, True, True]
    assert instant._store(bytes([2]) * 100, ".f32") == paths[2]  # the same bytes, one file


def _click_data(masks: list[np.ndarray], **changes) -> dict:
    data = {
        "click": {"x": 12, "y": 7, "mode": "background"},
        "points": [[30, 20, 1], [12, 7, 0]],
        "corners": [],
        "size": [HEIGHT, WIDTH],
        "candidates": [
            {"index": i, "score": 0.5 - i / 10, "rle": mask_to_uncompressed_rle(m)}
            for i, m in enumerate(masks)
        ],
        "decode_ms": 12.5,
    }
    return data | changes


def test_read_click_round_trip():
    rng = np.random.default_rng(2)
    masks = [rng.random((HEIGHT, WIDTH)) > 0.5 for _ in range(3)]
    click = read_click(_click_data(masks), (HEIGHT, WIDTH))
    assert (click.x, click.y, click.mode, click.decode_ms) == (12.0, 7.0, "background", 12.5)
    np.testing.assert_array_equal(click.points, [[30, 20], [12, 7]])
    np.testing.assert_array_equal(click.labels, [1, 0])
    for candidate, mask, index in zip(click.candidates, masks, range(3)):
        np.testing.assert_array_equal(candidate.mask, mask)
        assert candidate.output_index == index


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"size": [10, 10]}, "the masks are"),
        ({"points": [[1, 2, 5]]}, "labels 0 or 1"),
        ({"corners": [[1, 1], [2, 2], [3, 3]]}, "at most two corners"),
        ({"click": {"x": 1, "y": 1, "mode": "lasso"}}, "mode must be one of"),
        ({"click": None}, "malformed"),
        (
            {
                "candidates": [
                    {"index": 0, "score": 1.0, "rle": {"size": [HEIGHT, WIDTH], "counts": [5]}}
                ]
            },
            "run lengths",
        ),
    ],
)
def test_read_click_refuses_bad_data(changes, message):
    masks = [np.zeros((HEIGHT, WIDTH), dtype=bool)] * 3
    with pytest.raises(ValueError, match=message):
        read_click(_click_data(masks, **changes), (HEIGHT, WIDTH))
