"""The demo CLIP's training items: scenes, masked crops and background crops, labelled with
the scene's captions."""

from __future__ import annotations

import torch

from prompts.clip_training_data import CAPTIONS, KIND_CROP, KIND_SCENE, fixed_batch


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
