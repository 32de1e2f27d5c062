"""Zero-shot tasks: edge detection, object proposals and instance segmentation from boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam import SamPredictor
from sam.tasks.edges import detect_edges, edge_nms, sobel_magnitude
from sam.tasks.instances import segment_boxes
from sam.tasks.proposals import generate_proposals


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((48, 64, 3), 40, dtype=np.uint8)
    image[10:30, 15:45] = 200
    return (image + rng.integers(0, 20, image.shape)).astype(np.uint8)


def test_sobel_finds_a_step():
    step = torch.zeros(1, 8, 10)
    step[:, :, 5:] = 1.0
    magnitude = sobel_magnitude(step)[0]
    assert torch.allclose(magnitude[:, 4:6], torch.full((8, 2), 4.0))
    assert magnitude[:, :3].abs().max() == 0 and magnitude[:, 7:].abs().max() == 0


def test_edge_nms_thins_a_blurred_line():
    ys = np.arange(40, dtype=np.float64)[:, None]
    ridge = np.exp(-((ys - 20.3) ** 2) / 8.0) * np.ones((1, 50))
    thinned = edge_nms(ridge)
    columns = (thinned[:, 5:45] > 0).sum(axis=0)
    assert columns.max() <= 2 and columns.min() >= 1
    assert np.all(np.abs(np.argmax(thinned[:, 5:45], axis=0) - 20) <= 1)


def test_edge_nms_keeps_a_thin_ring_around_a_disc():
    ys, xs = np.mgrid[:64, :64]
    radius = np.hypot(ys - 31.5, xs - 31.5)
    probability = torch.sigmoid(torch.as_tensor(20.0 - radius, dtype=torch.float32))[None]
    edges = sobel_magnitude(probability)[0].numpy().astype(np.float64)
    thinned = edge_nms(edges / edges.max())
    on_ring = thinned > 0.2
    assert np.all(np.abs(radius[on_ring] - 20.0) < 1.5)
    assert on_ring.sum() < 0.6 * (edges > 0.2 * edges.max()).sum()
    assert on_ring.sum() > 2 * np.pi * 20 * 0.8  # the whole circle survives


def test_detect_edges(tiny_sam, image):
    thick = detect_edges(tiny_sam, image, points_per_side=4, thin=False)
    edges = detect_edges(tiny_sam, image, points_per_side=4)
    for edge_map in (thick, edges):
        assert edge_map.shape == (48, 64) and edge_map.dtype == np.float32
        assert edge_map.min() >= 0 and edge_map.max() == pytest.approx(1.0)
    assert (edges > 0).sum() < (thick > 0).sum()
    assert np.all(edges <= thick)


def test_proposals_are_ranked_and_capped(tiny_sam, image):
    proposals = generate_proposals(tiny_sam, image, top_k=5, points_per_side=8)
    assert 0 < len(proposals) <= 5
    scores = [p["score"] for p in proposals]
    assert scores == sorted(scores, reverse=True)
    for proposal in proposals:
        expected = (proposal["predicted_iou"] + proposal["stability_score"]) / 2
        assert proposal["score"] == pytest.approx(expected)
        assert proposal["area"] > 0 and isinstance(proposal["segmentation"]["counts"], str)


def test_instances_from_boxes_load_as_coco_results(tiny_sam, image):
    boxes = np.array([[10, 5, 50, 35], [0, 0, 63, 47], [30, 20, 40, 30]], dtype=np.float64)
    results = segment_boxes(tiny_sam, image, boxes, [0.9, 0.5, 0.7], [1, 3, 1], image_id=4)
    assert [r["category_id"] for r in results] == [1, 3, 1]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.5, 0.7])

    predictor = SamPredictor(tiny_sam)
    predictor.set_image(image)
    expected, _, _ = predictor.predict(box=boxes[0], multimask_output=False)
    np.testing.assert_array_equal(mask_utils.decode(results[0]["segmentation"]), expected[0])

    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": 4, "height": 48, "width": 64}],
        "annotations": [],
        "categories": [{"id": 1, "name": "a"}, {"id": 3, "name": "b"}],
    }
    ground_truth.createIndex()
    detections = ground_truth.loadRes(results)
    assert len(detections.getAnnIds(imgIds=[4])) == 3
    with pytest.raises(ValueError, match="same length"):
        segment_boxes(tiny_sam, image, boxes, [0.9], [1], image_id=4)
