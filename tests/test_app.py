"""The page: it builds (also when its model falls back, saying so in the menu and the notice),
with instant masks on unless asked otherwise, wraps unreadable uploads so that they reach the
handler, checks the upload limit in the browser as the server does, exposes only its two
documented endpoints, and launches from the command line with its limits (and as an MCP
server)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
from prompts.hub_access import HubAccess
from prompts.model_shelf import ModelShelf
from prompts.page_handlers import Handlers
from sam import CheckpointError, save_checkpoint
from tests.page_fixtures import hub_state_kept


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_sam):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(np.zeros((48, 64, 3), dtype=np.uint8)).save(path)
    return str(path)


def block(page: gr.Blocks, elem_id: str):
    (found,) = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == elem_id]
    return found


def test_page_builds(tiny_checkpoint):
    page = app.build_demo(tiny_checkpoint, device="cpu")
    assert isinstance(page, gr.Blocks)
    # per-person state expires: gradio drops it after this long without activity
    states = [b for b in page.blocks.values() if isinstance(b, gr.State)]
    assert states and all(s.time_to_live == app.SESSION_TTL_S for s in states)


def test_instant_masks_start_on_unless_asked_otherwise(tiny_checkpoint):
    assert block(app.build_demo(tiny_checkpoint, device="cpu"), "instant-mode").value is True
    page = app.build_demo(tiny_checkpoint, device="cpu", instant_masks=False)
    assert block(page, "instant-mode").value is False
    button = block(page, "upload-another")  # shown with the instant view only
    assert isinstance(button, gr.UploadButton) and button.visible is False
    (upload,) = [f for f in page.fns.values() if button._id in [t[0] for t in f.targets]]
    assert upload.fn.__name__ == "image" and not upload.preprocess


def test_the_browser_checks_the_servers_upload_limit(tiny_checkpoint):
    from gradio.utils import _parse_file_size

    page = app.build_demo(tiny_checkpoint, device="cpu")
    guard = block(page, "guard")
    assert guard.value["limit"] == app.MAX_FILE_SIZE == _parse_file_size("25mb")
    assert guard.value["drops"] == {"instant": "upload-another"}  # dropped on the view: uploaded
    assert "up to 25 MB" in app.LIMITS


def test_page_builds_with_a_fallback_model_and_says_which_serves(tiny_sam):
    def offline(name, **_):
        if name == "demo":
            return tiny_sam
        raise CheckpointError(f"could not get {name}: offline")

    shelf = ModelShelf(loader=offline)
    shelf.hub = HubAccess(probe=lambda url: False)
    with hub_state_kept():
        demo = app.build_demo(handlers=Handlers(shelf, "vit_b"))
    blocks = list(demo.blocks.values())
    (menu,) = [b for b in blocks if isinstance(b, gr.Dropdown) and b.elem_id == "model"]
    (notice,) = [b for b in blocks if getattr(b, "elem_id", None) == "model-notice"]
    assert menu.value == "demo" and "Serving **the bundled demo model**" in notice.value


def test_only_the_documented_endpoints_are_public(tiny_checkpoint):
    demo = app.build_demo(tiny_checkpoint, device="cpu")
    public = {f.api_name for f in demo.fns.values() if f.api_visibility == "public" and f.api_name}
    undocumented = {f.api_name for f in demo.fns.values() if f.api_visibility == "undocumented"}
    assert public == {"segment", "segment_objects"}
    assert {"upload", "click_at", "download"} <= undocumented
    limits = {f.api_name: f.concurrency_limit for f in demo.fns.values() if f.api_name}
    assert limits["segment"] == limits["click_at"] == app.CLICK_CONCURRENCY


def test_the_examples_name_texts_the_scenes_contain():
    from sam.train.scenes import generate_scene

    for name, text in app.TEXT_EXAMPLES:
        seed = int(name.removeprefix("shapes_").removesuffix(".png"))
        scene = generate_scene(np.random.default_rng(seed), 320)
        assert text in [o.caption for o in scene.objects]
    placeholder_text = app.TEXT_PLACEHOLDER.split('"')[1]
    assert placeholder_text in [text for _, text in app.TEXT_EXAMPLES]


def test_events_that_read_a_file_take_it_unprocessed(tiny_checkpoint):
    # Gradio's own reading would fail on a corrupt file before the handler could say so.
    demo = app.build_demo(tiny_checkpoint, device="cpu")
    readers = [f for f in demo.fns.values() if f.fn and f.fn.__name__ in ("image", "restore")]
    readers += [f for f in demo.fns.values() if f.api_name in ("segment", "segment_objects")]
    assert len(readers) >= 6 and not any(f.preprocess for f in readers)


class Launched:
    """A page that records what it was built and launched with, in place of the real one."""

    def __init__(self, monkeypatch) -> None:
        self.built, self.options = {}, {}
        monkeypatch.setattr(app, "build_demo", self.build)

    def build(self, *_, **options):
        self.built.update(options)
        return self

    def launch(self, **options):
        self.options.update(options)


def test_the_server_limits_upload_size(monkeypatch):
    launched = Launched(monkeypatch)
    app.main(["--model", "demo", "--mcp"])
    assert launched.options["max_file_size"] == app.MAX_FILE_SIZE == 25 * 2**20
    assert launched.options["mcp_server"] is True
    assert launched.options["state_session_capacity"] > 0
    assert "#model-notice" in launched.options["css"]
    assert "25 MB" in app.LIMITS and "40 megapixels" in app.LIMITS


def test_the_command_line_starts_with_instant_masks_unless_asked_otherwise(monkeypatch):
    launched = Launched(monkeypatch)
    app.main(["--model", "demo"])
    assert launched.built["instant_masks"] is True
    app.main(["--model", "demo", "--no-instant"])
    assert launched.built["instant_masks"] is False


def test_mcp_clients_see_the_segment_tools(tiny_checkpoint):
    import httpx

    demo = app.build_demo(tiny_checkpoint, device="cpu")
    options = app.launch_options(prevent_thread_lock=True, quiet=True, mcp_server=True)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, **options)
    try:
        tools = httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()
    finally:
        demo.close()
    assert {tool["name"] for tool in tools} == {"segment", "segment_objects"}
    (segment,) = [t for t in tools if t["name"] == "segment"]
    assert (
        "in pixels inside the image"
        in segment["inputSchema"]["properties"]["points"]["description"]
    )


@pytest.mark.slow
def test_offline_the_page_starts_in_seconds_with_the_demo_model(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    def free_port() -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    port, hub = free_port(), free_port()  # nothing listens on `hub`: the Hub is unreachable
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "GRADIO_SERVER_PORT")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{hub}", HF_HUB_CACHE=str(tmp_path / "hub"))
    root = Path(app.__file__).resolve().parent
    start = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--model", "vit_b", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while time.monotonic() - start < 60:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        started = time.monotonic() - start
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    print(f"started offline in {started:.1f} s")
    assert b"Segment Anything" in page and started < 30, (started, log)
    assert log.count("working offline") == 1 and "Retrying" not in log, log
