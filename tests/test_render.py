"""Prompts and candidates drawn over the image (prompts/render.py)."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.clicks import BACKGROUND, PromptState
from prompts.render import (
    BACKGROUND_COLOUR,
    BOX_COLOUR,
    FOREGROUND_COLOUR,
    candidate_views,
    draw_prompts,
    iou_caption,
    shrink,
)


def test_iou_caption():
    assert iou_caption(0.9312) == "IoU 0.93"
    assert iou_caption(1.0) == "IoU 1.00"


def test_dots_are_green_and_red_and_the_box_is_outlined():
    image = np.zeros((100, 120, 3), np.uint8)
    state = PromptState((100, 120)).add_point(20, 30).add_point(80, 60, BACKGROUND)
    state = state.add_corner(5, 10).add_corner(110, 90)
    drawn = draw_prompts(image, state)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert tuple(drawn[30, 20]) == FOREGROUND_COLOUR
    assert tuple(drawn[60, 80]) == BACKGROUND_COLOUR
    assert tuple(drawn[10, 50]) == BOX_COLOUR and tuple(drawn[50, 110]) == BOX_COLOUR
    assert not image.any()  # the input is untouched


def test_pending_corner_is_marked():
    drawn = draw_prompts(np.zeros((50, 50, 3), np.uint8), PromptState((50, 50)).add_corner(25, 25))
    assert tuple(drawn[25, 25]) == BOX_COLOUR


def test_candidate_views_pair_pictures_with_captions():
    image = np.zeros((8, 8, 3), np.uint8)
    masks = [np.ones((8, 8), bool), np.zeros((8, 8), bool)]
    views = candidate_views(image, masks, [0.9, 0.5], PromptState((8, 8)))
    assert [caption for _, caption in views] == ["IoU 0.90", "IoU 0.50"]
    assert views[0][0].any() and not views[1][0].any()


def test_thumbnails_keep_the_aspect_ratio():
    image = np.zeros((300, 1200, 3), np.uint8)
    assert shrink(image, 400).shape == (100, 400, 3)
    assert shrink(image, None) is image and shrink(image, 2000) is image
    views = candidate_views(
        image, [np.ones((300, 1200), bool)], [0.5], PromptState((300, 1200)), max_side=600
    )
    assert views[0][0].shape == (150, 600, 3)


def test_colour_masks_tints_each_mask_its_own_colour():
    from prompts.render import colour_masks

    image = np.zeros((10, 12, 3), np.uint8)
    masks = [np.zeros((10, 12), bool) for _ in range(2)]
    masks[0][:5], masks[1][5:] = True, True
    out = colour_masks(image, masks)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[0, 0] != out[9, 0]).any() and (out[0, 0] > 0).any()
    with pytest.raises(ValueError, match="mask is"):
        colour_masks(image, [np.zeros((3, 3), bool)])


def test_caption_with_clip_score():
    from prompts.render import iou_caption

    assert iou_caption(0.934) == "IoU 0.93"
    assert iou_caption(0.934, 0.7051) == "IoU 0.93 · CLIP 0.71"
