"""The text and the person's own prompts, checked before anything runs."""

from __future__ import annotations

import numpy as np
import pytest

from prompts.clip_model import MAX_TEXT_CHARS
from prompts.text_results import clean_text, user_prompt_set


def test_clean_text_collapses_white_space_and_truncates():
    assert clean_text("  red \n circle ") == ("red circle", False)
    assert clean_text("x" * (MAX_TEXT_CHARS + 5)) == ("x" * MAX_TEXT_CHARS, True)
    with pytest.raises(ValueError, match="text is empty"):
        clean_text(" \t")
    with pytest.raises(ValueError, match="text must be a string"):
        clean_text(3)


def test_user_prompt_set_checks_and_converts():
    user = user_prompt_set([[1, 2], [3, 4]], [1, 0], [0, 0, 5, 5])
    assert user.source == "user" and user.point_coords.dtype == np.float32
    np.testing.assert_array_equal(user.point_labels, [1, 0])
    assert user.box.shape == (4,)
    empty = user_prompt_set(np.zeros((0, 2)), np.zeros(0), None)
    assert empty.point_coords is None and empty.point_labels is None and empty.box is None
    with pytest.raises(ValueError, match="points must be supplied"):
        user_prompt_set(None, [1], None)
    with pytest.raises(ValueError, match="labels must be 1"):
        user_prompt_set([[1, 2]], [-1], None)
