"""sam.automatic.mask_ops against segment_anything.utils.amg, plus the small-region helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg as reference

from sam.automatic import mask_ops as amg
from tests.test_masks import random_masks


def test_point_grids_match_reference():
    np.testing.assert_allclose(amg.build_point_grid(5), reference.build_point_grid(5))
    ours = amg.build_all_layer_point_grids(32, 2, 2)
    theirs = reference.build_all_layer_point_grids(32, 2, 2)
    assert [g.shape for g in ours] == [(1024, 2), (256, 2), (64, 2)]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b)


@pytest.mark.parametrize("size", [(480, 640), (1000, 700), (37, 53)])
@pytest.mark.parametrize("n_layers", [0, 1, 2])
def test_crop_boxes_match_reference(size, n_layers):
    ours = amg.generate_crop_boxes(size, n_layers, 512 / 1500)
    assert ours == reference.generate_crop_boxes(size, n_layers, 512 / 1500)


def test_stability_matches_reference():
    logits = torch.randn(5, 40, 30, generator=torch.Generator().manual_seed(0)) * 3
    torch.testing.assert_close(
        amg.calculate_stability_score(logits, 0.0, 1.0),
        reference.calculate_stability_score(logits, 0.0, 1.0),
    )


def test_crop_geometry_matches_reference():
    boxes = torch.tensor([[0, 0, 10, 10], [5, 5, 95, 60], [30, 2, 50, 40]])
    crop, orig = [100, 50, 200, 120], [0, 0, 200, 300]
    assert torch.equal(
        amg.is_box_near_crop_edge(boxes, crop, orig),
        reference.is_box_near_crop_edge(boxes, crop, orig),
    )
    assert torch.equal(amg.uncrop_boxes_xyxy(boxes, crop), reference.uncrop_boxes_xyxy(boxes, crop))
    points = torch.tensor([[1.5, 2.0], [3.0, 4.0]], dtype=torch.float64)
    assert torch.equal(amg.uncrop_points(points, crop), reference.uncrop_points(points, crop))
    masks = random_masks(h=70, w=100)
    assert torch.equal(
        amg.uncrop_masks(masks, crop, 300, 200), reference.uncrop_masks(masks, crop, 300, 200)
    )


def test_mask_data_filters_and_concatenates_every_column():
    data = amg.MaskData(scores=torch.arange(4.0), ids=np.arange(4), names=["a", "b", "c", "d"])
    data.filter(torch.tensor([True, False, True, True]))
    assert data["scores"].tolist() == [0.0, 2.0, 3.0]
    assert data["ids"].tolist() == [0, 2, 3]
    assert data["names"] == ["a", "c", "d"]
    data.filter(torch.tensor([2, 0]))
    assert data["names"] == ["d", "a"] and data["ids"].tolist() == [3, 0]
    data.cat(amg.MaskData(scores=torch.tensor([9.0]), ids=np.array([9]), names=["z"]))
    assert len(data) == 3 and data["names"] == ["d", "a", "z"]
    data.to_numpy()
    assert isinstance(data["scores"], np.ndarray)
    with pytest.raises(TypeError):
        amg.MaskData(bad=3)


def test_batch_iterator():
    batches = list(amg.batch_iterator(2, np.arange(5), list("abcde")))
    assert [b[1] for b in batches] == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError):
        list(amg.batch_iterator(2, [1, 2], [1]))


def test_remove_small_regions_fills_holes_and_drops_islands():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5:7, 5:7] = False  # a 4-pixel hole
    mask[15, 15] = mask[16, 16] = True  # a 2-pixel island, joined only diagonally
    filled, changed = amg.remove_small_regions(mask, 5, "holes")
    assert changed and filled[2:12, 2:12].all() and filled[15, 15]
    cleaned, changed = amg.remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[15:, 15:].any() and cleaned[2:12, 2:12].all()
    # 8-connectivity: the diagonal pair is one 2-pixel island, kept at a threshold of 2.
    kept, changed = amg.remove_small_regions(mask, 2, "islands")
    assert not changed and kept is mask
    # Every island small: the largest is kept.
    dots = np.zeros((10, 10), dtype=bool)
    dots[1, 1] = True
    dots[5:7, 5] = True
    largest, changed = amg.remove_small_regions(dots, 50, "islands")
    assert changed and largest.sum() == 2 and largest[5:7, 5].all()
    with pytest.raises(ValueError):
        amg.remove_small_regions(mask, 5, "edges")
