"""Zero-shot instance segmentation (SAM paper section 7.4): each detector box prompts SAM, the
single-output mask becomes the instance; results in the COCO results format."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sam.automatic.mask_ops import batch_iterator
from sam.io.masks import batched_mask_to_box, box_xyxy_to_xywh, coco_encode_rle, masks_to_rle
from sam.modeling.sam import Sam
from sam.predictor import SamPredictor


@torch.no_grad()
def segment_boxes(
    model: Sam,
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    category_ids: np.ndarray,
    image_id: int,
    boxes_per_batch: int = 64,
) -> list[dict[str, Any]]:
    """Detections (N, 4) XYXY boxes in image pixels, their scores and categories -> COCO
    results ({"image_id", "category_id", "segmentation" (RLE), "bbox" (XYWH of the mask),
    "score"}), one per box, in order."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes) == len(scores) == len(category_ids):
        raise ValueError("boxes, scores and category_ids must have the same length")
    predictor = SamPredictor(model)
    predictor.set_image(image)
    results = []
    for batch, batch_scores, batch_categories in batch_iterator(
        boxes_per_batch, boxes, np.asarray(scores), np.asarray(category_ids)
    ):
        prompts = predictor.transform.apply_boxes(batch, predictor.original_size)
        prompts = torch.as_tensor(prompts, dtype=torch.float, device=predictor.device)
        masks, _, _ = predictor.predict_torch(None, None, boxes=prompts, multimask_output=False)
        masks = masks[:, 0]
        mask_boxes = box_xyxy_to_xywh(batched_mask_to_box(masks)).tolist()
        for rle, box, score, category in zip(
            masks_to_rle(masks), mask_boxes, batch_scores, batch_categories
        ):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category),
                    "segmentation": coco_encode_rle(rle),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    return results
