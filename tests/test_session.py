"""One person's session: clicks, boxes and text turned into ranked candidates, refining the
current one, undo and clear, several objects each kept with its colour, label and prompts,
segment everything and pre-filling (a tiny random SAM and a tiny random CLIP; no Gradio)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from prompts.clip_model import create_random_clip
from prompts.objects import object_colour
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
    return [caption.split(" · ", 1)[1] for caption, _ in session.candidate_choices()]


def scores(session) -> list[float]:
    return [float(caption.split()[1]) for caption in captions(session)]


def low_res_shape(session) -> tuple[int, ...]:
    return (1, *session.predictor.model.prompt_encoder.mask_input_size)


def test_clicks_give_three_ranked_candidates_and_refine_the_current_one(session):
    session.click(10, 20, "foreground")
    assert [index for _, index in session.candidate_choices()] == [0, 1, 2]
    assert all(c.startswith("IoU ") and "CLIP" not in c for c in captions(session))
    assert scores(session) == sorted(scores(session), reverse=True)
    assert session.canvas().shape == (48, 64, 3)

    session.pick(2)
    picked = session.candidates[2].low_res_logits
    assert session.current == 2 and session.prompts.logits is picked
    np.testing.assert_array_equal(session.objects.get(1).mask, session.candidates[2].mask)
    args_seen = []
    predict = session.predictor.predict_ranked
    session.predictor.predict_ranked = lambda **kw: args_seen.append(kw) or predict(**kw)
    session.click(50, 40, "background")
    assert args_seen[0]["mask_input"] is picked
    np.testing.assert_array_equal(args_seen[0]["point_labels"], [1, 0])


def test_a_refused_click_keeps_the_prompts_and_objects(session):
    session.click(10, 20, "foreground")
    before, kept = session.prompts, session.objects.items[:]
    with pytest.raises(ValueError, match="outside the 64x48 image"):
        session.click(64, 5, "foreground")
    assert session.prompts is before and len(session.candidates) == 3
    assert session.objects.items == kept


def test_box_mode_takes_two_corners_and_refuses_zero_area(session):
    session.click(5, 5, "box")
    assert session.candidates == [] and session.prompts.pending_corner == (5, 5)
    with pytest.raises(ValueError, match="zero area"):
        session.click(5, 30, "box")
    assert session.prompts.pending_corner == (5, 5)
    session.click(40, 30, "box")
    assert session.prompts.box == (5, 5, 40, 30) and len(session.candidates) == 3


def test_undo_and_clear(session):
    session.click(10, 20, "foreground")
    session.click(30, 20, "background")
    session.undo()
    assert len(session.prompts.points) == 1 and len(session.candidates) == 3
    session.clear()
    assert session.prompts.is_empty and session.candidates == [] and session.current is None
    assert session.objects.items == []  # an object without a mask is not listed


# -- several objects ----------------------------------------------------------------------------


def test_objects_are_kept_each_with_its_colour_label_and_prompts(session):
    session.click(10, 20, "foreground")
    session.rename("cat")
    first_mask = session.current_mask.copy()
    session.new_object("dog")
    assert session.candidates == [] and session.prompts.is_empty and session.label == "dog"
    session.click(50, 40, "foreground")
    cat, dog = session.objects.items
    assert (cat.object_id, cat.label, dog.object_id, dog.label) == (1, "cat", 2, "dog")
    assert cat.colour != dog.colour and cat.colour == object_colour(1)
    np.testing.assert_array_equal(cat.mask, first_mask)
    assert [(p.x, p.y) for p in cat.prompts.points] == [(10, 20)]
    assert cat.logits.dtype == np.float16 and cat.logits.shape == low_res_shape(session)
    canvas = session.canvas()
    assert canvas.shape == (48, 64, 3) and not np.array_equal(canvas, IMAGE)

    session.select_object(1)  # refine the cat again: its prompts and mask come back
    assert session.active_id == 1 and session.label == "cat" and len(session.candidates) == 1
    assert [(p.x, p.y) for p in session.prompts.points] == [(10, 20)]
    np.testing.assert_allclose(session.prompts.logits, cat.logits.astype(np.float32))
    args_seen = []
    predict = session.predictor.predict_ranked
    session.predictor.predict_ranked = lambda **kw: args_seen.append(kw) or predict(**kw)
    session.click(12, 22, "background")
    np.testing.assert_allclose(args_seen[0]["mask_input"], cat.logits.astype(np.float32))
    assert [o.object_id for o in session.objects.items] == [1, 2]  # refined in place
    assert [a.label for a in session.annotations()] == ["cat", "dog"]


def test_new_object_without_a_mask_reuses_its_number(session):
    session.new_object("a")
    session.new_object("b")
    session.click(10, 20, "foreground")
    assert [(o.object_id, o.label) for o in session.objects.items] == [(1, "b")]


def test_delete_and_select_refuse_what_is_not_there(session):
    session.click(10, 20, "foreground")
    session.new_object()
    session.click(50, 40, "foreground")
    session.delete_object()
    assert [o.object_id for o in session.objects.items] == [1] and session.active_id == 3
    with pytest.raises(ValueError, match="no object #2"):
        session.select_object(2)
    with pytest.raises(ValueError, match="no object #7 to delete"):
        session.delete_object(7)


def test_objects_are_capped_and_a_refused_one_changes_nothing(session):
    session.objects.capacity = 1
    session.click(10, 20, "foreground")
    session.new_object()
    with pytest.raises(ValueError, match="at most 1 objects"):
        session.click(50, 40, "foreground")
    assert len(session.objects.items) == 1 and session.prompts.is_empty


def test_objects_of_earlier_images_are_kept_and_images_bounded(session):
    session.click(10, 20, "foreground")
    for _ in range(3):
        session.set_image(IMAGE, file_name="photo.png")
    assert [i.image_id for i in session.images] == [1, 4]
    session.click(10, 20, "foreground")
    assert [(o.object_id, o.image_id) for o in session.objects.items] == [(1, 1), (2, 4)]
    with pytest.raises(ValueError, match="no object #1 on this image"):
        session.select_object(1)


# -- text prompts -------------------------------------------------------------------------------


def force_text(session, found: bool) -> None:
    """Make the (random) CLIP always find, or never find, the text."""
    prompter = session.text_prompter()
    threshold = -np.inf if found else np.inf
    prompter.existence_threshold = prompter.verify_threshold = threshold


def test_text_prompt_gives_three_ranked_candidates_with_clip_scores(session):
    force_text(session, found=True)
    session.text("red ellipse")
    assert len(session.candidates) == 3 and session.canvas().shape == (48, 64, 3)
    assert all(re.fullmatch(r"IoU -?\d\.\d\d · CLIP \d\.\d\d", c) for c in captions(session))
    assert scores(session) == sorted(scores(session), reverse=True)
    assert session.status.startswith('Found "red ellipse"') and "untrained CLIP" in session.status
    assert session.prompts.text == "red ellipse" and session.current == 0
    assert session.objects.get(1).clip_score is not None


def test_a_long_text_is_quoted_short_in_the_status(session):
    force_text(session, found=False)
    session.text("word " * 2000)
    assert len(session.status) < 200 and "…" in session.status


def test_text_not_found_is_a_message_not_a_mask(session):
    force_text(session, found=False)
    session.text("  purple   elephant ")
    assert session.candidates == [] and session.current is None
    assert session.status.startswith('"purple elephant" was not found: try other words')


def test_negative_clicks_and_the_box_go_to_the_text_prompter(session):
    force_text(session, found=True)
    prompter = session.text_prompter()
    calls = []
    segment = prompter.segment
    prompter.segment = lambda *a, **kw: calls.append(kw) or segment(*a, **kw)
    session.text("red ellipse")
    assert calls[-1]["points"] is None and calls[-1]["box"] is None
    session.click(50, 40, "background")
    np.testing.assert_array_equal(calls[-1]["points"], [[50, 40]])
    np.testing.assert_array_equal(calls[-1]["labels"], [0])
    session.click(2, 2, "box")
    session.click(40, 30, "box")
    np.testing.assert_array_equal(calls[-1]["box"], [2, 2, 40, 30])


def left_half_found(session) -> list[np.ndarray]:
    """Make the text prompter 'find' masks in the image's left half; their masks."""
    from prompts.text_results import TextCandidate, TextResult

    masks = [np.zeros((48, 64), bool) for _ in range(3)]
    for rank, mask in enumerate(masks):
        mask[:, : 30 - rank] = True
    logits = np.zeros((1, *session.predictor.model.prompt_encoder.mask_input_size), np.float32)
    found = [TextCandidate(m, 0.9 - 0.1 * r, 0.8, 0.1, logits, r) for r, m in enumerate(masks)]
    prompter = session.text_prompter()
    prompter.segment = lambda image, text, **_: TextResult(text, True, "found", found)
    return masks


