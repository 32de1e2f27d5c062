"""``AutomaticMaskGenerator``: a drop-in for ``segment_anything.SamAutomaticMaskGenerator``.

Prompts SAM with a grid of points (over the whole image and, optionally, over overlapping crops),
keeps the confident and stable masks, and removes duplicates with box NMS.

Unlike the reference, which upsamples every candidate to full resolution before filtering, the
predicted-IoU filter runs before any upsampling and the stability filter is first applied to the
low-resolution logits with a safety margin; only the survivors are upsampled, and their
stability score, box, crop-edge check and NMS are then computed at full resolution exactly as
the reference does, so the output is the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area

from sam.automatic.mask_ops import (
    MaskData,
    batch_iterator,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from sam.cache import EmbeddingCache
from sam.fast.mask_resize import valid_low_res
from sam.io.images import as_rgb_uint8
from sam.io.masks import (
    area_from_rle,
    batched_logits_to_box,
    batched_mask_to_box,
    box_xyxy_to_xywh,
    coco_encode_rle,
    mask_to_uncompressed_rle,
    masks_to_rle,
    rle_to_mask,
)
from sam.modeling.promptable import PromptableModel
from sam.predictor import SamPredictor

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# Stability scores of the 256x256 logits and of the full-resolution ones differ by a few
# hundredths at most (more only for masks of a few low-res pixels); candidates this far below
# the threshold at low resolution are still upsampled and scored exactly.
LOW_RES_STABILITY_MARGIN = 0.1
#: Prompts decoded at once on a CPU (see ``_decode_points``).
CPU_DECODE_CHUNK = 4

PRESETS: dict[str, dict[str, Any]] = {
    # The SA-1B fully automatic stage (Kirillov et al. 2023, appendix B): a 32x32 grid on the
    # image plus 16x16 and 8x8 grids on 2x2 and 4x4 overlapping crops, confidence 0.88,
    # stability 0.95, NMS 0.7, and holes/islands under 100 pixels removed.
    "sa1b": {
        "points_per_side": 32,
        "pred_iou_thresh": 0.88,
        "stability_score_thresh": 0.95,
        "stability_score_offset": 1.0,
        "box_nms_thresh": 0.7,
        "crop_n_layers": 2,
        "crop_nms_thresh": 0.7,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
    },
}


class AutomaticMaskGenerator:
    """Same constructor arguments, defaults and ``generate`` records as the reference; ``cache``
    (ours) shares image embeddings with other predictors of the same model."""

    def __init__(
        self,
        model: PromptableModel,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        cache: EmbeddingCache | None = None,
    ) -> None:
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("exactly one of points_per_side or point_grids must be given")
        if points_per_side is not None:
            point_grids = build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        if len(point_grids) < crop_n_layers + 1:
            raise ValueError(f"point_grids needs one grid per layer ({crop_n_layers + 1})")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
        self.point_grids = point_grids
        self.predictor = SamPredictor(model, cache)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @classmethod
    def from_preset(
        cls, model: PromptableModel, preset: str = "sa1b", **overrides: Any
    ) -> AutomaticMaskGenerator:
        """A generator with named settings (see ``PRESETS``); keyword arguments override them."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        return cls(model, **{**PRESETS[preset], **overrides})

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """(H, W, 3) uint8 RGB image -> one record per mask: segmentation (per output_mode),
        bbox (XYWH), area, predicted_iou, point_coords ([[x, y]]), stability_score, crop_box
        (XYWH)."""
        image = as_rgb_uint8(image)
        data = self._generate_masks(image)
        if self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        return [
            {
                "segmentation": self._encode_output(rle),
                "area": area_from_rle(rle),
                "bbox": box_xyxy_to_xywh(box).tolist(),
                "predicted_iou": iou.item(),
                "point_coords": [point.tolist()],
                "stability_score": stability.item(),
                "crop_box": box_xyxy_to_xywh(crop_box).tolist(),
            }
            for rle, box, iou, point, stability, crop_box in zip(
                data["rles"],
                data["boxes"],
                data["iou_preds"],
                data["points"],
                data["stability_score"],
                data["crop_boxes"],
            )
        ]

    def _encode_output(self, rle: dict[str, Any]) -> Any:
        if self.output_mode == "coco_rle":
            return coco_encode_rle(rle)
        mask = rle_to_mask(rle)
        return mask if self.output_mode == "binary_mask" else mask_to_uncompressed_rle(mask)

    def _generate_masks(self, image: np.ndarray) -> MaskData:
        orig_size = image.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        data = MaskData()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs):
            if crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]:
                continue  # tiny images give empty crops, which the reference crashes on
            data.cat(self._process_crop(image, crop_box, layer_idx, orig_size))
        if len(crop_boxes) > 1:
            # Prefer masks from smaller crops, which saw the object at a higher resolution.
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(),
                scores.to(data["boxes"].device),
                torch.zeros(len(data["boxes"]), device=data["boxes"].device),
                iou_threshold=self.crop_nms_thresh,
            )
            data.filter(keep)
        data.to_numpy()
        return data

    def _process_crop(
        self,
        image: np.ndarray,
        crop_box: list[int],
        crop_layer_idx: int,
        orig_size: tuple[int, int],
    ) -> MaskData:
        x0, y0, x1, y1 = crop_box
        cropped = image[y0:y1, x0:x1, :]
        cropped_size = cropped.shape[:2]
        self.predictor.set_image(cropped)
        points_scale = np.array(cropped_size)[None, ::-1]
        points_for_image = self.point_grids[crop_layer_idx] * points_scale

        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            data.cat(self._process_batch(points, cropped_size, crop_box, orig_size))
        self.predictor.reset_image()

        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros(len(data["boxes"]), device=data["boxes"].device),
            iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box]).repeat(len(data["rles"]), 1)
        return data

    def _process_batch(
        self,
        points: np.ndarray,
        cropped_size: tuple[int, int],
        crop_box: list[int],
        orig_size: tuple[int, int],
    ) -> MaskData:
        """(N, 2) points in the crop -> the candidates that pass every filter but NMS."""
        orig_h, orig_w = orig_size
        low_res_logits, iou_preds = self._decode_points(points, cropped_size)
        data = MaskData(
            low_res_logits=low_res_logits.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1),
            points=torch.as_tensor(points.repeat(low_res_logits.shape[1], axis=0)),
        )
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        threshold = self.predictor.model.mask_threshold
        if self.stability_score_thresh > 0.0:
            side = self.predictor.model.image_size
            valid = valid_low_res(data["low_res_logits"], self.predictor.input_size, side)
            rough = calculate_stability_score(valid, threshold, self.stability_score_offset)
            data.filter(rough >= self.stability_score_thresh - LOW_RES_STABILITY_MARGIN)

        model = self.predictor.model
        logits = model.postprocess_masks(
            data["low_res_logits"][:, None], self.predictor.input_size, cropped_size
        )[:, 0]
        del data["low_res_logits"]
        data["stability_score"] = calculate_stability_score(
            logits, threshold, self.stability_score_offset
        )
        if self.stability_score_thresh > 0.0:
            keep = data["stability_score"] >= self.stability_score_thresh
            data.filter(keep)
            logits = logits[keep]
        data["boxes"] = batched_logits_to_box(logits, threshold)
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
            logits = logits[keep]
        masks = uncrop_masks(logits > threshold, crop_box, orig_h, orig_w)
        data["rles"] = masks_to_rle(masks)
        return data

    def _decode_points(
        self, points: np.ndarray, cropped_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 2) crop-frame points -> low-res logits (N, 3, 4h, 4w) and IoU predictions (N, 3)
        for the current image embedding, one positive point per prompt."""
        model = self.predictor.model
        coords = self.predictor.transform.apply_coords(points, cropped_size)
        coords = torch.as_tensor(coords, dtype=torch.float, device=self.predictor.device)[:, None]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        # On a CPU a few prompts at a time stay in cache; a batch of 64 does not.
        chunk = None if coords.is_cuda else CPU_DECODE_CHUNK
        return self.predictor.decode(sparse, dense, multimask_output=True, chunk=chunk)

    @staticmethod
    def postprocess_small_regions(data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
        """Remove holes and islands under ``min_area`` pixels, then rerun box NMS preferring the
        masks left unchanged. Edits ``data`` in place."""
        if len(data["rles"]) == 0:
            return data
        masks, unchanged = [], []
        for rle in data["rles"]:
            mask, holes_changed = remove_small_regions(rle_to_mask(rle), min_area, "holes")
            mask, islands_changed = remove_small_regions(mask, min_area, "islands")
            masks.append(torch.as_tensor(mask))
            unchanged.append(float(not (holes_changed or islands_changed)))
        masks = torch.stack(masks)
        boxes = batched_mask_to_box(masks)
        keep = batched_nms(
            boxes.float(),
            torch.as_tensor(unchanged),
            torch.zeros(len(boxes)),
            iou_threshold=nms_thresh,
        )
        rles = list(data["rles"])
        for i in keep.tolist():
            if unchanged[i] == 0.0:
                rles[i] = masks_to_rle(masks[i : i + 1])[0]
                data["boxes"][i] = boxes[i].numpy()
        data["rles"] = rles
        data.filter(keep)
        return data
