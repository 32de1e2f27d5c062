"""Objects, prompts and candidates drawn over the image, and the page's object list
(prompts/render.py)."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.clicks import BACKGROUND, PromptState
from prompts.render import (
    ACTIVE_ALPHA,
    BACKGROUND_COLOUR,
    BOX_COLOUR,
    FOREGROUND_COLOUR,
    OBJECT_ALPHA,
    OUTLINE,
    candidate_choices,
    colour_masks,
    draw_canvas,
    draw_prompts,
    iou_caption,
    object_rows,
)


def test_captions():
    assert iou_caption(0.9312) == "IoU 0.93"
    assert iou_caption(0.934, 0.7051) == "IoU 0.93 · CLIP 0.71"
    assert candidate_choices([0.9, 0.5]) == [("1 · IoU 0.90", 0), ("2 · IoU 0.50", 1)]
    assert candidate_choices([0.9], [0.7])[0][0] == "1 · IoU 0.90 · CLIP 0.70"


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


def test_canvas_fills_and_outlines_each_object_in_its_colour():
    image = np.full((60, 80, 3), 100, np.uint8)
    other, active = np.zeros((60, 80), bool), np.zeros((60, 80), bool)
    other[5:25, 5:25], active[30:55, 40:75] = True, True
    red, blue = (255, 0, 0), (0, 0, 255)
    drawn = draw_canvas(image, [(other, red)], (active, blue), PromptState((60, 80)))
    inside_other, inside_active = drawn[15, 15].astype(float), drawn[42, 57].astype(float)
    np.testing.assert_allclose(inside_other, 100 + OBJECT_ALPHA * (np.array(red) - 100), atol=1)
    np.testing.assert_allclose(inside_active, 100 + ACTIVE_ALPHA * (np.array(blue) - 100), atol=1)
    assert tuple(drawn[5, 15]) == OUTLINE and tuple(drawn[30, 57]) == OUTLINE  # edges
    assert tuple(drawn[0, 0]) == (100, 100, 100)  # the image shows outside the masks
    assert draw_canvas(image, [], None, None) is not None


def test_everything_overlay_keeps_the_image_visible():
    image = np.random.default_rng(0).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    masks = [np.zeros((30, 30), bool), np.zeros((30, 30), bool)]
    masks[0][:, :15], masks[1][10:20, 10:20] = True, True
    out = colour_masks(image, masks)
    assert out.shape == image.shape and out.dtype == np.uint8
    inside = (slice(2, 8), slice(2, 8))  # in mask 0, away from its edge
    # translucent: the image's texture still shows through the tint
    for channel in range(3):
        ours, theirs = out[inside][..., channel].ravel(), image[inside][..., channel].ravel()
        assert np.corrcoef(ours, theirs)[0, 1] > 0.99
    assert not np.array_equal(out[15, 15], out[5, 5])  # each mask its own colour
    with pytest.raises(ValueError, match="mask is"):
        colour_masks(image, [np.zeros((3, 3), bool)])


def test_object_rows_list_each_object_with_its_colour():
    assert "No objects yet" in object_rows([])
    listing = object_rows(
        [("#ff0000", "#1 <cat>", 1234, 0.93, True), ("#00ff00", "#2 dog", 5, 0.5, False)]
    )
    assert "background:#ff0000" in listing and "&lt;cat&gt;" in listing
    assert "1,234 px · IoU 0.93 (refining)" in listing and "5 px · IoU 0.50</li>" in listing