def test_a_positive_click_outside_the_text_mask_extends_it(session):
    text_masks = left_half_found(session)
    session.text("red ellipse")
    x, y = 50, 20  # in the right half, outside every text mask
    clicked = session.predictor.predict_ranked(np.array([[x, y]]), np.array([1]))[0].mask
    session.click(x, y, "foreground")
    for text_mask, candidate in zip(text_masks, session.candidates):
        np.testing.assert_array_equal(candidate.mask, text_mask | clicked)
    assert session.status.startswith("Found") and session.clip_scores is not None


def test_clicks_with_a_text_not_found_give_masks_without_clip_scores(session):
    force_text(session, found=False)
    session.click(10, 20, "foreground")
    session.text("purple elephant")
    assert len(session.candidates) == 3 and session.clip_scores is None
    assert all("CLIP" not in c for c in captions(session))
    assert "masks come from your clicks and box alone" in session.status


def test_undo_removes_the_text_and_clear_forgets_it(session):
    force_text(session, found=True)
    session.click(10, 20, "foreground")
    session.text("red ellipse")
    session.text("blue square")
    assert session.prompts.text == "blue square"
    session.undo()
    assert session.prompts.text == "red ellipse"
    session.undo()
    assert session.prompts.text is None and session.status == ""
    assert "CLIP" not in captions(session)[0]
    session.text("red ellipse")
    session.clear()
    assert session.prompts.text is None and session.candidates == [] and session.status == ""


