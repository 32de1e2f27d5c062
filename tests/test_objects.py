"""Kept objects: colours, labels, the bounded list and export (prompts/objects.py)."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.clicks import PromptState
from prompts.objects import (
    KeptObject,
    ObjectList,
    clean_label,
    duplicates,
    hex_colour,
    object_colour,
)


def square(top: int, left: int, side: int = 10) -> np.ndarray:
    mask = np.zeros((40, 40), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_each_object_keeps_one_distinct_colour():
    colours = [object_colour(i) for i in range(1, 9)]
    assert len(set(colours)) == 8 and object_colour(3) == colours[2]
    assert hex_colour((255, 0, 16)) == "#ff0010"


def test_labels_are_one_short_line():
    assert clean_label("  big \n cat ") == "big cat" and clean_label(None) == "object"
    assert len(clean_label("x" * 500)) == 60


def kept(object_id: int, image_id: int, label: str, mask: np.ndarray, score: float = 0.5):
    prompts = PromptState(mask.shape).add_point(1, 1)
    return KeptObject.from_prediction(
        object_id, image_id, label, mask, score, prompts, np.zeros((1, 16, 16))
    )


def test_a_kept_object_round_trips_its_mask_and_exports_its_prompts():
    prompts = PromptState((40, 40)).add_point(5, 6)
    logits = np.random.default_rng(0).normal(size=(1, 16, 16)).astype(np.float32)
    kept = KeptObject.from_prediction(3, 1, "cat", square(0, 0), 0.9, prompts, logits)
    np.testing.assert_array_equal(kept.mask, square(0, 0))
    assert kept.area == 100 and kept.logits.dtype == np.float16 and kept.prompts.logits is None
    assert (kept.object_id, kept.annotation_id, kept.label) == (3, 3, "cat")
    assert kept.point_coords == ((5.0, 6.0),) and kept.source == "manual"
    assert kept.renamed("dog").label == "dog" and kept.label == "cat"


def test_duplicates_by_iou():
    a = kept(1, 1, "a", square(0, 0), 1.0).rle
    nearly = kept(2, 1, "b", square(1, 1), 1.0).rle
    apart = kept(3, 1, "c", square(25, 25), 1.0).rle
    assert duplicates(nearly, [a]) and not duplicates(apart, [a]) and not duplicates(a, [])


def test_the_list_replaces_in_place_and_is_bounded():
    objects = ObjectList(capacity=2)
    first, second = objects.next_id(), objects.next_id()
    objects.put(kept(first, 1, "a", square(0, 0), 0.5))
    objects.put(kept(second, 2, "b", square(5, 5), 0.5))
    objects.put(kept(first, 1, "a2", square(0, 0), 0.7))
    assert [(o.object_id, o.label) for o in objects.items] == [(1, "a2"), (2, "b")]
    assert [o.object_id for o in objects.on_image(2)] == [2]
    with pytest.raises(ValueError, match="at most 2 objects"):
        objects.put(kept(objects.next_id(), 1, "c", square(9, 9), 0.5))
    objects.remove(1)
    assert [a.label for a in objects.annotations()] == ["b"] and objects.room() == 1
