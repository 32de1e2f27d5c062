from __future__ import annotations

import time

import numpy as np
import pytest

from sam.train.scenes import (
    COLOURS,
    LEVELS,
    PATTERNS,
    SHAPES,
    _visible_masks,
    all_captions,
    ancestors,
    caption,
    generate_scene,
    scene_dataset,
    whole_masks,
)


@pytest.fixture(scope="module")
def scenes():
    return list(scene_dataset(seed=0, count=120))


def test_scene_is_deterministic_per_seed_and_index():
    first = list(scene_dataset(seed=3, count=3))
    again = list(scene_dataset(seed=3, count=3))
    alone = generate_scene(np.random.default_rng((3, 2)))
    other = next(scene_dataset(seed=4, count=1))
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.image, b.image)
        assert [o.caption for o in a.objects] == [o.caption for o in b.objects]
        for x, y in zip(a.objects, b.objects, strict=True):
            assert np.array_equal(x.mask, y.mask)
    assert np.array_equal(first[2].image, alone.image)
    assert not np.array_equal(first[0].image, other.image)


def test_scene_types_and_sizes():
    scene = generate_scene(np.random.default_rng(0), size=96)
    assert scene.image.shape == (96, 96, 3) and scene.image.dtype == np.uint8
    assert scene.objects
    for obj in scene.objects:
        assert obj.mask.shape == (96, 96) and obj.mask.dtype == bool
        assert obj.caption == caption(obj.colour, obj.shape, obj.pattern)


def test_visible_masks_are_disjoint_and_large_enough(scenes):
    min_area = round(0.002 * 128 * 128)
    for scene in scenes:
        masks = np.stack([o.mask for o in scene.objects])
        assert masks.sum(0).max() <= 1
        assert masks.sum((1, 2)).min() >= min_area


def test_hierarchy_is_consistent(scenes):
    for scene in scenes:
        wholes = whole_masks(scene)
        for index, obj in enumerate(scene.objects):
            assert np.array_equal(wholes[index] & obj.mask, obj.mask)
            if obj.parent is None:
                assert obj.level == "whole"
                continue
            parent = scene.objects[obj.parent]
            assert obj.parent < index
            assert LEVELS.index(obj.level) == LEVELS.index(parent.level) + 1
            assert obj.colour != parent.colour
            assert np.array_equal(wholes[obj.parent] | wholes[index], wholes[obj.parent])
        union = np.zeros_like(wholes[0])
        for index, obj in enumerate(scene.objects):
            if obj.parent is None:
                union |= wholes[index]
        assert np.array_equal(union, np.any([o.mask for o in scene.objects], axis=0))


def test_subpart_click_is_ambiguous(scenes):
    chains = [
        ancestors(scene, index)
        for scene in scenes
        for index, obj in enumerate(scene.objects)
        if obj.level == "subpart"
    ]
    assert len(chains) >= 10
    scene = next(s for s in scenes if any(o.level == "subpart" for o in s.objects))
    index = next(i for i, o in enumerate(scene.objects) if o.level == "subpart")
    chain = ancestors(scene, index)
    assert [scene.objects[i].level for i in chain] == ["subpart", "part", "whole"]
    areas = whole_masks(scene)[chain].sum((1, 2))
    assert areas[0] < areas[1] < areas[2]


def test_vocabulary_is_covered(scenes):
    objects = [o for s in scenes for o in s.objects]
    assert {o.shape for o in objects} == set(SHAPES)
    assert {o.colour for o in objects} == set(COLOURS)
    assert {o.pattern for o in objects} == set(PATTERNS)
    assert {o.level for o in objects} == set(LEVELS)
    assert {o.caption for o in objects} <= set(all_captions())
    assert len(all_captions()) == len(set(all_captions())) == 8 * 3 * 7
    assert caption("red", "circle") == "red circle"
    assert caption("blue", "square", "striped") == "blue striped square"


def test_plain_objects_are_painted_their_colour(scenes):
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    names = list(COLOURS)
    for scene in scenes[:40]:
        for obj in scene.objects:
            if obj.pattern == "plain":
                mean = scene.image[obj.mask].astype(np.float32).mean(0)
                assert names[np.linalg.norm(palette - mean, axis=1).argmin()] == obj.colour


def test_background_is_muted_and_unlike_object_colours(scenes):
    palette = np.array(list(COLOURS.values()), dtype=np.float32)
    for scene in scenes[:40]:
        covered = np.any([o.mask for o in scene.objects], axis=0)
        pixels = scene.image[~covered].astype(np.float32)
        distance = np.linalg.norm(pixels[:, None] - palette[None], axis=2).min(1)
        assert np.median(distance) > 60
        assert np.percentile(pixels.max(1) - pixels.min(1), 95) < 80


def test_occlusion_hides_earlier_objects():
    square = np.zeros((8, 8), dtype=bool)
    square[1:5, 1:5] = True
    shifted = np.roll(square, (2, 2), axis=(0, 1))
    below, above = _visible_masks([square, shifted])
    assert np.array_equal(above, shifted)
    assert np.array_equal(below, square & ~shifted)


def test_some_scenes_have_occlusion(scenes):
    touching = 0
    for scene in scenes:
        wholes = whole_masks(scene)
        tops = [i for i, o in enumerate(scene.objects) if o.parent is None]
        grown = [np.pad(wholes[i], 1)[:-2, 1:-1] | np.pad(wholes[i], 1)[2:, 1:-1] for i in tops]
        touching += any(
            (grown[a] & wholes[tops[b]]).any()
            for a in range(len(tops))
            for b in range(len(tops))
            if a != b
        )
    assert touching > len(scenes) // 4


def test_generation_is_fast():
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(20):
        generate_scene(rng)
    assert (time.perf_counter() - start) / 20 < 0.02
