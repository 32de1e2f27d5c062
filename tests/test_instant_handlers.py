"""The page's instant mode (prompts/instant_handlers.py): the view's value after an event, with
the upload button for the next image while the view is shown; the switch back to the server's
image (also when the decoder cannot be had); a browser-decoded click replayed on the server."""

from __future__ import annotations

import types

import gradio as gr
import numpy as np
import pytest

from prompts import instant, instant_handlers
from prompts.instant_handlers import instant_click, instant_state, instant_switch, server_path
from prompts.session import Session
from sam import SamPredictor
from sam.io.masks import mask_to_uncompressed_rle

HEIGHT, WIDTH = 60, 80


@pytest.fixture
def session(tiny_sam, tmp_path, monkeypatch):
    monkeypatch.setattr(instant, "FILES", tmp_path / "instant_files")
    session = Session(SamPredictor(tiny_sam))
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    session.set_image(image)
    return session


def test_off_or_without_an_image_the_server_image_serves(session):
    value, image, button = instant_state(None, "Foreground point", True)
    assert value is None and image.visible is True and button.visible is False
    value, image, button = instant_state(session, "Foreground point", False)
    assert value is None and image == button == gr.skip()  # the image is left alone
    value, image, button = instant_switch(session, "Foreground point", False)
    assert value is None and image.visible is True and button.visible is False
    with pytest.warns(UserWarning, match="Instant masks are off in this browser"):
        switch, value, image, button = server_path()
    assert switch.value is False and value is None
    assert image.visible is True and button.visible is False


@pytest.mark.slow  # exports the decoder once (seconds)
def test_on_the_view_replaces_the_image_with_the_clicks_mode(session):
    session.click(40, 30, "foreground")
    value, image, button = instant_state(session, "Background point", True)
    assert value["mode"] == "background" and value["points"] == [[40.0, 30.0, 1]]
    assert value["mask"] is not None  # the current candidate, drawn before any hover
    assert image.visible is False and button.visible is True  # the next image: the button


def test_text_prompts_are_served_from_the_servers_image(session):
    session.prompts = session.prompts.with_text("red ellipse")  # as a text prompt leaves it
    value, image, button = instant_state(session, "Foreground point", True)
    assert value is None and image.visible is True and button.visible is False


def test_without_the_decoder_the_server_path_serves_and_says_so(session, monkeypatch):
    def failing(*_, **__):
        raise RuntimeError("the exporter is missing")

    monkeypatch.setattr(instant_handlers, "instant_value", failing)
    with pytest.warns(UserWarning, match="Instant masks could not start"):
        value, image, button = instant_state(session, "Foreground point", True)
    assert value is None and image.visible is True and button.visible is False


def test_a_browser_click_is_replayed_on_the_server(session):
    empty = mask_to_uncompressed_rle(np.zeros((HEIGHT, WIDTH), dtype=bool))
    data = {
        "click": {"x": 40, "y": 30, "mode": "foreground"},
        "points": [[40, 30, 1]],
        "corners": [],
        "size": [HEIGHT, WIDTH],
        "candidates": [{"index": i, "score": 0.5, "rle": empty} for i in range(3)],
    }
    views = instant_click(session, types.SimpleNamespace(_data=data))
    assert views[0] is session and len(views) == 7
    assert [(p.x, p.y, p.label) for p in session.prompts.points] == [(40, 30, 1)]
    assert len(session.candidates) == 3 and session.current_mask is not None
