"""A page of its own for the instant view (prompts/instant.py): one image, a click-mode radio,
and the clicks the browser sends kept for the tests and the browser benchmark to read."""

from __future__ import annotations

import gradio as gr
import numpy as np

from prompts.clicks import PromptState
from prompts.instant import MODES, InstantClick, instant_value, instant_view, read_click
from sam import SamPredictor


def build_instant_page(
    predictor: SamPredictor,
    image: np.ndarray,
    mask: np.ndarray | None = None,
    prompts: PromptState | None = None,
) -> tuple[gr.Blocks, list[InstantClick]]:
    """The page and the list each decoded click is appended to; ``mask``, the (H, W) bool mask
    of an object being refined, is shown until the first hover; ``prompts``, that object's
    prompts, are where the clicks (in every mode) go on from."""
    received: list[InstantClick] = []
    predictor.set_image(image)

    with gr.Blocks(title="Instant prompts") as page:
        view = instant_view(height=512, elem_id="instant")
        mode = gr.Radio(list(MODES), value="foreground", label="Click adds", elem_id="mode")
        status = gr.Textbox(label="Clicks received", elem_id="received")

        def show(mode: str) -> dict | None:
            return instant_value(predictor, image, prompts, mask=mask, mode=mode)

        def keep(event: gr.EventData) -> str:
            received.append(read_click(event._data, image.shape[:2]))
            return str(len(received))

        page.load(show, [mode], view)
        mode.input(show, [mode], view)
        view.mask(keep, None, status)
    return page, received
