from __future__ import annotations

import numpy as np
import pytest
import torch

from sam.io.masks import mask_box
from sam.train.simulation import (
    BOX_NOISE_MAX,
    Prompt,
    best_by_predicted_iou,
    first_prompt,
    next_point,
    next_prompt,
    noisy_box,
    simulation_schedule,
)


def disc(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def test_next_point_lies_in_error_region_with_right_label():
    gt = disc(48, 20, 24, 12)
    pred = disc(48, 28, 24, 12)
    labels = set()
    for seed in range(300):
        xy, label = next_point(np.random.default_rng(seed), pred, gt)
        x, y = int(xy[0]), int(xy[1])
        assert xy.tolist() == [x, y]
        assert pred[y, x] != gt[y, x]
        assert label == (1 if gt[y, x] else 0)
        labels.add(label)
    assert labels == {0, 1}


def test_next_point_draws_uniformly_from_the_error_region():
    gt = np.zeros((4, 4), dtype=bool)
    pred = np.zeros((4, 4), dtype=bool)
    gt[0, :3] = True  # three false negatives
    pred[3, 3] = True  # one false positive
    rng = np.random.default_rng(0)
    labels = [next_point(rng, pred, gt)[1] for _ in range(2000)]
    assert np.mean(labels) == pytest.approx(0.75, abs=0.04)


def test_next_point_none_when_prediction_is_exact():
    gt = disc(32, 16, 16, 6)
    assert next_point(np.random.default_rng(0), gt.copy(), gt) is None
    assert next_point(np.random.default_rng(0), torch.from_numpy(gt), torch.from_numpy(gt)) is None


def test_next_point_rejects_size_mismatch():
    with pytest.raises(ValueError):
        next_point(np.random.default_rng(0), np.zeros((8, 8)), np.zeros((16, 16)))


def test_first_prompt_odds_and_foreground_points():
    gt = disc(64, 30, 34, 10)
    rng = np.random.default_rng(0)
    prompts = [first_prompt(rng, gt) for _ in range(1000)]
    boxes = sum(p.box is not None for p in prompts)
    assert 430 < boxes < 570  # 0.5 +- ~4.4 sd
    for prompt in prompts:
        if prompt.box is None:
            assert prompt.points_xy.shape == (1, 2) and prompt.point_labels.tolist() == [1]
            x, y = prompt.points_xy[0].astype(int)
            assert gt[y, x]
            assert prompt.is_ambiguous
        else:
            assert prompt.num_points == 0 and not prompt.is_ambiguous


def test_box_noise_is_capped_and_scales_with_side():
    gt = np.zeros((300, 300), dtype=bool)
    gt[20:280, 40:290] = True  # 250 x 260: std 25 and 26, both over the cap
    exact = mask_box(gt)
    assert exact.tolist() == [40, 20, 289, 279]
    rng = np.random.default_rng(0)
    shifts = np.stack([noisy_box(rng, gt) - exact for _ in range(500)])
    assert np.abs(shifts).max() <= BOX_NOISE_MAX
    assert (np.abs(shifts) == BOX_NOISE_MAX).mean() > 0.3

    small = np.zeros((100, 100), dtype=bool)
    small[40:60, 30:80] = True  # 50 wide, 20 high: std 5 in x, 2 in y
    shifts = np.stack([noisy_box(rng, small) - mask_box(small) for _ in range(2000)])
    assert shifts[:, [0, 2]].std() == pytest.approx(5.0, rel=0.1)
    assert shifts[:, [1, 3]].std() == pytest.approx(2.0, rel=0.1)


def test_box_is_clipped_to_image():
    gt = np.zeros((40, 50), dtype=bool)
    gt[:, :] = True
    rng = np.random.default_rng(1)
    for _ in range(200):
        x0, y0, x1, y1 = noisy_box(rng, gt)
        assert 0 <= x0 <= x1 <= 49 and 0 <= y0 <= y1 <= 39


def test_prompt_with_point_returns_new_prompt():
    prompt = Prompt(box=np.array([1, 2, 3, 4], dtype=np.float32))
    grown = prompt.with_point(np.array([5.0, 6.0]), 0).with_point(np.array([7.0, 8.0]), 1)
    assert prompt.num_points == 0
    assert grown.points_xy.tolist() == [[5, 6], [7, 8]] and grown.points_xy.dtype == np.float32
    assert grown.point_labels.tolist() == [0, 1] and grown.point_labels.dtype == np.int64
    assert grown.box is prompt.box


def test_schedule_has_first_eight_points_and_two_mask_only():
    for seed in range(20):
        schedule = simulation_schedule(np.random.default_rng(seed))
        kinds = [step.kind for step in schedule]
        assert len(schedule) == 11 and [step.index for step in schedule] == list(range(11))
        assert kinds[0] == "first" and kinds[-1] == "mask_only"
        assert kinds.count("point") == 8 and kinds.count("mask_only") == 2
        assert not schedule[0].uses_previous_mask
        assert all(step.uses_previous_mask for step in schedule[1:])
    inserted = {
        [s.kind for s in simulation_schedule(np.random.default_rng(seed))][:-1].index("mask_only")
        for seed in range(50)
    }
    assert len(inserted) > 3
    assert [s.kind for s in simulation_schedule()].count("mask_only") == 2


def test_next_prompt_follows_schedule():
    gt = disc(32, 16, 16, 6)
    pred = np.zeros_like(gt)
    logits = torch.zeros(1, 256, 256)
    rng = np.random.default_rng(0)
    schedule = simulation_schedule(rng)
    prompt = first_prompt(rng, gt)
    for step in schedule[1:]:
        before = prompt.num_points
        prompt = next_prompt(rng, prompt, step, pred, gt, logits)
        assert prompt.mask_logits is logits
        assert prompt.num_points == before + (1 if step.adds_point else 0)
    assert prompt.point_labels[-8:].tolist() == [1] * 8
    with pytest.raises(ValueError):
        next_prompt(rng, prompt, schedule[0], pred, gt, logits)


def test_best_by_predicted_iou_picks_highest():
    logits = torch.arange(3.0)[:, None, None].expand(3, 4, 4)
    chosen = best_by_predicted_iou(logits, torch.tensor([0.2, 0.9, 0.5]))
    assert chosen.shape == (1, 4, 4) and chosen.unique().tolist() == [1.0]
