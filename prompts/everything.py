"""Segment everything for the page: settings per model, the generator run on a session's
(cached) image embedding, and the filter that picks the confident masks for semi-automatic
annotation (the paper's data engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sam import SamPredictor
from sam.automatic.generator import AutomaticMaskGenerator
from sam.weights.checkpoint import HUB_REPOS

Record = dict[str, Any]  # one AutomaticMaskGenerator record with a "coco_rle" segmentation


@dataclass(frozen=True)
class EverythingSettings:
    """How densely to prompt and which masks to keep (shown), and which of those count as
    confident enough to pre-fill the annotation list."""

    points_per_side: int = 32
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    min_mask_region_area: int = 100
    confident_iou: float = 0.88
    confident_stability: float = 0.95
    points_per_batch: int = 64


# The paper's thresholds for Meta's models; 16x16 points keep vit_b near half a minute on CPU.
HUB_SETTINGS = EverythingSettings(points_per_side=16)
GPU_HUB_SETTINGS = EverythingSettings(points_per_side=32)
# The small demo model predicts IoU around 0.3-0.5 and softer logits: thresholds relaxed so
# it still finds the shapes; 16x16 points run in a few seconds on CPU.
SMALL_SETTINGS = EverythingSettings(
    points_per_side=16,
    pred_iou_thresh=0.35,
    stability_score_thresh=0.25,
    min_mask_region_area=20,
    confident_iou=0.42,
    confident_stability=0.35,
)


def settings_for(model_name: str, on_gpu: bool = False) -> EverythingSettings:
    """Settings for a SAM model name ("vit_b", "sam2.1_tiny", "demo", a checkpoint path...)."""
    if model_name in HUB_REPOS:
        return GPU_HUB_SETTINGS if on_gpu else HUB_SETTINGS
    return SMALL_SETTINGS


def segment_everything(
    predictor: SamPredictor, image: np.ndarray, settings: EverythingSettings
) -> list[Record]:
    """Every mask in ``image`` (H, W, 3) uint8, largest first, as records with COCO RLE
    segmentations. Shares ``predictor``'s model and embedding cache (an image it has encoded is
    not encoded again) without touching its state."""
    generator = AutomaticMaskGenerator(
        predictor.model,
        points_per_side=settings.points_per_side,
        points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh,
        stability_score_thresh=settings.stability_score_thresh,
        min_mask_region_area=settings.min_mask_region_area,
        output_mode="coco_rle",
    )
    generator.predictor = SamPredictor(predictor.model, cache=predictor.cache)
    records = generator.generate(image)
    return sorted(records, key=lambda r: -r["area"])


def confident(records: list[Record], settings: EverythingSettings) -> list[Record]:
    """The non-empty records at or above the confident predicted-IoU and stability thresholds."""
    return [
        r
        for r in records
        if r["area"] > 0
        and r["predicted_iou"] >= settings.confident_iou
        and r["stability_score"] >= settings.confident_stability
    ]
