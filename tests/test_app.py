"""The page: it builds (also when its model falls back), wraps unreadable uploads so that they
reach the handler, and launches from the command line with its upload limit."""

from __future__ import annotations

import shlex

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from sam import CheckpointError, save_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_page_builds(tiny_checkpoint):
    page = app.build_demo(tiny_checkpoint, device="cpu")
    assert isinstance(page, gr.Blocks)
    # per-person state expires: gradio drops it after this long without activity
    states = [b for b in page.blocks.values() if isinstance(b, gr.State)]
    assert states and all(s.time_to_live == app.SESSION_TTL_S for s in states)


def test_page_builds_with_a_fallback_model():
    def offline(name, **_):
        raise CheckpointError(f"could not get {name}: offline")

    demo = app.build_demo("vit_b", loader=offline)
    assert isinstance(demo, gr.Blocks)


def test_unreadable_uploads_reach_the_handler(tmp_path, image_file):
    from gradio.data_classes import FileData

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    component = app.tolerate_unreadable(gr.Image(type="filepath", image_mode=None))
    assert component.preprocess(FileData(path=str(broken), orig_name="broken.png")) == str(broken)
    assert component.preprocess(FileData(path=image_file, orig_name="photo.png")) == image_file
    assert component.preprocess(None) is None


def test_command_line():
    args = app.parse_args([])
    assert (args.model, args.device, args.precision, args.share) == ("vit_b", None, "auto", False)
    command = "--model m.safetensors --device cpu --precision fp32 --host 0.0.0.0 --port 9 --share"
    args = app.parse_args(shlex.split(command))
    assert (args.model, args.device, args.precision) == ("m.safetensors", "cpu", "fp32")
    assert (args.host, args.port, args.share) == ("0.0.0.0", 9, True)
    with pytest.raises(SystemExit):
        app.parse_args(["--precision", "int4"])


def test_the_server_limits_upload_size(monkeypatch):
    launched = {}

    class Page:
        def launch(self, **options):
            launched.update(options)

    monkeypatch.setattr(app, "build_demo", lambda *_, **__: Page())
    app.main(["--model", "demo"])
    assert launched["max_file_size"] == app.MAX_FILE_SIZE == "25mb"
