"""Training the tiny demo CLIP for the text branch: a few steps lower the loss, and the saved
weights load back."""

from __future__ import annotations

import pytest
import torch

import prompts.clip_model as clip_model
from prompts.clip_model import DEMO_MODEL_NAME, load_clip
from prompts.clip_training_data import fixed_batch
from prompts.train_clip import DemoClipTrainer, TrainConfig, create_demo_clip, save_demo_clip


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
    with pytest.raises(clip_model.ClipLoadError, match=r"python -m prompts\.train_clip"):
        load_clip("demo")
