from __future__ import annotations

import numpy as np
import pytest

from prompts.brush import BRUSH_LOGIT, editor_mask, layer_mask, mask_to_mask_input
from sam.io.masks import mask_box


def rgba_layer(height: int, width: int, painted: tuple[slice, slice]) -> np.ndarray:
    layer = np.zeros((height, width, 4), np.uint8)
    layer[painted] = (255, 255, 255, 200)
    return layer


def test_layer_mask_uses_alpha_or_colour():
    layer = rgba_layer(4, 5, (slice(1, 3), slice(2, 4)))
    layer[0, 0, :3] = 255  # colour without alpha is not paint
    expected = np.zeros((4, 5), bool)
    expected[1:3, 2:4] = True
    np.testing.assert_array_equal(layer_mask(layer), expected)
    np.testing.assert_array_equal(layer_mask(layer[:, :, :3] * expected[..., None]), expected)
    with pytest.raises(ValueError, match="brush layer"):
        layer_mask(np.zeros((4, 5, 2)))


def test_editor_mask_unions_layers_and_checks_sizes():
    a = rgba_layer(6, 8, (slice(0, 2), slice(0, 2)))
    b = rgba_layer(6, 8, (slice(4, 6), slice(6, 8)))
    mask = editor_mask([a, b], (6, 8))
    assert mask.sum() == 8 and mask[0, 0] and mask[5, 7]
    assert editor_mask([np.zeros((6, 8, 4), np.uint8)], (6, 8)) is None
    assert editor_mask([], (6, 8)) is None
    with pytest.raises(ValueError, match="8x6"):
        editor_mask([a], (8, 6))


def test_mask_input_is_in_the_padded_frame():
    mask = np.zeros((100, 200), bool)  # wide: long side 200 -> 256, height 100 -> 128 + padding
    mask[:, :100] = True  # left half
    logits = mask_to_mask_input(mask)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    assert np.allclose(logits[0, :128, :120], BRUSH_LOGIT)
    assert np.allclose(logits[0, :128, 136:], -BRUSH_LOGIT)
    assert np.allclose(logits[0, 128:, :], -BRUSH_LOGIT)  # padding is background


def test_mask_input_side_follows_the_model():
    mask = np.ones((30, 10), bool)  # tall: 30 -> 32, 10 -> 11
    logits = mask_to_mask_input(mask, side=32, logit=4.0)
    assert logits.shape == (1, 32, 32)
    assert np.allclose(logits[0, :, :10], 4.0) and np.allclose(logits[0, :, 11:], -4.0)


def test_mask_input_refuses_odd_shapes():
    with pytest.raises(ValueError, match="mask"):
        mask_to_mask_input(np.zeros((0, 3), bool))
    with pytest.raises(ValueError, match="mask"):
        mask_to_mask_input(np.zeros((3, 3, 3), bool))


def test_brush_prompt_is_accepted_by_the_predictor(tiny_sam):
    from sam import SamPredictor

    predictor = SamPredictor(tiny_sam)
    predictor.set_image(np.zeros((48, 64, 3), np.uint8))
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    side = tiny_sam.prompt_encoder.mask_input_size[0]
    candidates = predictor.predict_ranked(
        box=mask_box(mask), mask_input=mask_to_mask_input(mask, side)
    )
    assert len(candidates) == 3
