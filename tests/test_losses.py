from __future__ import annotations

import math

import pytest
import torch

from sam.train.losses import (
    dice_loss,
    focal_loss,
    iou_of_logits,
    mask_loss,
    resize_targets,
    sam_loss,
)

LOGITS = torch.tensor([[0.0, 2.0], [-1.0, 3.0]])
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def hand_focal(alpha: float = 0.25, gamma: float = 2.0) -> float:
    # positive pixel: alpha * (1 - p)^gamma * -log p; negative: (1 - alpha) * p^gamma * -log(1 - p)
    terms = []
    for x, t in [(0.0, 1), (2.0, 0), (-1.0, 0), (3.0, 1)]:
        p = sigmoid(x)
        if t == 1:
            terms.append(alpha * (1 - p) ** gamma * -math.log(p))
        else:
            terms.append((1 - alpha) * p**gamma * -math.log(1 - p))
    return sum(terms) / 4


def hand_dice() -> float:
    p = [sigmoid(0.0), sigmoid(2.0), sigmoid(-1.0), sigmoid(3.0)]
    intersection = p[0] + p[3]
    return 1 - (2 * intersection + 1) / (sum(p) + 2 + 1)


def test_focal_loss_matches_hand_computation():
    assert focal_loss(LOGITS, TARGETS).item() == pytest.approx(hand_focal(), rel=1e-5)
    assert focal_loss(LOGITS, TARGETS, alpha=0.5, gamma=0.0).item() == pytest.approx(
        hand_focal(alpha=0.5, gamma=0.0), rel=1e-5
    )


def test_focal_loss_of_pixel_at_logit_zero():
    # p = 1/2 either way: alpha * (1/2)^2 * log 2 for a positive pixel
    loss = focal_loss(torch.zeros(1, 1), torch.ones(1, 1))
    assert loss.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)


def test_dice_loss_matches_hand_computation():
    assert dice_loss(LOGITS, TARGETS).item() == pytest.approx(hand_dice(), rel=1e-5)


def test_losses_reduce_over_pixels_only():
    logits = torch.randn(2, 3, 4, 4)
    targets = torch.rand(2, 3, 4, 4) > 0.5
    assert focal_loss(logits, targets).shape == (2, 3)
    assert dice_loss(logits, targets).shape == (2, 3)
    assert mask_loss(logits, targets).shape == (2, 3)
    assert focal_loss(logits, targets)[1, 2] == pytest.approx(
        focal_loss(logits[1, 2], targets[1, 2]).item()
    )


def test_mask_loss_is_twenty_focal_plus_dice():
    expected = 20 * hand_focal() + hand_dice()
    assert mask_loss(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-5)


def test_confident_correct_prediction_has_near_zero_loss():
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = (targets * 2 - 1) * 20
    assert focal_loss(logits, targets).item() < 1e-8
    assert dice_loss(logits, targets).item() == pytest.approx(0.0, abs=1e-6)


def test_iou_of_logits():
    # prediction {(0,1), (1,1)}, target {(0,0), (1,1)}: intersection 1, union 3
    assert iou_of_logits(LOGITS, TARGETS).item() == pytest.approx(1 / 3)
    empty = torch.zeros(2, 2)
    assert iou_of_logits(-torch.ones(2, 2), empty).item() == 1.0
    assert iou_of_logits(torch.ones(2, 2), empty).item() == 0.0


def test_resize_targets_area_then_threshold():
    target = torch.zeros(1, 4, 4)
    target[0, :2, :2] = 1
    target[0, 2, 2] = 1  # a quarter of one 2x2 block: rounds away
    resized = resize_targets(target, (2, 2))
    assert torch.equal(resized, torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))


def test_min_over_outputs_gives_gradient_only_to_best():
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    good = (target[0] * 2 - 1) * 4
    logits = torch.stack([-good, good, torch.zeros(2, 2)])[None].requires_grad_()
    iou_pred = torch.zeros(1, 3, requires_grad=True)
    out = sam_loss(logits, iou_pred, target, multimask=True)
    out.mask.backward()
    assert out.best_index.tolist() == [1]
    assert logits.grad[0, 1].abs().sum() > 0
    assert torch.count_nonzero(logits.grad[0, [0, 2]]) == 0
    assert out.mask.item() == pytest.approx(mask_loss(good, target[0]).item(), rel=1e-6)


def test_best_output_is_chosen_per_sample():
    target = torch.zeros(2, 4, 4)
    target[0, :2] = 1
    target[1, 2:] = 1
    right, wrong = target * 8 - 4, (1 - target) * 8 - 4
    logits = torch.stack([right, wrong], dim=1)
    logits[1] = logits[1].flip(0)
    out = sam_loss(logits, torch.zeros(2, 2), target, multimask=True)
    assert out.best_index.tolist() == [0, 1]


def test_iou_loss_is_mse_against_detached_actual_iou():
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    logits = torch.stack([LOGITS, -LOGITS, 5 * TARGETS - 1])[None].requires_grad_()
    iou_pred = torch.tensor([[0.5, 0.2, 0.9]], requires_grad=True)
    out = sam_loss(logits, iou_pred, target, multimask=True)
    # LOGITS > 0 is {(0,1), (1,1)}: IoU 1/3; -LOGITS > 0 is {(1,0)}: IoU 0; the last is exact
    actual = [1 / 3, 0.0, 1.0]
    expected = sum((p - a) ** 2 for p, a in zip([0.5, 0.2, 0.9], actual, strict=True)) / 3
    assert out.actual_iou[0].tolist() == pytest.approx(actual)
    assert out.iou.item() == pytest.approx(expected, rel=1e-6)
    assert not out.actual_iou.requires_grad
    (mask_grad, iou_grad) = torch.autograd.grad(out.iou, (logits, iou_pred), allow_unused=True)
    assert mask_grad is None
    hand = [2 * (p - a) / 3 for p, a in zip([0.5, 0.2, 0.9], actual, strict=True)]
    assert iou_grad[0].tolist() == pytest.approx(hand, rel=1e-5)
    assert out.total.item() == pytest.approx(out.mask.item() + out.iou.item())


def test_single_mask_loss_and_resolution_mismatch():
    target = torch.zeros(1, 8, 8, dtype=torch.bool)
    target[0, :4, :4] = True
    logits = torch.randn(1, 1, 4, 4, requires_grad=True)
    out = sam_loss(logits, torch.zeros(1, 1), target, multimask=False)
    small = torch.zeros(1, 4, 4)
    small[0, :2, :2] = 1
    assert out.mask.item() == pytest.approx(mask_loss(logits[0, 0], small[0]).item(), rel=1e-6)
    with pytest.raises(ValueError):
        sam_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3), target, multimask=False)
