"""The automatic mask generator's operations: point grids, crops, stability scores, small
regions. Same semantics as ``segment_anything.utils.amg``; boxes and RLE live in
:mod:`sam.io.masks`, NMS is torchvision's and connected components are scipy's.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from itertools import product
from typing import Any

import numpy as np
import torch
from scipy import ndimage


class MaskData:
    """Per-mask columns (tensors, arrays or lists of equal length) filtered and grown together."""

    def __init__(self, **columns: torch.Tensor | np.ndarray | list) -> None:
        self._columns: dict[str, torch.Tensor | np.ndarray | list] = {}
        for key, value in columns.items():
            self[key] = value

    def __setitem__(self, key: str, value: torch.Tensor | np.ndarray | list) -> None:
        if not isinstance(value, torch.Tensor | np.ndarray | list):
            raise TypeError(f"MaskData column {key!r} must be a tensor, array or list")
        self._columns[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._columns[key]

    def __delitem__(self, key: str) -> None:
        del self._columns[key]

    def __contains__(self, key: str) -> bool:
        return key in self._columns

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    def items(self):
        return self._columns.items()

    def filter(self, keep: torch.Tensor | np.ndarray) -> None:
        """Keep the rows selected by a boolean mask or an index array, in that order."""
        keep = torch.as_tensor(keep).cpu()
        index = keep.nonzero().flatten() if keep.dtype == torch.bool else keep.long()
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                self._columns[key] = value[index.to(value.device)]
            elif isinstance(value, np.ndarray):
                self._columns[key] = value[index.numpy()]
            else:
                self._columns[key] = [value[i] for i in index.tolist()]

    def cat(self, other: MaskData) -> None:
        """Append the rows of ``other`` (columns missing here are taken as they are)."""
        for key, value in other.items():
            mine = self._columns.get(key)
            if mine is None:
                self._columns[key] = value
            elif isinstance(value, torch.Tensor):
                self._columns[key] = torch.cat([mine, value.to(mine.device)])
            elif isinstance(value, np.ndarray):
                self._columns[key] = np.concatenate([mine, value])
            else:
                self._columns[key] = mine + list(value)

    def to_numpy(self) -> None:
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                self._columns[key] = value.detach().cpu().numpy()


def batch_iterator(batch_size: int, *arrays: Sequence) -> Iterator[list]:
    """Slices of ``batch_size`` rows from each of ``arrays`` (all the same length)."""
    if not arrays or any(len(a) != len(arrays[0]) for a in arrays):
        raise ValueError("batch_iterator needs one or more inputs of the same length")
    for start in range(0, len(arrays[0]), batch_size):
        yield [a[start : start + batch_size] for a in arrays]


# -- point grids and crops ---------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) XY points at the centres of an n x n grid of cells over [0, 1]^2, row-major."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``n_per_side / scale_per_layer**i`` points a side."""
    return [build_point_grid(int(n_per_side / scale_per_layer**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes and their layer: the whole image, then (2^i)^2 overlapping crops for
    layer i = 1..n_layers."""
    im_h, im_w = image_size
    short_side = min(im_h, im_w)
    crop_boxes, layer_idxs = [[0, 0, im_w, im_h]], [0]
    for i_layer in range(n_layers):
        n_crops = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = math.ceil((overlap * (n_crops - 1) + im_w) / n_crops)
        crop_h = math.ceil((overlap * (n_crops - 1) + im_h) / n_crops)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0, y0 in product(x0s, y0s):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(i_layer + 1)
    return crop_boxes, layer_idxs


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 4) boxes in the crop frame -> in the image frame."""
    x0, y0 = crop_box[:2]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """(..., 2) points in the crop frame -> in the image frame."""
    x0, y0 = crop_box[:2]
    return points + torch.tensor([x0, y0], device=points.device)


def uncrop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """(B, h, w) masks of a crop -> (B, orig_h, orig_w), zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)
    return torch.nn.functional.pad(masks, pad, value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor,
    crop_box: Sequence[int],
    orig_box: Sequence[int],
    atol: float = 20.0,
) -> torch.Tensor:
    """(B,) True where a crop-frame XYXY box touches an edge of its crop that is not an edge
    of the image (such masks are probably cut off by the crop)."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop_edge = torch.isclose(boxes, crop[None], atol=atol, rtol=0)
    near_image_edge = torch.isclose(boxes, orig[None], atol=atol, rtol=0)
    return torch.any(near_crop_edge & ~near_image_edge, dim=1)


# -- scores --------------------------------------------------------------------------


def calculate_stability_score(
    mask_logits: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """(..., H, W) logits -> (...) IoU of the masks thresholded at threshold +- offset (the
    high one is inside the low one, so IoU = area_high / area_low)."""
    high = _area(mask_logits > mask_threshold + threshold_offset)
    low = _area(mask_logits > mask_threshold - threshold_offset)
    return high / low


def _area(masks: torch.Tensor) -> torch.Tensor:
    # Summing rows in int16 first is several times faster than one int64 sum (rows < 32768).
    return masks.sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)


# -- post-processing ---------------------------------------------------------------------------

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than ``area_thresh`` pixels, with
    8-connectivity; returns the mask and whether it changed. Keeps the largest island if every
    island is small."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    correct_holes = mode == "holes"
    working = correct_holes ^ mask.astype(bool)
    regions, n_regions = ndimage.label(working, structure=EIGHT_CONNECTED)
    sizes = np.bincount(regions.ravel(), minlength=n_regions + 1)[1:]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    if correct_holes:
        fill_labels = [0, *small]
    else:
        fill_labels = [i for i in range(1, n_regions + 1) if i not in set(small)]
        if not fill_labels:
            fill_labels = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill_labels), True
