"""The `segment` endpoint through gradio_client, against the page served on 127.0.0.1: the
tiny random SAM with the bundled tiny CLIP (random weights until it is trained)."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
from sam import save_checkpoint


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_sam):
    folder = tmp_path_factory.mktemp("api")
    checkpoint = save_checkpoint(tiny_sam, folder / "tiny.safetensors")
    demo = app.build_demo(str(checkpoint), device="cpu")
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=None,  # a free port
        prevent_thread_lock=True,
        quiet=True,
        max_file_size=app.MAX_FILE_SIZE,
    )
    try:
        yield url, folder
    finally:
        demo.close()


def test_segment_endpoint(served):
    url, folder = served
    image = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "input.png")
    client = Client(url, verbose=False)
    masks, scores, message = client.predict(
        handle_file(str(folder / "input.png")),
        [[10, 12], [40, 30]],
        [1, 0],
        [2, 2, 50, 36],
        "",
        api_name="/segment",
    )
    assert len(masks) == 3 and len(scores) == 3 and message == ""
    assert scores == sorted(scores, reverse=True)
    assert [m["caption"] for m in masks] == [f"IoU {s:.2f}" for s in scores]
    mask = np.asarray(Image.open(masks[0]["image"]))
    assert mask.shape == (40, 56) and set(np.unique(mask)) <= {0, 255}


def test_segment_endpoint_reports_bad_prompts(served):
    url, folder = served
    Image.new("RGB", (20, 20)).save(folder / "small.png")
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="point_labels"):
        client.predict(
            handle_file(str(folder / "small.png")),
            [[1, 1]],
            [1, 1],
            None,
            "",
            api_name="/segment",
        )


def test_segment_endpoint_reports_unreadable_images(served):
    url, folder = served
    (folder / "broken.png").write_bytes(b"not an image")
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match=r"could not read 'broken\.png'"):
        client.predict(
            handle_file(str(folder / "broken.png")), [[1, 1]], [1], None, "", api_name="/segment"
        )


def test_segment_endpoint_with_text(served):
    url, folder = served
    image = np.random.default_rng(2).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "text.png")
    client = Client(url, verbose=False)
    # A positive click too, so there are masks whether or not the text is found.
    masks, scores, message = client.predict(
        handle_file(str(folder / "text.png")),
        [[20, 20]],
        [1],
        None,
        "red circle",
        api_name="/segment",
    )
    assert message.startswith(("Found", "Not found")) and "red circle" in message
    assert len(masks) == len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert all(" · CLIP " in m["caption"] for m in masks)
    with pytest.raises(Exception, match="text is empty"):
        client.predict(
            handle_file(str(folder / "text.png")), None, None, None, "  ", api_name="/segment"
        )
