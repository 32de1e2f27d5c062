"""The API through gradio_client, against the page served on 127.0.0.1 (the tiny random SAM,
the bundled tiny CLIP): ``/segment`` and ``/segment_objects``, and every bad input answered with
one clear error, the caller's session (``/upload`` then ``/click_at``) left intact."""

from __future__ import annotations

import logging

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
    options = app.launch_options(prevent_thread_lock=True, quiet=True)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, **options)
    try:
        yield url, folder
    finally:
        demo.close()


@pytest.fixture(scope="module")
def photo(served) -> str:
    _, folder = served
    image = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "input.png")
    return str(folder / "input.png")


def bad_files(folder) -> dict[str, tuple[str, str]]:
    """name -> (path, the message the person gets)."""
    (folder / "broken.png").write_bytes(b"not an image")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    Image.new("1", (9000, 9000)).save(folder / "bomb.png")  # 81 megapixels, a 10 kB file
    (folder / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(26 * 2**20))
    return {
        "broken": (str(folder / "broken.png"), r"Could not read 'broken\.png' as an image"),
        "dot": (str(folder / "dot.png"), r"1x1 is too small"),
        "bomb": (str(folder / "bomb.png"), r"has more than 40,000,000 pixels: scale it down"),
        "big": (str(folder / "big.png"), r"exceeds the maximum file size of 26214400 bytes"),
    }


def test_segment_endpoint(served, photo):
    url, _ = served
    client = Client(url, verbose=False)
    masks, scores, message = client.predict(
        handle_file(photo), [[10, 12], [40, 30]], [1, 0], [2, 2, 50, 36], "", api_name="/segment"
    )
    assert len(masks) == 3 and len(scores) == 3 and message == ""
    assert scores == sorted(scores, reverse=True)
    assert [m["caption"] for m in masks] == [f"IoU {s:.2f}" for s in scores]
    mask = np.asarray(Image.open(masks[0]["image"]))
    assert mask.shape == (40, 56) and set(np.unique(mask)) <= {0, 255}


def test_segment_endpoint_with_text(served, photo):
    url, _ = served
    client = Client(url, verbose=False)
    masks, scores, message = client.predict(
        handle_file(photo), [[20, 20]], [1], None, "red ellipse", api_name="/segment"
    )
    assert message.startswith(('Found "red ellipse"', '"red ellipse" was not found'))
    assert len(masks) == len(scores) == 3 and scores == sorted(scores, reverse=True)


def test_segment_objects_endpoint_takes_several_boxes(served, photo):
    url, _ = served
    client = Client(url, verbose=False)
    boxes = [[2, 2, 20, 20], [25, 5, 55, 39], [0, 0, 56, 40]]
    masks, scores, message = client.predict(
        handle_file(photo), boxes, None, None, api_name="/segment_objects"
    )
    assert len(masks) == len(scores) == 3 and message == "3 objects segmented."
    assert all(np.asarray(Image.open(m["image"])).shape == (40, 56) for m in masks)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (([[5000, 5000]], [1], None, ""), r"Click \(5000, 5000\) is outside the 56x40 image"),
        ((None, None, None, ""), r"No prompt: give points, a box or a text\."),
        (([[1, 1]], [1, 1], None, ""), r"1 points but 2 labels"),
        ((None, None, None, "  "), r"The text is empty"),
    ],
)
def test_segment_endpoint_refuses_bad_prompts_clearly(served, photo, caplog, prompts, message):
    url, _ = served
    client = Client(url, verbose=False)
    with caplog.at_level(logging.INFO), pytest.raises(Exception, match=message):
        client.predict(handle_file(photo), *prompts, api_name="/segment")
    assert "Traceback" not in caplog.text


def test_bad_files_get_a_clear_error_and_the_session_stays(served, photo):
    url, folder = served
    client = Client(url, verbose=False)
    model = str(folder / "tiny.safetensors")
    client.predict(handle_file(photo), model, api_name="/upload")
    before = client.predict(10, 12, "Foreground point", api_name="/click_at")
    assert len(before[1]["choices"]) == 3  # the candidate toggle
    for name, (path, message) in bad_files(folder).items():
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(path), [[1, 1]], [1], None, "", api_name="/segment")
        if name != "big":  # refused before it reaches the page's handler
            client.predict(handle_file(path), model, api_name="/upload")
    after = client.predict(30, 20, "Foreground point", api_name="/click_at")
    assert len(after[1]["choices"]) == 3 and after[2]["value"] == 1  # the same object, refined
