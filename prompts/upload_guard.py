"""The page's uploads, checked in the browser before Gradio sends them.

Gradio refuses a file over ``launch(max_file_size=...)`` in the browser with its own generic
error, before the server hears of it. :func:`upload_guard`'s JavaScript
(``assets/page/upload_guard.js``) looks at every file chosen in the page's file inputs or dropped
on it first: one over the limit is stopped there (so nothing on the page changes) and its name and
size go to the server with the guard's ``too_big`` event, which :func:`refuse_too_big` answers
with the app's own warning. It also passes a file dropped on a drop target (the instant view),
or pasted while one is shown, to an upload button's input, as if chosen there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gradio as gr

SCRIPT = Path(__file__).resolve().parent.parent / "assets" / "page" / "upload_guard.js"
CSS = """
.sam-drop-over { outline: 3px dashed var(--color-accent); outline-offset: 4px; }
"""
NAME_SHOWN = 60  # characters of a file's name quoted back


def upload_guard(limit: int, drops: dict[str, str] | None = None, **kwargs) -> gr.HTML:
    """An invisible component whose script keeps files over ``limit`` bytes from being uploaded
    and sends a file dropped on an element of id ``key`` to the file input of the element of id
    ``drops[key]`` (an upload button). Its ``too_big`` event carries ``name`` and ``size``.
    ``kwargs`` go to ``gr.HTML``."""
    return gr.HTML(
        {"limit": int(limit), "drops": dict(drops or {})},
        html_template="",
        css_template=CSS,
        js_on_load=SCRIPT.read_text(),
        visible="hidden",  # rendered, so that its script runs, but not shown
        container=False,
        padding=False,
        **kwargs,
    )


def size_text(size: int) -> str:
    """A file size as the page says it: '31 MB', '25.3 MB', '900 KB'; rounded up, so that a
    file just over the limit is not said to be the limit's size."""
    if size < 2**20:
        return f"{max(1, math.ceil(size / 2**10))} KB"
    tenths = math.ceil(size * 10 / 2**20)
    return f"{tenths // 10} MB" if tenths % 10 == 0 else f"{tenths / 10:.1f} MB"


def too_big_message(name: str, size: int | None, limit: int) -> str:
    """What the page says about a file of ``size`` bytes (None: not known) over the upload
    ``limit``."""
    name = Path(str(name)).name or "the file"
    if len(name) > NAME_SHOWN:
        name = name[: NAME_SHOWN - 1] + "…"
    over = "over the limit of" if size is None else f"{size_text(size)}; the limit is"
    return f"'{name}' is {over} {size_text(limit)}: pick a smaller or resized image."


def refuse_too_big(limit: int) -> Callable[[gr.EventData], None]:
    """The guard's ``too_big`` event handler for a ``limit`` in bytes: one warning, nothing else
    changed (the file never left the browser)."""

    def refuse(event: gr.EventData) -> None:
        data = event._data if isinstance(event._data, dict) else {}
        try:
            size = int(data["size"])
        except (KeyError, TypeError, ValueError):
            size = None
        gr.Warning(too_big_message(str(data.get("name") or ""), size, limit))

    return refuse
