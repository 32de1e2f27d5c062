"""Accepted annotations exported as SA-1B, COCO and PNG masks load back with pycocotools."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from prompts.annotations import (
    AnnotatedImage,
    Annotation,
    coco_json_bytes,
    masks_zip_bytes,
    sa1b_files,
    sa1b_json,
)
from sam.io.masks import coco_encode_rle, mask_to_uncompressed_rle


def _mask(top: int, left: int, size: int = 5) -> np.ndarray:
    mask = np.zeros((20, 30), bool)
    mask[top : top + size, left : left + size] = True
    return mask


IMAGES = [AnnotatedImage(1, "a.png", 20, 30), AnnotatedImage(2, "b.png", 20, 30)]
MANUAL = Annotation.from_mask(1, 1, "cat/dog", _mask(2, 3), 0.91, ((4.0, 5.0),))
RECORD = {
    "segmentation": coco_encode_rle(mask_to_uncompressed_rle(_mask(10, 20, 4))),
    "predicted_iou": 0.8,
    "stability_score": 0.97,
    "point_coords": [[21.0, 11.0]],
}
AUTOMATIC = Annotation.from_record(2, 1, "object", RECORD)


def test_annotation_keeps_its_mask():
    np.testing.assert_array_equal(MANUAL.mask, _mask(2, 3))
    assert MANUAL.area == 25 and MANUAL.bbox == [3.0, 2.0, 5.0, 5.0]
    assert AUTOMATIC.source == "automatic" and AUTOMATIC.area == 16


def test_sa1b_layout_with_labels_and_sources():
    payload = sa1b_json(IMAGES[0], [MANUAL, AUTOMATIC])
    assert payload["image"] == {"image_id": 1, "width": 30, "height": 20, "file_name": "a.png"}
    manual, automatic = payload["annotations"]
    assert manual["stability_score"] is None and automatic["stability_score"] == 0.97
    assert manual["label"] == "cat/dog" and automatic["source"] == "automatic"
    assert manual["crop_box"] == [0.0, 0.0, 30.0, 20.0]
    assert manual["point_coords"] == [[4.0, 5.0]] and manual["predicted_iou"] == 0.91
    assert set(sa1b_files(IMAGES, [MANUAL, AUTOMATIC])) == {"sa1b_image1.json"}  # b has none


def test_coco_file_loads_with_pycocotools(tmp_path):
    path = tmp_path / "coco.json"
    path.write_bytes(coco_json_bytes(IMAGES, [MANUAL, AUTOMATIC]))
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat/dog", "object"]
    assert coco.getImgIds() == [1]
    first = coco.loadAnns([1])[0]
    np.testing.assert_array_equal(coco.annToMask(first).astype(bool), _mask(2, 3))
    assert json.loads(path.read_text())["annotations"][1]["category_id"] == 2


def test_masks_zip_holds_one_png_per_annotation():
    with zipfile.ZipFile(io.BytesIO(masks_zip_bytes([MANUAL, AUTOMATIC]))) as archive:
        assert archive.namelist() == ["0001_cat_dog.png", "0002_object.png"]
        png = np.array(Image.open(io.BytesIO(archive.read("0001_cat_dog.png"))))
    assert png.dtype == np.uint8 and set(np.unique(png)) == {0, 255}
    np.testing.assert_array_equal(png > 0, _mask(2, 3))
