"""``python -m sam``: round trip with a tiny saved model, reruns, bad images and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam import save_checkpoint
from sam.cli import main

RELAXED = ["--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--points-per-side", "4"]


@pytest.fixture(scope="module")
def checkpoint(tiny_sam, tmp_path_factory):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(folder / "b.jpg")
    return folder


def _run(checkpoint, *args: str) -> int:
    return main([*args, "--model", checkpoint, "--device", "cpu", "--precision", "fp32"])


def test_everything_round_trip_and_rerun(checkpoint, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = _run(checkpoint, "everything", str(images), "--out", str(out), *RELAXED)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]
    result = json.loads((out / "a.json").read_text())
    assert result["image"] == {"image_id": 0, "width": 64, "height": 48, "file_name": "a.png"}
    assert result["annotations"]
    for annotation in result["annotations"]:
        mask = mask_utils.decode(annotation["segmentation"])
        assert mask.shape == (48, 64) and int(mask.sum()) == annotation["area"]
    assert json.loads((out / "b.json").read_text())["image"]["image_id"] == 1

    # A rerun skips what is done; --overwrite redoes it.
    before = (out / "a.json").stat().st_mtime_ns
    assert _run(checkpoint, "everything", str(images), "--out", str(out), *RELAXED) == 0
    assert "skipping 2 image(s)" in capsys.readouterr().out
    assert (out / "a.json").stat().st_mtime_ns == before
    args = ["everything", str(images / "*.png"), "--out", str(out), "--overwrite", *RELAXED]
    assert _run(checkpoint, *args, "--save-masks", "--save-overlay") == 0
    assert (out / "a.json").stat().st_mtime_ns != before
    assert (out / "a_overlay.png").is_file()
    assert len(list((out / "a").glob("*.png"))) == len(result["annotations"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "corrupt.jpg",
            b"\xff\xd8 definitely not a jpeg",
            "could not read 'corrupt.jpg' as an image",
        ),
        ("empty.png", b"", "could not read 'empty.png': the file is empty"),
        ("dot.png", None, "image refused: 1x1 is too small"),
    ],
)
def test_bad_image_is_reported_and_skipped(
    checkpoint, images, tmp_path, capsys, name, content, message
):
    bad = images / name
    if content is None:
        Image.new("RGB", (1, 1)).save(bad)
    else:
        bad.write_bytes(content)
    out = tmp_path / "out"
    code = _run(checkpoint, "everything", str(images), "--out", str(out), *RELAXED, "--quiet")
    captured = capsys.readouterr()
    assert code == 1
    assert f"error: {bad.resolve()}: {message}" in captured.err
    assert "2 image(s) done, 0 skipped, 1 failed" in captured.out
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "b.json"]


def test_segment_with_points_and_box(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    args = ["segment", str(images / "a.png"), "--out", str(out), "--points", "10,20;30,5,0"]
    assert _run(checkpoint, *args, "--box", "0,0,40,30") == 0
    annotations = json.loads((out / "a.json").read_text())["annotations"]
    assert len(annotations) == 1
    assert annotations[0]["point_coords"] == [[10.0, 20.0], [30.0, 5.0]]
    assert mask_utils.decode(annotations[0]["segmentation"]).shape == (48, 64)


def test_edges_and_proposals(checkpoint, images, tmp_path):
    out = tmp_path / "out"
    args = ["edges", str(images / "a.png"), "--out", str(out), "--points-per-side", "4"]
    assert _run(checkpoint, *args) == 0
    edge_map = np.array(Image.open(out / "a_edges.png"))
    assert edge_map.shape == (48, 64) and edge_map.dtype == np.uint8 and edge_map.max() == 255
    args = ["proposals", str(images / "a.png"), "--out", str(out), "--points-per-side", "4"]
    assert _run(checkpoint, *args, "--top-k", "3") == 0
    results = json.loads((out / "a.json").read_text())
    assert 0 < len(results) <= 3
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert mask_utils.decode(results[0]["segmentation"]).shape == (48, 64)


def test_instances_from_coco_detections(checkpoint, tmp_path, capsys):
    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(folder / "0139.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "7.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "cat.png")
    detections = [
        {"image_id": 139, "bbox": [2, 3, 20, 10], "score": 0.9, "category_id": 18},
        {"image_id": 139, "bbox": [30, 20, 30, 25], "score": 0.4, "category_id": 1},
        {"image_id": 5, "bbox": [0, 0, 5, 5], "score": 0.5, "category_id": 1},  # no such file
    ]
    (tmp_path / "dets.json").write_text(json.dumps(detections))
    out = tmp_path / "out"
    args = ["instances", str(folder), "--detections", str(tmp_path / "dets.json")]
    assert _run(checkpoint, *args, "--out", str(out), "--quiet") == 1  # cat.png has no id
    assert "cat.png: no detections for this image" in capsys.readouterr().err
    results = json.loads((out / "0139.json").read_text())
    assert [(r["image_id"], r["category_id"], r["score"]) for r in results] == [
        (139, 18, 0.9),
        (139, 1, 0.4),
    ]
    # The results load into pycocotools as they would for COCOeval.
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": [{"id": 139, "height": 48, "width": 64}], "categories": []}
    coco.createIndex()
    loaded = coco.loadRes(results)
    assert len(loaded.anns) == 2
    assert all(loaded.annToMask(a).shape == (48, 64) for a in loaded.anns.values())
    assert json.loads((out / "7.json").read_text()) == []  # an image with no boxes
    assert not (out / "cat.json").exists()


def test_evaluate_on_generated_scenes(checkpoint, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["evaluate", "--scenes", "2", "--num-points", "3", "--out", str(out), "--quiet"]
    assert _run(checkpoint, *args) == 0
    printed = capsys.readouterr().out
    assert "| scenes_held_out |" in printed
    result = json.loads((out / "scenes_held_out.json").read_text())
    assert result["num_masks"] > 0 and len(result["interactive"]) == 3
    assert all(0.0 <= result[k] <= 1.0 for k in ("center_oracle", "center_top", "box"))
    assert result["center_oracle"] >= result["center_top"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["everything", "no/such/file.png"], "no such file, folder or pattern"),
        (["everything", "nothing-*.png"], "no images found in nothing-*.png"),
        (["segment", "IMAGES"], "segment needs --points and/or --box"),
        (["segment", "IMAGES", "--points", "1,2,3"], "--points: expected x,y or x,y,label"),
        (["segment", "IMAGES", "--box", "5,5,1,1"], "--box: expected x0,y0,x1,y1"),
        (["instances", "IMAGES", "--detections", "IMAGES"], "--detections: cannot read"),
    ],
)
def test_usage_errors(checkpoint, images, capsys, args, message):
    args = [str(images) if a == "IMAGES" else a for a in args]
    assert _run(checkpoint, *args) == 2
    assert message in capsys.readouterr().err


def test_bad_model_is_a_usage_error(images, tmp_path, capsys):
    code = main(["everything", str(images), "--model", str(tmp_path / "missing.safetensors")])
    assert code == 2
    assert "could not load model" in capsys.readouterr().err


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "sam", "everything", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--points-per-side" in result.stdout and "SA-1B" in result.stdout


def test_without_model_the_suggested_one_loads(images, monkeypatch, capsys):
    from sam.weights import checkpoint

    asked = []

    def load_sam(name, **kwargs):
        asked.append(name)
        raise checkpoint.CheckpointError("not fetched in this test")

    monkeypatch.setattr(checkpoint, "load_sam", load_sam)
    assert main(["everything", str(images), "--device", "cpu"]) == 2
    assert asked == ["sam2.1_tiny"]  # the fastest on a CPU
    assert "could not load model 'sam2.1_tiny'" in capsys.readouterr().err
