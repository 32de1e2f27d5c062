"""SAM training losses (Kirillov et al. 2023, sec. 3 and appendix A).

Masks are supervised with a 20:1 mix of focal and dice loss. With several outputs for one
ambiguous prompt only the output of lowest loss is back-propagated; the IoU head regresses, by
mean-squared error, the actual IoU of every output with the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), mean over pixels: (..., H, W) -> (...)."""
    targets = targets.to(logits.dtype)
    probs = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(dim=(-2, -1))


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - (2 |P.T| + s) / (|P| + |T| + s) on sigmoid probabilities: (..., H, W) -> (...)."""
    targets = targets.to(logits.dtype)
    probs = torch.sigmoid(logits).flatten(-2)
    targets = targets.flatten(-2)
    numerator = 2 * (probs * targets).sum(-1) + smooth
    denominator = probs.sum(-1) + targets.sum(-1) + smooth
    return 1 - numerator / denominator


def mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """20 * focal + 1 * dice, per mask: (..., H, W) -> (...)."""
    return FOCAL_WEIGHT * focal_loss(logits, targets) + DICE_WEIGHT * dice_loss(logits, targets)


@torch.no_grad()
def iou_of_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with ``targets > 0.5``: (..., H, W) -> (...); 1 if both are empty."""
    predicted = logits > 0
    truth = targets > 0.5
    intersection = (predicted & truth).flatten(-2).sum(-1)
    union = (predicted | truth).flatten(-2).sum(-1)
    iou = intersection.float() / union.clamp(min=1).float()
    return torch.where(union == 0, torch.ones_like(iou), iou)


def resize_targets(targets: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) masks -> (B, *size) {0, 1} floats by area averaging, re-binarised at 0.5."""
    if tuple(targets.shape[-2:]) == tuple(size):
        return targets.float()
    resized = F.interpolate(targets[:, None].float(), size=size, mode="area")[:, 0]
    return (resized >= 0.5).float()


@dataclass
class LossOutput:
    """``total``, ``mask`` and ``iou`` are scalars; ``best_index`` (B,) is the supervised output;
    ``mask_per_output`` (B, K) and ``actual_iou`` (B, K) are detached, for logging."""

    total: torch.Tensor
    mask: torch.Tensor
    iou: torch.Tensor
    best_index: torch.Tensor
    mask_per_output: torch.Tensor
    actual_iou: torch.Tensor


def sam_loss(
    mask_logits: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    multimask: bool,
) -> LossOutput:
    """Loss for one decoder call: ``mask_logits`` (B, K, h, w), ``iou_pred`` (B, K), ``target``
    (B, H, W) bool or {0, 1}.

    With ``multimask`` (K outputs for an ambiguous prompt) only the output of lowest mask loss is
    supervised; otherwise K must be 1. The IoU head is trained on all K outputs against their
    detached actual IoU. A target of another size than the logits is resized to it by
    :func:`resize_targets` (area averaging, then threshold at 0.5).
    """
    batch, outputs = mask_logits.shape[:2]
    if not multimask and outputs != 1:
        raise ValueError(f"single-mask loss needs K == 1, got K == {outputs}")
    if iou_pred.shape != (batch, outputs) or target.shape[0] != batch:
        raise ValueError(
            f"shapes disagree: logits {tuple(mask_logits.shape)}, iou {tuple(iou_pred.shape)}, "
            f"target {tuple(target.shape)}"
        )
    targets = resize_targets(target, tuple(mask_logits.shape[-2:]))[:, None].expand_as(mask_logits)
    per_output = mask_loss(mask_logits, targets)
    best_index = per_output.detach().argmin(dim=1)
    best = per_output.gather(1, best_index[:, None])[:, 0]
    actual_iou = iou_of_logits(mask_logits.detach(), targets)
    iou = F.mse_loss(iou_pred, actual_iou.to(iou_pred.dtype))
    mask = best.mean()
    return LossOutput(
        total=mask + IOU_WEIGHT * iou,
        mask=mask,
        iou=iou,
        best_index=best_index,
        mask_per_output=per_output.detach(),
        actual_iou=actual_iou,
    )