# -- the API's explicit prompts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(), "no prompt"),
        (dict(points=[[5000, 5000]], labels=[1]), "outside the 64x48 image"),
        (dict(points=[[1, 1]], labels=[1, 1]), "1 points but 2 labels"),
        (dict(points=[[1, 1]]), "1 points but 0 labels"),
        (dict(points=[[1, 1, 1]], labels=[1]), r"\[\[x, y\], \.\.\.\]"),
        (dict(points=[[1, 1]], labels=[2]), "label must be 1"),
        (dict(box=[0, 0, 100, 10]), "inside the 64x48 image"),
        (dict(box=[0, 0, 10]), r"\[x0, y0, x1, y1\]"),
        (dict(text="   "), "text is empty"),
    ],
)
def test_explicit_prompts_are_checked(session, kwargs, message):
    with pytest.raises(ValueError, match=message):
        session.predict(**kwargs)


def test_explicit_prompts_accept_a_box_up_to_the_image_edge(session):
    candidates = session.predict(points=[[10, 20]], labels=[1], box=[0, 0, 64, 48])
    assert len(candidates) == 3 and session.objects.items == []


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
    areas = [r["area"] for r in session.everything]
    assert areas and areas == sorted(areas, reverse=True)
    assert len(session.prompts.points) == 1 and len(session.candidates) == 3  # prompts kept


def three_records() -> tuple[np.ndarray, list[dict]]:
    from sam.io.masks import coco_encode_rle, masks_to_rle

    masks = np.zeros((3, 48, 64), bool)
    masks[0, :10], masks[1, 20:30], masks[2, 40:] = True, True, True
    records = [
        {
            "segmentation": coco_encode_rle(rle),
            "area": int(mask.sum()),
            "predicted_iou": 0.9,
            "stability_score": 0.97,
            "point_coords": [[1.0, 1.0]],
        }
        for mask, rle in zip(masks, masks_to_rle(masks), strict=True)
    ]
    return masks, records


def test_prefill_adds_objects_skips_duplicates_and_respects_the_cap(session):
    session.everything_settings = KEEP_ALL
    masks, session.everything = three_records()
    session.objects.capacity = 2
    session.prefill("shape")
    assert [o.source for o in session.objects.items] == ["automatic", "automatic"]
    np.testing.assert_array_equal(session.objects.items[0].mask, masks[0])
    assert "1 more did not fit: at most 2 objects" in session.status
    session.objects.capacity = 10
    session.prefill("shape")  # the two already there are duplicates
    assert len(session.objects.items) == 3
    assert [a.source for a in session.annotations()] == ["automatic"] * 3


def test_a_prefilled_object_refines_from_its_mask(session):
    session.everything_settings = KEEP_ALL
    _, session.everything = three_records()
    session.prefill("")
    object_id = session.objects.items[1].object_id
    session.select_object(object_id)
    assert session.prompts.logits.shape == low_res_shape(session) and session.prompts.is_empty
    session.click(30, 25, "foreground")
    assert session.objects.get(object_id).prompts.points[0].x == 30
