"""The page's upload limit, in the app's words (prompts/upload_guard.py): the message for a file
over it, and the guard's event that says it once."""

from __future__ import annotations

import types

import gradio as gr
import pytest

from prompts.upload_guard import refuse_too_big, size_text, too_big_message, upload_guard

LIMIT = 25 * 2**20


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (26 * 2**20, "26 MB"),
        (int(25.3 * 2**20), "25.3 MB"),
        (25 * 2**20 + 1, "25.1 MB"),  # just over the limit: not said to be the limit's size
        (900 * 2**10, "900 KB"),
        (10, "1 KB"),
    ],
)
def test_sizes_are_said_as_a_person_reads_them(size, text):
    assert size_text(size) == text


def test_the_message_names_the_file_its_size_the_limit_and_what_to_do():
    message = too_big_message("holiday.jpg", 31 * 2**20, LIMIT)
    assert message == "'holiday.jpg' is 31 MB; the limit is 25 MB: pick a smaller or resized image."
    assert too_big_message("a/b/x.png", None, LIMIT).startswith(
        "'x.png' is over the limit of 25 MB"
    )
    long = too_big_message("n" * 500 + ".png", LIMIT + 1, LIMIT)
    assert len(long) < 150 and "…" in long


def test_the_guard_event_warns_once_in_the_apps_words():
    refuse = refuse_too_big(LIMIT)
    with pytest.warns(UserWarning) as shown:
        assert refuse(types.SimpleNamespace(_data={"name": "big.png", "size": 26 * 2**20})) is None
    assert [str(w.message) for w in shown] == [too_big_message("big.png", 26 * 2**20, LIMIT)]
    with pytest.warns(UserWarning, match="over the limit of 25 MB"):  # malformed: still one message
        refuse(types.SimpleNamespace(_data={"size": "lots"}))


def test_the_guard_holds_the_limit_and_the_drop_targets():
    with gr.Blocks():
        guard = upload_guard(LIMIT, drops={"instant": "upload-another"})
    assert guard.value == {"limit": LIMIT, "drops": {"instant": "upload-another"}}
    assert "too_big" in guard.js_on_load and callable(guard.too_big)
