"""Mechanics of text prompts with a tiny random CLIP and a tiny random SAM (not quality): the
TextPrompter's pipeline from text to three ranked masks or "not found"."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prompts.text_prompter import TextPrompter
from prompts.text_results import PromptSet, TextResult, clean_text
from prompts.text_verification import best_prompt_set
from tests.text_fixtures import ALWAYS, red_circle_scene

pytest_plugins = ["tests.text_fixtures"]


def test_found_result_has_three_ranked_scored_masks(clip, predictor):
    image = red_circle_scene()
    result = TextPrompter(clip, predictor, **ALWAYS).segment(image, "red circle")
    assert isinstance(result, TextResult)
    assert result.found
    assert result.message.startswith('found "red circle"')
    assert len(result.candidates) == 3
    ious = [c.iou for c in result.candidates]
    assert ious == sorted(ious, reverse=True)
    assert sorted(c.output_index for c in result.candidates) == [0, 1, 2]
    for c in result.candidates:
        assert c.mask.shape == image.shape[:2] and c.mask.dtype == bool
        assert c.low_res_logits.shape == (1, *predictor.model.prompt_encoder.mask_input_size)
        assert 0.0 <= c.clip_score <= 1.0
    assert result.best is result.candidates[0]
    prompts = result.prompts
    assert prompts.point_coords.shape[1] == 2
    assert len(prompts.point_coords) == len(prompts.point_labels)
    assert set(prompts.point_labels.tolist()) <= {0, 1} and 1 in prompts.point_labels
    assert np.all(prompts.point_coords >= 0)
    assert np.all(prompts.point_coords[:, 0] <= 96) and np.all(prompts.point_coords[:, 1] <= 72)
    assert result.similarity.shape == clip.grid_size
    assert result.evidence.margin == max(
        result.evidence.global_margin, result.evidence.region_margin
    )
    chosen = [pc for pc in result.alternatives if pc[0] is prompts]
    assert len(chosen) == 1 and chosen[0][1] is result.candidates
    assert best_prompt_set(result.alternatives)[0] is prompts


def test_absent_text_is_reported_not_guessed(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=np.inf)
    result = prompter.segment(red_circle_scene(), "red circle")
    assert not result.found
    assert result.message == 'not found: "red circle" does not appear in the image'
    assert result.candidates == [] and result.best is None and result.prompts is None


def test_failed_verification_is_not_found(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=-np.inf, verify_threshold=np.inf)
    result = prompter.segment(red_circle_scene(), "blue square")
    assert not result.found
    assert "not found" in result.message and result.candidates == []


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_a_clear_value_error(clip, predictor, text):
    with pytest.raises(ValueError, match="text is empty"):
        TextPrompter(clip, predictor).segment(red_circle_scene(), text)


def test_non_string_text(clip, predictor):
    with pytest.raises(ValueError, match="text must be a string"):
        TextPrompter(clip, predictor).segment(red_circle_scene(), None)


def test_long_non_latin_and_emoji_text(clip, predictor):
    prompter = TextPrompter(clip, predictor, **ALWAYS)
    long = "a very long description of a red circle " * 100
    result = prompter.segment(red_circle_scene(), long)
    assert result.truncated and len(result.text) == 1000
    assert len(result.candidates) == 3
    for text in ["赤い円", "красный круг", "🔴 circle", "🙂"]:
        assert prompter.segment(red_circle_scene(), text).text == text
    assert clean_text("  red \n circle ") == ("red circle", False)


def test_user_clicks_are_passed_through(clip, predictor, monkeypatch):
    calls = []
    original = predictor.predict

    def spy(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(predictor, "predict", spy)
    points = np.array([[10.0, 12.0], [80.0, 60.0]])
    labels = np.array([1, 0])
    result = TextPrompter(clip, predictor, **ALWAYS).segment(
        red_circle_scene(), "red circle", points, labels
    )
    assert calls
    for call in calls:
        np.testing.assert_allclose(call["point_coords"][-2:], points)
        np.testing.assert_array_equal(call["point_labels"][-2:], labels)
    np.testing.assert_allclose(result.prompts.point_coords[-2:], points)
    np.testing.assert_array_equal(result.prompts.point_labels[-2:], labels)


def test_user_clicks_alone_when_text_absent(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=np.inf)
    points, labels = np.array([[40.0, 30.0]]), np.array([1])
    result = prompter.segment(red_circle_scene(), "red circle", points=points, labels=labels)
    assert not result.found and "clicks only" in result.message
    assert result.prompts.source == "user" and len(result.candidates) == 3
    np.testing.assert_allclose(result.prompts.point_coords, points)


def test_user_box_is_used_and_restricts_peaks(clip, predictor):
    box = np.array([20.0, 10.0, 60.0, 50.0])
    result = TextPrompter(clip, predictor, **ALWAYS).segment(
        red_circle_scene(), "red circle", box=box
    )
    np.testing.assert_allclose(result.prompts.box, box)
    positive = result.prompts.point_coords[result.prompts.point_labels == 1]
    assert np.all((positive[:, 0] >= 20) & (positive[:, 0] <= 60))
    assert np.all((positive[:, 1] >= 10) & (positive[:, 1] <= 50))


def test_bad_prompts_name_the_argument(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    with pytest.raises(ValueError, match="labels must be supplied"):
        prompter.segment(red_circle_scene(), "red", points=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="point_coords"):
        prompter.segment(red_circle_scene(), "red", points=np.zeros((1, 3)), labels=np.ones(1))
    with pytest.raises(ValueError, match="box"):
        prompter.segment(red_circle_scene(), "red", box=np.array([5.0, 5.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        prompter.segment(red_circle_scene().astype(np.float32), "red")
    with pytest.raises(ValueError, match="outside"):
        TextPrompter(clip, predictor, outside="raw")


def test_caching_skips_clip_and_sam_image_encoders(clip, predictor):
    prompter = TextPrompter(clip, predictor, **ALWAYS)
    clip_batches, sam_runs = [], []
    hooks = [
        clip.model.visual.conv1.register_forward_hook(
            lambda m, i, o: clip_batches.append(i[0].shape[0])
        ),
        predictor.model.image_encoder.register_forward_hook(lambda m, i, o: sam_runs.append(1)),
    ]
    try:
        image = red_circle_scene(5)
        first = prompter.segment(image, "red circle")
        n_first, sam_first = len(clip_batches), len(sam_runs)
        second = prompter.segment(image.copy(), "red circle")  # same content, new array
        n_second = len(clip_batches) - n_first
        assert sam_first == 1 and len(sam_runs) == 1  # SAM embedding reused
        # Only the whole-image CLIP pass is skipped; masked crops are scored again.
        assert n_second == n_first - 1
        for a, b in zip(first.candidates, second.candidates):
            np.testing.assert_array_equal(a.mask, b.mask)
            assert a.clip_score == pytest.approx(b.clip_score, abs=1e-6)
        before = len(clip_batches)
        prompter.image_features(image)
        assert len(clip_batches) == before
        prompter.image_features(red_circle_scene(6))
        assert len(clip_batches) == before + 1
    finally:
        for hook in hooks:
            hook.remove()


def test_text_embeddings_are_cached(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    a = prompter.text_embedding("red circle")
    assert prompter.text_embedding("red circle") is a
    torch.testing.assert_close(a.norm(), torch.tensor(1.0))
    assert prompter.negative_embeddings().shape == (4, a.shape[0])


def test_verify_sets_limits_masked_crops(clip, predictor):
    image = red_circle_scene(7)
    full = TextPrompter(clip, predictor, **ALWAYS)
    quick = TextPrompter(clip, predictor, verify_sets=1, **ALWAYS)
    full.segment(image, "red circle")  # warm the caches
    batches = []
    hook = clip.model.visual.conv1.register_forward_hook(
        lambda m, i, o: batches.append(i[0].shape[0])
    )
    try:
        quick.image_features(image)
        batches.clear()
        result = quick.segment(image, "red circle")
    finally:
        hook.remove()
    assert len(batches) == 1 and batches[0] <= 3  # one set's masks, deduplicated
    assert len(result.candidates) == 3 and result.found


@pytest.mark.parametrize("with_box", [False, True])
def test_refine_rounds_feed_each_mask_back_as_the_mask_prompt(clip, predictor, with_box):
    image = red_circle_scene(3)
    predictor.set_image(image)
    box = np.array([20.0, 10.0, 60.0, 50.0]) if with_box else None
    prompts = PromptSet(np.array([[40.0, 30.0], [5.0, 5.0]]), np.array([1, 0]), box, "peak")
    first = predictor.predict(prompts.point_coords, prompts.point_labels, box)
    for rounds in (1, 2):
        masks, ious, low_res = TextPrompter(clip, predictor, refine_rounds=rounds)._predict(
            [prompts]
        )[0]
        assert masks.shape == first[0].shape and ious.shape == (3,)
        for i in range(3):  # the batched rounds equal one mask at a time through predict()
            logits = first[2][i : i + 1]
            for _ in range(rounds):
                mask, iou, logits = predictor.predict(
                    prompts.point_coords, prompts.point_labels, box, logits, False
                )
            assert np.array_equal(masks[i], mask[0])
            assert ious[i] == pytest.approx(float(iou[0]), abs=1e-5)
            np.testing.assert_allclose(low_res[i], logits[0], atol=1e-4)
    unrefined = TextPrompter(clip, predictor)._predict([prompts])[0]
    assert all(np.array_equal(a, b) for a, b in zip(unrefined, first))
    result = TextPrompter(clip, predictor, refine_rounds=1, **ALWAYS).segment(image, "red")
    assert result.found and len(result.candidates) == 3
    with pytest.raises(ValueError, match="refine_rounds"):
        TextPrompter(clip, predictor, refine_rounds=-1)
