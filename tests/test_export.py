"""SA-1B JSON, COCO results, PNG masks and overlays load back with pycocotools and PIL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam.io import export as formats
from sam.io.masks import coco_encode_rle, mask_to_uncompressed_rle

HEIGHT, WIDTH = 30, 40


def _records(output_mode: str = "binary_mask") -> list[dict]:
    masks = np.zeros((3, HEIGHT, WIDTH), dtype=bool)
    masks[0, 2:10, 3:20] = True
    masks[1, 15:28, 5:9] = True
    masks[2, :, :] = True
    records = []
    for index, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        segmentation = {
            "binary_mask": mask,
            "uncompressed_rle": mask_to_uncompressed_rle(mask),
            "coco_rle": coco_encode_rle(mask_to_uncompressed_rle(mask)),
        }[output_mode]
        records.append(
            {
                "segmentation": segmentation,
                "area": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))],
                "predicted_iou": 0.9 - 0.1 * index,
                "point_coords": [[5.0 + index, 6.0]],
                "stability_score": 0.95,
                "crop_box": [0, 0, WIDTH, HEIGHT],
            }
        )
    return records


def _masks() -> np.ndarray:
    return np.stack([r["segmentation"] for r in _records()])


@pytest.mark.parametrize("output_mode", ["binary_mask", "uncompressed_rle", "coco_rle"])
def test_sa1b_json_loads_back(tmp_path, output_mode):
    payload = formats.to_sa1b(_records(output_mode), 7, "photo.jpg", HEIGHT, WIDTH)
    path = formats.write_json(tmp_path / "photo.json", payload)
    loaded = json.loads(path.read_text())
    assert loaded["image"] == {
        "image_id": 7,
        "width": WIDTH,
        "height": HEIGHT,
        "file_name": "photo.jpg",
    }
    annotations = loaded["annotations"]
    assert [a["id"] for a in annotations] == [0, 1, 2]
    assert set(annotations[0]) == {
        "id",
        "segmentation",
        "bbox",
        "area",
        "predicted_iou",
        "stability_score",
        "crop_box",
        "point_coords",
    }
    for annotation, mask in zip(annotations, _masks()):
        rle = annotation["segmentation"]
        assert rle["size"] == [HEIGHT, WIDTH] and isinstance(rle["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
        assert annotation["area"] == int(mask_utils.area(rle)) == int(mask.sum())
    assert not list(tmp_path.glob("*.partial"))


def test_coco_results_load_with_pycocotools(tmp_path):
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": 3, "height": HEIGHT, "width": WIDTH, "file_name": "a.png"}],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }
    ground_truth.createIndex()
    results = formats.to_coco_results(_records("coco_rle"), image_id=3)
    path = formats.write_json(tmp_path / "results.json", results)
    detections = ground_truth.loadRes(str(path))
    annotations = detections.loadAnns(detections.getAnnIds(imgIds=[3]))
    assert len(annotations) == 3
    assert [a["score"] for a in annotations] == pytest.approx([0.9, 0.8, 0.7])
    for annotation, mask in zip(annotations, _masks()):
        np.testing.assert_array_equal(detections.annToMask(annotation).astype(bool), mask)


def test_png_masks_and_overlay(tmp_path):
    records = _records("uncompressed_rle")
    paths = formats.save_mask_pngs(records, tmp_path / "masks")
    assert [p.name for p in paths] == ["0.png", "1.png", "2.png"]
    for path, mask in zip(paths, _masks()):
        loaded = np.array(Image.open(path))
        assert loaded.dtype == np.uint8 and set(np.unique(loaded)) <= {0, 255}
        np.testing.assert_array_equal(loaded > 0, mask)

    image = np.full((HEIGHT, WIDTH, 3), 10, dtype=np.uint8)
    blended = formats.overlay(image, records)
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert not np.array_equal(blended[5, 10], blended[20, 6])  # two masks, two colours
    assert np.array_equal(formats.overlay(image, records), blended)  # deterministic
    path = formats.save_overlay(tmp_path / "overlay.png", image, records)
    np.testing.assert_array_equal(np.array(Image.open(path)), blended)
    np.testing.assert_array_equal(formats.overlay(image, []), image)
