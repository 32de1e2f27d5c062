"""The page's instant mode (:mod:`prompts.instant`): what the in-browser view shows after each
event, the clicks it decoded (replayed on the server, which keeps the low-res logits for
refinement and export), and the switch between it and the server's clickable image. While the
view is shown, the server's image (and its upload box) is hidden: an upload button beside the
view takes the next image."""

from __future__ import annotations

import logging

import gradio as gr

from prompts.instant import instant_value, read_click
from prompts.objects import object_colour
from prompts.page_handlers import CLICK_MODES, Handlers, friendly, session_views
from prompts.render import draw_canvas
from prompts.session import Session

log = logging.getLogger("sam.app")


def instant_state(session: Session | None, mode: str, enabled: bool) -> tuple:
    """(instant view's value, server image's visibility, upload button's visibility; the two
    visibilities are skips when off): the view shows the active object's prompts over the
    other objects when instant mode is on and can serve this object (not for text prompts);
    the server's clickable image otherwise."""
    value = _value(session, mode) if enabled else None
    if not enabled:  # the image stays as it is: updating it would re-render it under a click
        return value, gr.skip(), gr.skip()
    return (value, *_shown(value is not None))


def instant_switch(session: Session | None, mode: str, enabled: bool) -> tuple:
    """The instant-mode checkbox: :func:`instant_state`, the server's image shown when off."""
    value = _value(session, mode) if enabled else None
    return (value, *_shown(value is not None))


def server_path() -> tuple:
    """The browser cannot run the decoder: instant mode off, the server's image back."""
    gr.Warning("Instant masks are off in this browser: clicks go to the server.")
    return gr.Checkbox(value=False), None, *_shown(False)


def _shown(instant: bool) -> tuple:
    """(server image, upload button): the image with its upload box, or the instant view's
    button for the next image."""
    return gr.Image(visible=not instant), gr.UploadButton(visible=instant)


def _value(session: Session | None, mode: str) -> dict | None:
    """The view's value for the session (None: the server path serves), see
    :func:`prompts.instant.instant_value`."""
    if session is None or session.image is None:
        return None
    others = [
        (o.mask, o.colour)
        for o in session.objects.on_image(session.image_id)
        if o.object_id != session.active_id
    ]
    shown = draw_canvas(session.image, others, None, None)
    try:
        return instant_value(
            session.predictor,
            shown,
            session.prompts,
            session.current_mask,
            mode=CLICK_MODES.get(mode, "foreground"),
            colour=object_colour(session.active_id),
        )
    except Exception:  # e.g. the decoder's export failed: the server path still works
        log.exception("instant mode could not serve this image")
        gr.Warning("Instant masks could not start: clicks go to the server.")
        return None


@friendly(Handlers.VIEWS)
def instant_click(session: Session | None, event: gr.EventData) -> tuple:
    """A click the browser decoded, replayed on the server: the same candidates, plus the
    low-res logits the next click and the downloads use."""
    if session is None or session.image is None:
        raise ValueError("upload an image first")
    click = read_click(event._data, session.image.shape[:2])
    session.click(click.x, click.y, click.mode)
    return session_views(session)
