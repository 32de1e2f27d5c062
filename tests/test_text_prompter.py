"""Mechanics of text prompts with a tiny random CLIP and a tiny random SAM (not quality)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prompts import text_prompter
from prompts.clip_model import create_random_clip
from prompts.text_prompter import (
    GREY,
    PromptSet,
    TextCandidate,
    TextPrompter,
    TextResult,
    _peaks,
    best_prompt_set,
    clean_text,
    masked_crop,
)
from sam import SamPredictor

ALWAYS = {"existence_threshold": -np.inf, "verify_threshold": -np.inf}


@pytest.fixture(scope="module")
def clip():
    return create_random_clip(seed=0)


@pytest.fixture
def predictor(tiny_sam):
    return SamPredictor(tiny_sam)


def _scene(seed=0, size=(72, 96)):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (*size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[: size[0], : size[1]]
    image[(yy - 30) ** 2 + (xx - 40) ** 2 < 15**2] = (220, 30, 30)
    return image


def test_found_result_has_three_ranked_scored_masks(clip, predictor):
    image = _scene()
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


def _candidate(margin: float, iou: float) -> TextCandidate:
    mask = np.zeros((4, 4), bool)
    return TextCandidate(mask, iou, 0.5, margin, np.zeros((1, 4, 4), np.float32), 0)


def test_best_prompt_set_weighs_clip_margin_against_predicted_iou():
    def prompt_set(source):
        return PromptSet(None, None, None, source)

    sharp = (prompt_set("box"), [_candidate(0.28, 0.95), _candidate(0.1, 0.5)])
    clip_liked = (prompt_set("peak"), [_candidate(0.30, 0.50), _candidate(0.29, 0.6)])
    assert best_prompt_set([sharp, clip_liked])[0].source == "peak"  # margin alone
    assert best_prompt_set([sharp, clip_liked], 0.1)[0].source == "box"  # 0.375 > 0.36
    tie = (prompt_set("peaks"), [_candidate(0.28, 0.97)])
    assert best_prompt_set([sharp, tie])[0].source == "peaks"  # same margin: higher IoU


def test_absent_text_is_reported_not_guessed(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=np.inf)
    result = prompter.segment(_scene(), "red circle")
    assert not result.found
    assert result.message == 'not found: "red circle" does not appear in the image'
    assert result.candidates == [] and result.best is None and result.prompts is None


def test_failed_verification_is_not_found(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=-np.inf, verify_threshold=np.inf)
    result = prompter.segment(_scene(), "blue square")
    assert not result.found
    assert "not found" in result.message and result.candidates == []


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_a_clear_value_error(clip, predictor, text):
    with pytest.raises(ValueError, match="text is empty"):
        TextPrompter(clip, predictor).segment(_scene(), text)


def test_non_string_text(clip, predictor):
    with pytest.raises(ValueError, match="text must be a string"):
        TextPrompter(clip, predictor).segment(_scene(), None)


def test_long_non_latin_and_emoji_text(clip, predictor):
    prompter = TextPrompter(clip, predictor, **ALWAYS)
    long = "a very long description of a red circle " * 100
    result = prompter.segment(_scene(), long)
    assert result.truncated and len(result.text) == 1000
    assert len(result.candidates) == 3
    for text in ["赤い円", "красный круг", "🔴 circle", "🙂"]:
        assert prompter.segment(_scene(), text).text == text
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
    result = TextPrompter(clip, predictor, **ALWAYS).segment(_scene(), "red circle", points, labels)
    assert calls
    for call in calls:
        np.testing.assert_allclose(call["point_coords"][-2:], points)
        np.testing.assert_array_equal(call["point_labels"][-2:], labels)
    np.testing.assert_allclose(result.prompts.point_coords[-2:], points)
    np.testing.assert_array_equal(result.prompts.point_labels[-2:], labels)


def test_user_clicks_alone_when_text_absent(clip, predictor):
    prompter = TextPrompter(clip, predictor, existence_threshold=np.inf)
    points, labels = np.array([[40.0, 30.0]]), np.array([1])
    result = prompter.segment(_scene(), "red circle", points=points, labels=labels)
    assert not result.found and "clicks only" in result.message
    assert result.prompts.source == "user" and len(result.candidates) == 3
    np.testing.assert_allclose(result.prompts.point_coords, points)


def test_user_box_is_used_and_restricts_peaks(clip, predictor):
    box = np.array([20.0, 10.0, 60.0, 50.0])
    result = TextPrompter(clip, predictor, **ALWAYS).segment(_scene(), "red circle", box=box)
    np.testing.assert_allclose(result.prompts.box, box)
    positive = result.prompts.point_coords[result.prompts.point_labels == 1]
    assert np.all((positive[:, 0] >= 20) & (positive[:, 0] <= 60))
    assert np.all((positive[:, 1] >= 10) & (positive[:, 1] <= 50))


def test_bad_prompts_name_the_argument(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    with pytest.raises(ValueError, match="labels must be supplied"):
        prompter.segment(_scene(), "red", points=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="point_coords"):
        prompter.segment(_scene(), "red", points=np.zeros((1, 3)), labels=np.ones(1))
    with pytest.raises(ValueError, match="box"):
        prompter.segment(_scene(), "red", box=np.array([5.0, 5.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="uint8"):
        prompter.segment(_scene().astype(np.float32), "red")
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
        image = _scene(5)
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
        prompter.image_features(_scene(6))
        assert len(clip_batches) == before + 1
    finally:
        for hook in hooks:
            hook.remove()


def test_masked_crop_greys_outside_pixels():
    image = np.full((40, 50, 3), 200, dtype=np.uint8)
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 10:30] = True
    mask[10, 10] = False
    crop = masked_crop(image, mask, "grey", context=0.1)
    assert crop.shape[0] == crop.shape[1] == 24  # 20 wide + 2 * 2 context, padded square
    assert (crop == 200).all(axis=2).sum() == mask.sum()
    assert tuple(crop[0, 0]) == GREY
    blurred = masked_crop(image, mask, "blur")
    assert blurred.shape == crop.shape
    assert masked_crop(image, np.zeros_like(mask)) is None


def test_peaks_are_relative_to_negatives_not_min_max():
    below = np.full((5, 5), -0.2)
    below[2, 2] = -0.01  # the best patch still loses to the negatives
    assert _peaks(below, 0.0, 3) == []
    above = below.copy()
    above[1, 1], above[3, 4] = 0.3, 0.1
    assert _peaks(above, 0.0, 3) == [(1, 1), (3, 4)]


def test_text_embeddings_are_cached(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    a = prompter.text_embedding("red circle")
    assert prompter.text_embedding("red circle") is a
    torch.testing.assert_close(a.norm(), torch.tensor(1.0))
    assert prompter.negative_embeddings().shape == (4, a.shape[0])


def test_score_masks_batches_unique_masks_once(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    image = _scene()
    a = np.zeros(image.shape[:2], dtype=bool)
    a[20:40, 25:55] = True
    b = np.zeros_like(a)
    b[5:15, 5:15] = True
    batches = []
    hook = clip.model.visual.conv1.register_forward_hook(
        lambda m, i, o: batches.append(i[0].shape[0])
    )
    try:
        target = prompter.text_embedding("red circle")
        margins, scores = prompter.score_masks(
            image, np.stack([a, b, a, np.zeros_like(a)]), target, prompter.negative_embeddings()
        )
    finally:
        hook.remove()
    assert batches == [2]
    assert margins[0] == margins[2] and scores[0] == scores[2]
    assert margins[3] == -np.inf and scores[3] == 0.0
    assert np.all((scores[:3] > 0) & (scores[:3] < 1))


def test_verify_sets_limits_masked_crops(clip, predictor):
    image = _scene(7)
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
    image = _scene(3)
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


def test_pooled_margins_shapes():
    dense = torch.nn.functional.normalize(torch.randn(6, 6, 8), dim=-1)
    target = torch.nn.functional.normalize(torch.randn(8), dim=0)
    negatives = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    masks = np.zeros((3, 30, 36), dtype=bool)
    masks[0, :10, :12] = True
    masks[1] = True
    margins = TextPrompter.pooled_margins(dense, masks, target, negatives)
    assert margins.shape == (3,) and np.isfinite(margins[:2]).all() and margins[2] == -np.inf
    expected = torch.nn.functional.normalize(dense[:2, :2].reshape(4, 8).mean(0), dim=0)
    want = expected @ target - (negatives @ expected).max()
    assert margins[0] == pytest.approx(float(want), abs=1e-5)


def test_patch_cover_in_chunks_equals_one_pass():
    masks = np.random.default_rng(0).random((11, 30, 36)) > 0.5
    cover = text_prompter.patch_cover(masks, (6, 6), chunk=4)
    whole = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks).float(), (6, 6))
    assert cover.shape == (11, 36) and torch.equal(cover, whole.flatten(1))
    assert torch.equal(text_prompter.patch_cover(list(masks), (6, 6)), cover)


def test_a_new_text_reuses_the_proposals_patch_cover(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=16, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])
    covers = []
    original = text_prompter.patch_cover
    monkeypatch.setattr(
        text_prompter, "patch_cover", lambda *a, **k: covers.append(1) or original(*a, **k)
    )
    image = _scene(3)
    first = prompter.segment(image, "red circle")
    second = prompter.segment(image, "blue square")
    assert len(covers) == 1 and first.found and second.found
    records = prompter.proposals(image)
    _, dense = prompter.image_features(image)
    masks = np.stack([r["segmentation"] for r in records])
    target, negatives = prompter.text_embedding("blue square"), prompter.negative_embeddings()
    pooled = TextPrompter.pooled_margins(dense, masks, target, negatives)
    chosen = {tuple(p.box.tolist()) for p, _ in second.alternatives}
    best = {tuple(float(v) for v in records[i]["bbox"]) for i in np.argsort(-pooled)[:3]}
    assert {(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in chosen} <= best


def test_proposals_are_the_fallback_when_no_peak_prompt_passes(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=16, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])  # no peak prompt at all
    sam_runs, generated = [], []
    hook = predictor.model.image_encoder.register_forward_hook(lambda m, i, o: sam_runs.append(1))
    original = text_prompter.generate_proposals
    monkeypatch.setattr(
        text_prompter,
        "generate_proposals",
        lambda *args, **kwargs: generated.append(1) or original(*args, **kwargs),
    )
    try:
        image = _scene(3)
        result = prompter.segment(image, "red circle")
        again = prompter.segment(image, "red circle")
    finally:
        hook.remove()
    assert len(generated) == 1  # once per image
    assert result.found and result.prompts.source == "proposal"
    assert {p.source for p, _ in result.alternatives} == {"proposal"}
    assert len(result.alternatives) <= prompter.proposal_sets
    record_boxes = [
        [x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in prompter.proposals(image))
    ]
    assert result.prompts.box.tolist() in record_boxes
    assert result.prompts.point_labels.tolist() == [1]
    assert len(sam_runs) == 1  # the generator reused the predictor's embedding
    assert [c.iou for c in again.candidates] == [c.iou for c in result.candidates]


def test_no_proposal_fallback_when_switched_off(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=None, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])
    result = prompter.segment(_scene(3), "red circle")
    assert not result.found and result.candidates == [] and len(prompter._proposal_cache) == 0
