"""One person's session: clicks, boxes and text turned into ranked candidates, refining the
current one, undo and clear, accepted annotations, segment everything and pre-filling (a tiny
random SAM and a tiny random CLIP; no Gradio)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from prompts.clip_model import create_random_clip
from prompts.session import Session
from prompts.text_prompter import TextModel
from sam import SamPredictor
from tests.page_fixtures import KEEP_ALL

IMAGE = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def random_clip():
    return create_random_clip(seed=0)


@pytest.fixture
def session(tiny_sam, random_clip):
    text_model = TextModel(random_clip, "untrained CLIP")
    session = Session(SamPredictor(tiny_sam), text_model=lambda: text_model)
    session.set_image(IMAGE, file_name="photo.png")
    return session


def captions(session) -> list[str]:
    return [caption for _, caption in session.gallery()]


def scores(session) -> list[float]:
    return [float(caption.split()[1]) for caption in captions(session)]


def test_clicks_give_three_ranked_candidates_and_refine_the_current_one(session):
    session.click(10, 20, "foreground")
    assert len(session.gallery()) == 3 and all(c.startswith("IoU ") for c in captions(session))
    assert scores(session) == sorted(scores(session), reverse=True)
    assert session.canvas().shape == (48, 64, 3)

    session.pick(2)
    picked = session.candidates[2].low_res_logits
    assert session.current == 2 and session.prompts.logits is picked
    args_seen = []
    predict = session.predictor.predict_ranked
    session.predictor.predict_ranked = lambda **kw: args_seen.append(kw) or predict(**kw)
    session.click(50, 40, "background")
    assert args_seen[0]["mask_input"] is picked
    np.testing.assert_array_equal(args_seen[0]["point_labels"], [1, 0])


def test_a_refused_click_keeps_the_prompts(session):
    session.click(10, 20, "foreground")
    before = session.prompts
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        session.click(64, 5, "foreground")
    assert session.prompts is before and len(session.candidates) == 3


def test_box_mode_takes_two_corners_and_refuses_zero_area(session):
    session.click(5, 5, "box")
    assert session.gallery() == [] and session.prompts.pending_corner == (5, 5)
    with pytest.raises(ValueError, match="zero area"):
        session.click(5, 30, "box")
    assert session.prompts.pending_corner == (5, 5)
    session.click(40, 30, "box")
    assert session.prompts.box == (5, 5, 40, 30) and len(session.gallery()) == 3


def test_undo_and_clear(session):
    session.click(10, 20, "foreground")
    session.click(30, 20, "background")
    session.undo()
    assert len(session.prompts.points) == 1 and len(session.gallery()) == 3
    session.clear()
    assert session.prompts.is_empty and session.gallery() == [] and session.current is None


def test_annotations_are_capped(session):
    session.max_annotations = 1
    session.click(10, 20, "foreground")
    session.accept("a")
    session.click(10, 20, "foreground")
    with pytest.raises(ValueError, match="at most 1 annotations"):
        session.accept("b")
    assert len(session.annotations) == 1 and session.current is not None


def test_only_annotated_images_are_remembered(session):
    session.click(10, 20, "foreground")
    session.accept("a")
    for _ in range(3):
        session.set_image(IMAGE, file_name="photo.png")
    assert [i.image_id for i in session.images] == [1, 4]
    session.click(10, 20, "foreground")
    session.accept("b")
    assert [a.image_id for a in session.annotations] == [1, 4]


# -- text prompts -------------------------------------------------------------------------------


def force_text(session, found: bool) -> None:
    """Make the (random) CLIP always find, or never find, the text."""
    prompter = session.text_prompter()
    threshold = -np.inf if found else np.inf
    prompter.existence_threshold = prompter.verify_threshold = threshold


def test_text_prompt_gives_three_ranked_candidates_with_clip_scores(session):
    force_text(session, found=True)
    session.text("red circle")
    assert len(session.gallery()) == 3 and session.canvas().shape == (48, 64, 3)
    assert all(re.fullmatch(r"IoU -?\d\.\d\d · CLIP \d\.\d\d", c) for c in captions(session))
    assert scores(session) == sorted(scores(session), reverse=True)
    assert session.status.startswith('Found "red circle"') and "untrained CLIP" in session.status
    assert session.prompts.text == "red circle" and session.current == 0
    assert session.candidates[0].mask.shape == (48, 64)


def test_text_not_found_is_a_message_not_a_mask(session):
    force_text(session, found=False)
    session.text("  purple   elephant ")
    assert session.gallery() == [] and session.current is None
    assert session.status.startswith('Not found: "purple elephant" does not appear in the image')


def test_clicks_extend_or_cut_the_text_result(session):
    force_text(session, found=True)
    prompter = session.text_prompter()
    calls = []
    segment = prompter.segment
    prompter.segment = lambda *a, **kw: calls.append(kw) or segment(*a, **kw)
    session.text("red circle")
    assert calls[-1]["points"] is None and calls[-1]["box"] is None
    session.click(10, 20, "foreground")
    session.click(50, 40, "background")
    np.testing.assert_array_equal(calls[-1]["points"], [[10, 20], [50, 40]])
    np.testing.assert_array_equal(calls[-1]["labels"], [1, 0])
    assert len(session.gallery()) == 3 and "CLIP" in captions(session)[0]
    assert session.status.startswith("Found")
    session.click(2, 2, "box")
    session.click(40, 30, "box")
    np.testing.assert_array_equal(calls[-1]["box"], [2, 2, 40, 30])


def test_undo_removes_the_text_and_clear_forgets_it(session):
    force_text(session, found=True)
    session.click(10, 20, "foreground")
    session.text("red circle")
    session.text("blue square")
    assert session.prompts.text == "blue square"
    session.undo()
    assert session.prompts.text == "red circle"
    session.undo()
    assert session.prompts.text is None and session.status == ""
    assert "CLIP" not in captions(session)[0]
    session.text("red circle")
    session.clear()
    assert session.prompts.text is None and session.gallery() == [] and session.status == ""


# -- segment everything and semi-automatic annotation -------------------------------------------


def test_segment_everything_colours_every_mask_without_re_encoding(session):
    session.everything_settings = KEEP_ALL
    runs = []
    hook = session.predictor.model.image_encoder.register_forward_hook(lambda *_: runs.append(1))
    try:
        session.click(10, 20, "foreground")
        session.segment_everything()
    finally:
        hook.remove()
    picture = session.everything_canvas()
    assert runs == []  # the image embedding cached at upload is reused
    assert picture.shape == (48, 64, 3) and picture.dtype == np.uint8
    assert session.status == f"Segment everything found {len(session.everything)} masks."
    assert len(session.everything) > 0
    areas = [r["area"] for r in session.everything]
    assert areas == sorted(areas, reverse=True)
    assert len(session.prompts.points) == 1 and len(session.candidates) == 3  # prompts kept


def test_prefill_respects_the_annotation_cap(session):
    from sam.io.masks import coco_encode_rle, masks_to_rle

    session.everything_settings = KEEP_ALL
    session.max_annotations = 1
    masks = np.zeros((3, 48, 64), bool)
    masks[0, :10], masks[1, 20:30], masks[2, 40:] = True, True, True
    session.everything = [
        {
            "segmentation": coco_encode_rle(rle),
            "area": int(mask.sum()),
            "predicted_iou": 0.9,
            "stability_score": 0.97,
            "point_coords": [[1.0, 1.0]],
        }
        for mask, rle in zip(masks, masks_to_rle(masks), strict=True)
    ]
    session.prefill("")
    assert len(session.annotations) == 1
    np.testing.assert_array_equal(session.annotations[0].mask, masks[0])
    assert "2 more did not fit: at most 1 annotations" in session.status
