"""Masks as data: boxes, run-length encoding (COCO layout, through pycocotools) and IoU.

One definition of each for the whole project: the automatic mask generator, the exporters, the
evaluation, the trainer's prompt simulation and the page all use these.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Rle = dict[str, Any]  # {"size": [h, w], "counts": bytes | str | list[int]}


def pycocotools_mask():
    """pycocotools' mask module, imported on first use: the model, the predictor and training on
    generated scenes run without pycocotools."""
    from pycocotools import mask

    return mask


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty (they agree)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def mask_box(mask: np.ndarray | torch.Tensor) -> np.ndarray | None:
    """Tight XYXY box (4,) float32 of an (H, W) mask, x1 and y1 the last covered pixel; None
    if the mask is empty."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    ys, xs = np.nonzero(np.asarray(mask, dtype=bool))
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (..., 4) XYXY boxes with inclusive max; [0, 0, 0, 0] if empty."""
    return _box_from_projections(masks.any(dim=-1), masks.any(dim=-2))


def batched_logits_to_box(mask_logits: torch.Tensor, mask_threshold: float) -> torch.Tensor:
    """The boxes of ``mask_logits > mask_threshold`` without building the masks."""
    rows = mask_logits.amax(dim=-1) > mask_threshold
    cols = mask_logits.amax(dim=-2) > mask_threshold
    return _box_from_projections(rows, cols)


def _box_from_projections(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(..., H) and (..., W): whether each row / column holds any of the mask -> (..., 4)."""
    h, w = rows.shape[-1], cols.shape[-1]
    row_index = torch.arange(h, device=rows.device)
    col_index = torch.arange(w, device=cols.device)
    top = torch.where(rows, row_index, h).amin(-1, keepdim=True)
    bottom = torch.where(rows, row_index, -1).amax(-1, keepdim=True)
    left = torch.where(cols, col_index, w).amin(-1, keepdim=True)
    right = torch.where(cols, col_index, -1).amax(-1, keepdim=True)
    boxes = torch.cat([left, top, right, bottom], dim=-1).long()
    return boxes * rows.any(-1, keepdim=True)


def box_xyxy_to_xywh(box: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """(..., 4) XYXY -> XYWH."""
    xywh = box.clone() if isinstance(box, torch.Tensor) else np.array(box, copy=True)
    xywh[..., 2:] = xywh[..., 2:] - xywh[..., :2]
    return xywh


# -- run-length encoding (COCO layout: column-major, counts start with zeros) ------------------


def masks_to_rle(masks: torch.Tensor | np.ndarray) -> list[Rle]:
    """(B, H, W) bool -> COCO compressed RLEs (``counts`` as bytes, pycocotools' own form)."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    if len(masks) == 0:
        return []
    return pycocotools_mask().encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def rle_to_mask(rle: Rle) -> np.ndarray:
    """Any COCO RLE (compressed, JSON-ready or uncompressed) -> (H, W) bool."""
    return pycocotools_mask().decode(to_compressed_rle(rle)).astype(bool)


def to_compressed_rle(rle: Rle) -> Rle:
    """Uncompressed (list counts) or JSON (str counts) RLE -> pycocotools' form (bytes)."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):
        return pycocotools_mask().frPyObjects(rle, h, w)
    if isinstance(counts, str):
        return {"size": [h, w], "counts": counts.encode("utf-8")}
    return rle


def coco_encode_rle(rle: Rle) -> Rle:
    """Any RLE -> COCO RLE with ``counts`` as a str, ready for JSON."""
    compressed = to_compressed_rle(rle)
    return {"size": list(compressed["size"]), "counts": compressed["counts"].decode("utf-8")}


def mask_to_uncompressed_rle(mask: np.ndarray) -> Rle:
    """(H, W) bool -> {"size": [H, W], "counts": [int, ...]}, column-major, zeros first."""
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    boundaries = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(boundaries).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [h, w], "counts": counts}


def bbox_from_rle(rle: Rle) -> list[float]:
    """XYWH box of any RLE as pycocotools computes it (width and height count pixels)."""
    return [float(v) for v in pycocotools_mask().toBbox(to_compressed_rle(rle))]


def area_from_rle(rle: Rle) -> int:
    """Foreground pixel count of any RLE."""
    if isinstance(rle["counts"], list):
        return int(sum(rle["counts"][1::2]))
    return int(pycocotools_mask().area(to_compressed_rle(rle)))
