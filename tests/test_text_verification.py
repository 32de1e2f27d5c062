"""Verification of SAM's masks for a text: masked crops, CLIP scores of each distinct mask once,
and the choice of the prompt set."""

from __future__ import annotations

import numpy as np

from prompts.text_prompter import TextPrompter
from prompts.text_results import PromptSet, TextCandidate
from prompts.text_verification import GREY, best_prompt_set, masked_crop, score_masks
from tests.text_fixtures import red_circle_scene

pytest_plugins = ["tests.text_fixtures"]


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


def test_score_masks_batches_unique_masks_once(clip, predictor):
    prompter = TextPrompter(clip, predictor)
    image = red_circle_scene()
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
        margins, scores = score_masks(
            clip,
            image,
            np.stack([a, b, a, np.zeros_like(a)]),
            target,
            prompter.negative_embeddings(),
        )
    finally:
        hook.remove()
    assert batches == [2]
    assert margins[0] == margins[2] and scores[0] == scores[2]
    assert margins[3] == -np.inf and scores[3] == 0.0
    assert np.all((scores[:3] > 0) & (scores[:3] < 1))
