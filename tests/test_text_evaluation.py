"""The text branch's figures: (slow) the bundled CLIP's held-out figures with the bundled demo
SAM, and the option chooser's replay of segment()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prompts.clip_model import load_clip
from prompts.clip_training_data import HELD_OUT_SEED, SCENE_SIZE
from prompts.text_evaluation import choose_text_options, evaluate_bundle, evaluate_text_branch
from prompts.text_prompter import DEMO_TEXT_OPTIONS

# The bundled CLIP's level on these 20 held-out scenes with the bundled demo SAM,
# DEMO_TEXT_OPTIONS and the proposal fallback; the asserts allow MARGIN below it, so that only a
# regression fails. The targets (>= 0.9 for the first and the last) are not met; raise
# these levels with better weights.
BUNDLED_LEVELS = {"present_iou70": 0.7, "present_iou30": 0.84, "absent_not_found": 0.82}
MARGIN = 0.1


@pytest.mark.slow
def test_bundled_clip_held_out_figures():
    torch.set_num_threads(1)
    figures = evaluate_bundle(scenes=20, **DEMO_TEXT_OPTIONS)
    assert figures["present"] >= 40 and figures["absent"] == 40
    for key, level in BUNDLED_LEVELS.items():
        assert figures[key] >= level - MARGIN, (key, figures)
    assert np.isfinite(figures["seconds_per_query"])


@pytest.mark.slow
def test_choosing_text_options_replays_segment_exactly():
    """The chooser runs each query once and replays the set choice and the gates offline; at
    any of its settings its table must equal a real run of the text branch with them."""
    from sam import SamPredictor, load_sam
    from sam.train.scenes import scene_dataset

    torch.set_num_threads(1)
    clip = load_clip("demo")
    predictor = SamPredictor(load_sam("demo", device="cpu"))
    scenes = list(scene_dataset(HELD_OUT_SEED + 1, 3, SCENE_SIZE))  # validation scenes
    refine = {"refine_rounds": 1}  # other TextPrompter options pass through to both
    best, table = choose_text_options(
        clip, predictor, scenes, thresholds=(0.0, 0.15), iou_weights=(0.0, 0.5), **refine
    )
    assert len(table) == 4 and best in [
        {"verify_threshold": r["verify_threshold"], "iou_weight": r["iou_weight"]} for r in table
    ]
    for row in (table[1], table[2]):
        options = {"verify_threshold": row["verify_threshold"], "iou_weight": row["iou_weight"]}
        figures = evaluate_text_branch(
            clip, predictor, scenes, proposal_points=None, **options, **refine
        )
        for key in ("present_iou70", "present_iou30", "absent_not_found"):
            assert figures[key] == pytest.approx(row[key]), (key, options)
