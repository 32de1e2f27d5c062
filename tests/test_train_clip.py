"""Training the tiny demo CLIP for the text branch: the loss, the data, saving and loading, and
(slow) the bundled weights' held-out figures with the bundled demo SAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from open_clip import ClipLoss

import prompts.clip_model as clip_model
from prompts.clip_model import DEMO_MODEL_NAME, load_clip
from prompts.text_models import DEMO_TEXT_OPTIONS
from prompts.train_clip import (
    CAPTIONS,
    HELD_OUT_SEED,
    KIND_CROP,
    KIND_SCENE,
    SCENE_SIZE,
    DemoClipTrainer,
    TrainConfig,
    _clip_loss_class,
    choose_text_options,
    create_demo_clip,
    evaluate_bundle,
    evaluate_text_branch,
    fixed_batch,
    save_demo_clip,
)


def test_label_aware_loss_is_clip_loss_for_one_to_one_pairs():
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    loss = _clip_loss_class()()
    expected = ClipLoss()(image, text, scale)
    torch.testing.assert_close(loss(image, text, scale, torch.eye(6, dtype=torch.bool)), expected)
    # Two images sharing one caption: both are positives of that text, neither is pushed away.
    labels = torch.eye(6, dtype=torch.bool)
    labels[1, 0] = True
    assert loss(image, text, scale, labels) != expected


def test_items_carry_the_scene_captions():
    batch = fixed_batch(seed=3, scenes=2)
    kinds = batch["kind"]
    assert batch["pixels"].shape[1:] == (3, 96, 96)
    assert (kinds == KIND_SCENE).sum() == 2 and (kinds == KIND_CROP).sum() >= 2
    labels = batch["labels"]
    assert labels.shape[1] == len(CAPTIONS)
    scenes = torch.nonzero(kinds == KIND_SCENE).flatten()
    for i in torch.nonzero(kinds == KIND_CROP).flatten():
        # every crop's captions are captions of the scene it came from
        owner = scenes[scenes <= i].max()
        assert labels[i].any() and not (labels[i] & ~labels[owner]).any()
    dense = batch["dense"]
    assert dense.shape[1:] == (144, len(CAPTIONS))
    assert (dense[kinds == KIND_CROP] == -1).all()  # no dense supervision on crops
    for i in scenes:
        positive = (dense[i] == 1).any(0)
        assert positive.any() and not (positive & ~labels[i]).any()


def test_a_few_steps_lower_the_clip_loss_on_a_fixed_batch():
    batch = fixed_batch(seed=0, scenes=2)
    model = create_demo_clip(seed=0)
    trainer = DemoClipTrainer(model, TrainConfig(lr=2e-3, warmup_steps=1, text_columns=24))

    def contrastive() -> float:
        trainer.generator.manual_seed(0)  # the same caption columns and templates each time
        with torch.no_grad():
            return float(trainer.losses(batch)["contrastive"])

    before = contrastive()
    for _ in range(6):
        trainer.train_step(batch)
    after = contrastive()
    assert after < before - 0.2, (before, after)


def test_saved_weights_round_trip_through_load_clip(tmp_path, monkeypatch):
    model = create_demo_clip(seed=1)
    path = save_demo_clip(model, tmp_path / "clip_demo.safetensors")
    assert path.stat().st_size < 20e6
    expected = {k: v.half().float() for k, v in model.state_dict().items()}
    for clip in (
        load_clip(DEMO_MODEL_NAME, pretrained=path),
        _load_demo(monkeypatch, path),
    ):
        loaded = clip.model.state_dict()
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
        assert clip.image_size == (96, 96) and clip.grid_size == (12, 12)
    resumed = create_demo_clip(seed=2, init=path)  # a fine-tune starts from the saved weights
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
        assert value.dtype == expected[key].dtype  # fp32 to train, though saved in fp16


def _load_demo(monkeypatch, path):
    monkeypatch.setattr(clip_model, "DEMO_CLIP_CHECKPOINT", path)
    return load_clip("demo")


def test_missing_bundle_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(clip_model, "DEMO_CLIP_CHECKPOINT", tmp_path / "none.safetensors")
    with pytest.raises(clip_model.ClipLoadError, match="demo_clip"):
        load_clip("demo")


# Measured on these 20 held-out scenes (seed 1; 98 present, 40 absent queries) with the bundled
# weights (5 min on an H200: 4348 steps of 256, then 100 min on the 2-core CPU: 6120 steps of 48),
# the bundled demo SAM (2026-11-28, after its fourth CPU fine-tune), DEMO_TEXT_OPTIONS (two
# refinement rounds) and the proposal fallback: 0.704, 0.847, 0.825. The targets (>= 0.9
# for the first and the last) are NOT met. The asserts guard the measured level minus MARGIN;
# raise them with better weights.
MEASURED = {"present_iou70": 0.7, "present_iou30": 0.84, "absent_not_found": 0.82}
MARGIN = 0.1


@pytest.mark.slow
def test_bundled_clip_held_out_figures():
    torch.set_num_threads(1)
    figures = evaluate_bundle(scenes=20, **DEMO_TEXT_OPTIONS)
    assert figures["present"] >= 40 and figures["absent"] == 40
    for key, level in MEASURED.items():
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
