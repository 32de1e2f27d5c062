"""Zero-shot edge detection (SAM paper section 7.2 and appendix D.2).

A 16x16 grid of foreground points gives 768 masks; duplicates are removed by box NMS (no IoU
or stability filter); Sobel filtering of the unthresholded mask probabilities, a pixel-wise
max over masks and normalisation give an edge map, which edge NMS thins to one pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torchvision.ops import batched_nms

from sam.automatic.mask_ops import batch_iterator, build_point_grid
from sam.io.masks import batched_logits_to_box
from sam.modeling.sam import Sam
from sam.predictor import SamPredictor

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_magnitude(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, H, W) gradient magnitude of the 3x3 Sobel filters (edges replicated)."""
    kernels = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(maps)
    padded = F.pad(maps[:, None], (1, 1, 1, 1), mode="replicate")
    gradients = F.conv2d(padded, kernels)
    return gradients.pow(2).sum(1).sqrt()


def edge_orientation(edges: np.ndarray, smoothing: float = 2.0) -> np.ndarray:
    """(H, W) edge strength -> angle of the edge normal, from the smoothed structure tensor
    (well defined on a ridge's crest, where the gradient itself vanishes)."""
    dy, dx = np.gradient(edges)
    jxx = ndimage.gaussian_filter(dx * dx, smoothing)
    jxy = ndimage.gaussian_filter(dx * dy, smoothing)
    jyy = ndimage.gaussian_filter(dy * dy, smoothing)
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy)


def edge_nms(edges: np.ndarray, radius: float = 1.0) -> np.ndarray:
    """Thin an (H, W) edge map: zero every pixel weaker than either neighbour along the edge
    normal (sampled ``radius`` pixels away, bilinearly)."""
    orientation = edge_orientation(edges)
    ys, xs = np.mgrid[: edges.shape[0], : edges.shape[1]].astype(np.float64)
    dx, dy = np.cos(orientation) * radius, np.sin(orientation) * radius
    thinned = edges.copy()
    for sign in (1.0, -1.0):
        neighbour = ndimage.map_coordinates(
            edges, [ys + sign * dy, xs + sign * dx], order=1, mode="nearest"
        )
        thinned[edges < neighbour] = 0.0
    return thinned


@torch.no_grad()
def detect_edges(
    model: Sam,
    image: np.ndarray,
    points_per_side: int = 16,
    points_per_batch: int = 64,
    nms_thresh: float = 0.7,
    thin: bool = True,
) -> np.ndarray:
    """(H, W, 3) uint8 image -> (H, W) float32 edge map in [0, 1]."""
    predictor = SamPredictor(model)
    predictor.set_image(image)
    height, width = image.shape[:2]
    points = build_point_grid(points_per_side) * np.array([[width, height]])

    low_res, scores, boxes = [], [], []
    for (batch,) in batch_iterator(points_per_batch, points):
        coords = predictor.transform.apply_coords(batch, (height, width))
        coords = torch.as_tensor(coords, dtype=torch.float, device=predictor.device)[:, None]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
        full, iou_preds, logits = predictor.predict_torch(coords, labels, return_logits=True)
        boxes.append(batched_logits_to_box(full.flatten(0, 1), model.mask_threshold))
        logits, iou_preds = logits.flatten(0, 1), iou_preds.flatten(0, 1)
        low_res.append(logits)
        scores.append(iou_preds)
    low_res, scores, boxes = torch.cat(low_res), torch.cat(scores), torch.cat(boxes)
    keep = batched_nms(boxes.float(), scores, torch.zeros_like(scores), nms_thresh)

    edges = torch.zeros(height, width, device=predictor.device)
    for (index,) in batch_iterator(points_per_batch, keep):
        logits = model.postprocess_masks(
            low_res[index][:, None], predictor.input_size, (height, width)
        )[:, 0]
        edges = torch.maximum(edges, sobel_magnitude(torch.sigmoid(logits)).amax(0))
    edges = (edges / edges.max().clamp_min(1e-12)).cpu().numpy().astype(np.float32)
    return edge_nms(edges) if thin else edges
