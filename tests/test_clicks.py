from __future__ import annotations

import numpy as np
import pytest

from prompts.clicks import BACKGROUND, FOREGROUND, MAX_POINTS, PromptState


def test_points_become_predictor_arguments():
    state = PromptState((40, 60)).add_point(10, 20).add_point(30.5, 5, BACKGROUND)
    args = state.predictor_args()
    np.testing.assert_array_equal(args["point_coords"], [[10, 20], [30.5, 5]])
    np.testing.assert_array_equal(args["point_labels"], [FOREGROUND, BACKGROUND])
    assert args["box"] is None and args["mask_input"] is None
    assert args["point_coords"].dtype == np.float32


def test_state_is_immutable():
    empty = PromptState((10, 10))
    one = empty.add_point(1, 1)
    assert empty.points == () and len(one.points) == 1
    with pytest.raises(AttributeError):
        one.points = ()  # type: ignore[misc]


def test_two_corners_make_a_box_in_any_order():
    started = PromptState((50, 50)).add_corner(40, 30)
    assert started.box is None and started.pending_corner == (40, 30)
    assert started.is_empty  # a lone corner is not a prompt yet
    done = started.add_corner(10, 45)
    assert done.box == (10, 30, 40, 45) and done.pending_corner is None
    np.testing.assert_array_equal(done.predictor_args()["box"], [10, 30, 40, 45])
    assert done.add_corner(1, 1).box is None  # a third click starts a new box


@pytest.mark.parametrize("second", [(5, 9), (9, 5)])
def test_zero_area_box_is_refused_and_keeps_the_first_corner(second):
    started = PromptState((20, 20)).add_point(3, 3).add_corner(5, 5)
    with pytest.raises(ValueError, match="zero area"):
        started.add_corner(*second)
    assert started.pending_corner == (5, 5) and len(started.points) == 1


@pytest.mark.parametrize("xy", [(-1, 5), (5, -0.5), (60, 5), (5, 40), (float("nan"), 1)])
def test_clicks_outside_the_image_are_refused(xy):
    state = PromptState((40, 60))
    with pytest.raises(ValueError, match=r"outside|finite"):
        state.add_point(*xy)
    with pytest.raises(ValueError, match=r"outside|finite"):
        state.add_corner(*xy)


def test_outside_message_names_the_image_size():
    with pytest.raises(ValueError, match="60x40"):
        PromptState((40, 60)).add_point(70, 1)


def test_bad_label_and_too_many_points():
    with pytest.raises(ValueError, match="label"):
        PromptState((5, 5)).add_point(1, 1, label=2)
    state = PromptState((100, 100))
    for i in range(MAX_POINTS):
        state = state.add_point(i % 100, i // 100)
    with pytest.raises(ValueError, match=f"at most {MAX_POINTS}"):
        state.add_point(0, 0)


def test_undo_removes_the_latest_edit_in_order():
    brush = np.ones((1, 256, 256), np.float32)
    state = (
        PromptState((30, 30)).add_point(1, 1).add_corner(2, 2).add_corner(9, 9).with_brush(brush)
    )
    state = state.with_logits(np.zeros((1, 256, 256), np.float32))
    state = state.undo()
    assert state.brush_input is None and state.logits is None and state.box == (2, 2, 9, 9)
    state = state.undo()
    assert state.box is None and state.pending_corner == (2, 2)
    state = state.undo().undo()
    assert state.points == () and state.corners == () and state.is_empty
    assert state.undo() == state


def test_clear_keeps_the_image_size():
    state = PromptState((7, 8)).add_point(1, 1).add_corner(2, 2)
    assert state.clear() == PromptState((7, 8))


def test_refinement_logits_take_precedence_over_the_brush():
    brush = np.full((1, 256, 256), -1.0, np.float32)
    logits = np.full((1, 256, 256), 2.0, np.float32)
    state = PromptState((10, 10)).with_brush(brush)
    assert not state.is_empty
    assert state.predictor_args()["mask_input"] is brush
    assert state.with_logits(logits).predictor_args()["mask_input"] is logits


def test_arguments_are_accepted_by_the_predictor(tiny_sam):
    from sam import SamPredictor

    predictor = SamPredictor(tiny_sam)
    predictor.set_image(np.zeros((40, 60, 3), np.uint8))
    state = PromptState((40, 60)).add_point(10, 20).add_point(50, 30, BACKGROUND)
    state = state.add_corner(5, 5).add_corner(40, 35)
    candidates = predictor.predict_ranked(**state.predictor_args())
    refined = predictor.predict_ranked(
        **state.with_logits(candidates[0].low_res_logits).predictor_args()
    )
    assert len(refined) == 3 and refined[0].mask.shape == (40, 60)


def test_text_prompts_stack_and_undo():
    state = PromptState((20, 20)).add_point(3, 3)
    assert state.text is None
    texts = state.with_text("  red \n circle ").with_text("blue square")
    assert texts.text == "blue square" and not texts.is_empty
    assert texts.undo().text == "red circle" and texts.undo().undo().text is None
    assert PromptState((5, 5)).with_text("cat").predictor_args()["point_coords"] is None
    assert texts.clear().text is None
    with pytest.raises(ValueError, match="the text is empty"):
        state.with_text(" \t ")
    assert len(state.with_text("x" * 5000).text) == 1000
