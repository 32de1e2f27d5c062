"""Zero-shot object proposals (SAM paper section 7.3 and appendix D.3): automatic mask
generation on a 64x64 grid without crops, NMS at 0.9, ranked by the mean of the predicted IoU
and the stability score; the top K are the proposals."""

from __future__ import annotations

from typing import Any

import numpy as np

from sam.automatic.generator import AutomaticMaskGenerator
from sam.modeling.sam import Sam

PROPOSAL_SETTINGS: dict[str, Any] = {
    "points_per_side": 64,
    "crop_n_layers": 0,
    "box_nms_thresh": 0.9,
    # Ranking, not thresholds, decides which masks are proposals.
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "output_mode": "coco_rle",
}


def proposal_score(record: dict[str, Any]) -> float:
    """Mean of the model's confidence (predicted IoU) and the stability score."""
    stability = record["stability_score"]
    stability = 0.0 if stability != stability else stability  # NaN for empty masks
    return (record["predicted_iou"] + stability) / 2


def generate_proposals(
    model: Sam, image: np.ndarray, top_k: int = 1000, **overrides: Any
) -> list[dict[str, Any]]:
    """(H, W, 3) uint8 image -> at most ``top_k`` generator records, best first, each with a
    "score" added. Keyword arguments override ``PROPOSAL_SETTINGS``."""
    generator = AutomaticMaskGenerator(model, **{**PROPOSAL_SETTINGS, **overrides})
    records = [r for r in generator.generate(image) if r["area"] > 0]
    for record in records:
        record["score"] = proposal_score(record)
    records.sort(key=lambda r: -r["score"])
    return records[:top_k]
