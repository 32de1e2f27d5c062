"""What the page's tests share."""

from __future__ import annotations

from prompts.everything import EverythingSettings

# Keep every mask segment everything finds, and call all of them confident (random weights).
KEEP_ALL = EverythingSettings(
    points_per_side=4,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.0,
    min_mask_region_area=0,
    confident_iou=0.0,
    confident_stability=0.0,
)
