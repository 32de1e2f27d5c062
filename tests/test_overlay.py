"""The one colour overlay (sam/io/overlay.py)."""

from __future__ import annotations

import numpy as np
import pytest

from sam.io.overlay import (
    MASK_COLOUR,
    OUTLINE_COLOUR,
    distinct_colours,
    overlay_mask,
    overlay_masks,
)


def test_overlay_tints_only_the_mask():
    image = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    out = overlay_mask(image, mask, alpha=1.0, outline=None)
    assert (out[:2] == MASK_COLOUR).all() and (out[2:] == 100).all()
    with pytest.raises(ValueError, match="mask"):
        overlay_mask(image, np.zeros((3, 4), bool))


def test_overlay_edges_the_mask_in_white_so_it_shows_on_its_own_colour():
    image = np.zeros((400, 400, 3), np.uint8)
    image[...] = MASK_COLOUR  # an object of the mask's own colour everywhere
    mask = np.zeros((400, 400), bool)
    mask[100:300, 50:250] = True
    out = overlay_mask(image, mask)
    edge = (out == OUTLINE_COLOUR).all(-1)
    # 2 pixels wide (1/200 of 400), inside the mask, all around it
    assert edge[100:102, 50:250].all() and edge[298:300, 50:250].all()
    assert edge[100:300, 50:52].all() and edge[100:300, 248:250].all()
    assert edge.sum() == mask.sum() - 196 * 196
    assert not edge[~mask].any()
    # where the mask meets the image's border, that border is its edge
    mask[:, :10] = True
    assert (overlay_mask(image, mask) == OUTLINE_COLOUR).all(-1)[150:250, 0].all()


def test_overlay_masks_in_distinct_colours_later_on_top():
    image = np.zeros((10, 12, 3), np.uint8)
    large, small = np.ones((10, 12), bool), np.zeros((10, 12), bool)
    small[2:4, 2:4] = True
    out = overlay_masks(image, [large, small], alpha=1.0)
    first, second = distinct_colours(2)
    assert (out[0, 0] == first).all() and (out[3, 3] == second).all()
    assert len({tuple(c) for c in distinct_colours(8)}) == 8
    np.testing.assert_array_equal(overlay_masks(image, []), image)
