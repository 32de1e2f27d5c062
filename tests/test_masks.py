"""sam.io.masks: boxes and RLE against segment_anything.utils.amg, IoU and single-mask boxes."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.utils import amg as reference

from sam.io import masks as masks_io


def random_masks(n: int = 6, h: int = 23, w: int = 31, seed: int = 0) -> torch.Tensor:
    """(n, h, w) bool: an empty mask, a full one, a rectangle, the rest random pixels."""
    rng = np.random.default_rng(seed)
    masks = torch.as_tensor(rng.random((n, h, w)) > 0.7)
    masks[0] = False  # empty
    masks[1] = True  # full
    masks[2, 5:9, 3:20] = True
    return masks


def test_boxes_match_reference():
    masks = random_masks()
    assert torch.equal(masks_io.batched_mask_to_box(masks), reference.batched_mask_to_box(masks))
    stacked = masks.reshape(2, 3, *masks.shape[1:])
    assert torch.equal(
        masks_io.batched_mask_to_box(stacked), reference.batched_mask_to_box(stacked)
    )
    assert masks_io.batched_mask_to_box(masks[:0]).shape == (0, 4)
    logits = torch.randn(5, 40, 30, generator=torch.Generator().manual_seed(1))
    for threshold in (0.5, 2.5, 10.0):
        assert torch.equal(
            masks_io.batched_logits_to_box(logits, threshold),
            reference.batched_mask_to_box(logits > threshold),
        )


def test_xyxy_to_xywh():
    box = torch.tensor([3, 4, 10, 20])
    assert masks_io.box_xyxy_to_xywh(box).tolist() == [3, 4, 7, 16]
    assert masks_io.box_xyxy_to_xywh(box.numpy()).tolist() == [3, 4, 7, 16]


def test_rle_round_trips_and_matches_reference():
    masks = random_masks()
    reference_rles = reference.mask_to_rle_pytorch(masks)
    for mask, compressed, uncompressed in zip(masks, masks_io.masks_to_rle(masks), reference_rles):
        assert masks_io.mask_to_uncompressed_rle(mask.numpy()) == uncompressed
        assert masks_io.coco_encode_rle(compressed) == reference.coco_encode_rle(uncompressed)
        for rle in (compressed, uncompressed, masks_io.coco_encode_rle(compressed)):
            np.testing.assert_array_equal(masks_io.rle_to_mask(rle), mask.numpy())
            assert masks_io.area_from_rle(rle) == reference.area_from_rle(uncompressed)
    assert masks_io.masks_to_rle(masks[:0]) == []


def test_mask_iou_and_empty_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert masks_io.mask_iou(a, b) == 1.0  # two empty masks agree
    a[:2] = True
    assert masks_io.mask_iou(a, b) == 0.0
    b[1:3] = True
    assert masks_io.mask_iou(a, b) == 4 / 12


def test_mask_box_is_the_extent():
    mask = np.zeros((10, 10), bool)
    mask[2:8, 1:9] = True
    np.testing.assert_array_equal(masks_io.mask_box(mask), [1, 2, 8, 7])
    assert masks_io.mask_box(mask).dtype == np.float32
    np.testing.assert_array_equal(masks_io.mask_box(torch.as_tensor(mask)), [1, 2, 8, 7])
    assert masks_io.mask_box(np.zeros((3, 3), bool)) is None
