"""``python -m prompts segment-text``: the text branch's mask written as the SAM command line
writes its masks, and bad input reported as usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from prompts.cli import main


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)).save(path)
    return path


def test_segment_text_writes_the_text_branch_mask(tmp_path):
    from prompts.model_shelf import load_text_model
    from sam import SamPredictor, load_sam
    from sam.train.scenes import generate_scene

    scene = generate_scene(np.random.default_rng((1, 3)), 128)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    caption = scene.objects[0].caption
    predictor = SamPredictor(load_sam("demo", device="cpu", precision="fp32"))
    expected = load_text_model("demo").prompter(predictor).segment(scene.image, caption)
    out = tmp_path / "out"
    args = ["segment-text", str(tmp_path / "scene.png"), caption, "--out", str(out)]
    code = main([*args, "--model", "demo", "--device", "cpu", "--precision", "fp32", "--quiet"])
    if expected.found:
        assert code == 0
        annotation = json.loads((out / "scene.json").read_text())["annotations"][0]
        assert np.array_equal(mask_utils.decode(annotation["segmentation"]), expected.best.mask)
        assert 0.0 < annotation["stability_score"] <= 1.0  # from the logits, not a 0/1 map
    else:
        assert code == 1 and not (out / "scene.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["IMAGE", "  "], "the text is empty"),
        (["IMAGE", "red circle", "--points", "1,2,3"], "--points: expected x,y or x,y,label"),
        (["IMAGE", "red circle", "--box", "5,5,1,1"], "--box: expected x0,y0,x1,y1"),
        (["no/such/file.png", "red circle"], "no such file, folder or pattern"),
    ],
)
def test_usage_errors(image, capsys, args, message):
    """Bad input is refused before any model is loaded (so none is named)."""
    args = [str(image) if a == "IMAGE" else a for a in args]
    code = main(["segment-text", *args, "--model", "no-model-needed", "--device", "cpu"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_help_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "prompts", "segment-text", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--points" in result.stdout and "red circle" in result.stdout
