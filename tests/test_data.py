import json
import logging

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sam.train.data import CocoDataset, SA1BDataset, SceneDataset


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _square(top: int, left: int, side: int, shape=(20, 30)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _write_sa1b(folder, name, annotations, with_image=True):
    if with_image:
        Image.fromarray(np.full((20, 30, 3), 100, np.uint8)).save(folder / f"{name}.jpg")
    record = {"image": {"file_name": f"{name}.jpg", "height": 20, "width": 30}}
    record["annotations"] = annotations
    (folder / f"{name}.json").write_text(json.dumps(record))


def test_sa1b_reads_rle_masks(tmp_path):
    good = _square(2, 3, 5)
    _write_sa1b(tmp_path, "a", [{"id": 1, "segmentation": _rle(good)}])
    samples = list(SA1BDataset(tmp_path))
    assert len(samples) == 1
    assert samples[0].image.shape == (20, 30, 3) and samples[0].image.dtype == np.uint8
    np.testing.assert_array_equal(samples[0].masks[0], good)


def test_sa1b_skips_bad_data_with_warnings(tmp_path, caplog):
    good = _square(2, 3, 5)
    bad = [
        {"id": 7, "segmentation": {"size": [20, 30], "counts": "%%%garbage"}},
        {"id": 8, "segmentation": _rle(np.zeros((20, 30), bool))},
        {"id": 9, "segmentation": _rle(np.ones((20, 30), bool))},
        {"id": 10, "segmentation": _rle(good)},
    ]
    _write_sa1b(tmp_path, "a", bad)
    _write_sa1b(tmp_path, "b", [{"id": 1, "segmentation": _rle(good)}], with_image=False)
    with caplog.at_level(logging.WARNING):
        samples = list(SA1BDataset(tmp_path))
    assert len(samples) == 1 and len(samples[0].masks) == 1
    text = caplog.text
    assert "b.jpg" in text  # missing image named
    assert "annotation 7" in text and "undecodable" in text
    assert "annotation 8" in text and "empty" in text
    assert "annotation 9" in text and "whole image" in text


def test_coco_polygons_and_rle(tmp_path, caplog):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
    square = _square(4, 4, 6)
    data = {
        "images": [
            {"id": 1, "file_name": "x.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "missing.png", "height": 20, "width": 30},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]},
            {"id": 12, "image_id": 1, "segmentation": _rle(square)},
            {"id": 13, "image_id": 1, "segmentation": [[1, 1, 1, 1, 1, 1]]},  # empty
            {"id": 14, "image_id": 2, "segmentation": _rle(square)},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        samples = list(CocoDataset(tmp_path / "ann.json", tmp_path))
    assert len(samples) == 1 and len(samples[0].masks) == 2
    polygon = samples[0].masks[0]
    assert polygon[8, 8] and not polygon[0, 0] and polygon.sum() > 50
    np.testing.assert_array_equal(samples[0].masks[1], square)
    assert "missing.png" in caplog.text and "annotation 13" in caplog.text


def test_scene_dataset_yields_masks():
    samples = list(SceneDataset(seed=0, count=2, size=64))
    assert len(samples) == 2
    for sample in samples:
        assert sample.image.shape == (64, 64, 3)
        assert all(m.shape == (64, 64) and m.dtype == bool and m.any() for m in sample.masks)


def test_scene_loader_matches_scene_dataset_with_and_without_workers():
    from sam.train.data import scene_loader

    expected = list(SceneDataset(seed=5, count=7, size=64))
    for workers in (0, 2):
        groups = list(scene_loader(5, 7, images_per_step=3, num_workers=workers, size=64))
        assert [len(g) for g in groups] == [3, 3, 1]
        flat = [sample for group in groups for sample in group]
        assert [s.source for s in flat] == [s.source for s in expected]
        for got, want in zip(flat, expected, strict=True):
            np.testing.assert_array_equal(got.image, want.image)
            assert len(got.masks) == len(want.masks)
            for a, b in zip(got.masks, want.masks, strict=True):
                np.testing.assert_array_equal(a, b)


def test_training_imports_need_no_pycocotools():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('pycocotools', 'segment_anything', 'open_clip', 'gradio'):\n"
        "    sys.modules[name] = None\n"
        "import sam, sam.evaluate, sam.train.demo, sam.train.trainer, sam.train.data\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
