"""CLIP's evidence for a text on an image, on CLIP's patch grid: does the text appear at all
(existence), where (the MaskCLIP patch margin map, its peaks and their region), and how well a
mask matches it (dense features pooled inside the mask). Every margin is the text's cosine
similarity minus the best negative's, never min-max normalised, so an absent object stays below
zero instead of its least-bad patch winning."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from prompts.text_results import Evidence, PromptSet


def measure_evidence(
    global_feature: torch.Tensor,
    dense: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    logit_scale: float,
    box: np.ndarray | None,
    size: tuple[int, int],
) -> tuple[Evidence, np.ndarray, np.ndarray]:
    """The text ``target`` (D,) against ``negatives`` (K, D) on the image's global (D,) and
    dense (h, w, D) features -> (evidence, margin map (h, w), patches allowed (h, w) bool: those
    inside the person's ``box`` in image pixels, all without one)."""
    global_sims = torch.cat([target[None], negatives]) @ global_feature
    global_margin = float(global_sims[0] - global_sims[1:].max())
    global_score = float(torch.softmax(logit_scale * global_sims, 0)[0])
    margin_map = (dense @ target - (dense @ negatives.T).max(-1).values).numpy()
    allowed = np.ones_like(margin_map, dtype=bool)
    if box is not None:
        allowed = patches_in_box(margin_map.shape, box, size)
    region_margin = float(margin_map[allowed].max()) if allowed.any() else -np.inf
    return Evidence(global_margin, region_margin, global_score), margin_map, allowed


def peak_prompt_sets(
    margin_map: np.ndarray,
    allowed: np.ndarray,
    size: tuple[int, int],
    user: PromptSet,
    point_threshold: float,
    max_points: int,
    background_points: int,
    use_box: bool,
) -> list[PromptSet]:
    """SAM prompts from the margin map: the best peak alone, all the peaks, and the best peak
    with the box of its above-threshold region; the lowest patches below zero as background
    points in each; the person's clicks added and their box used."""
    h, w = margin_map.shape
    masked = np.where(allowed, margin_map, -np.inf)
    found = peaks(masked, point_threshold, max_points)
    if not found:  # global evidence only: the best patch, still relative to the negatives
        found = [np.unravel_index(int(np.argmax(masked)), masked.shape)]
    lows = peaks(-np.where(allowed, margin_map, np.inf), 0.0, background_points)
    lows = [p for p in lows if margin_map[p] < 0 and p not in found]
    to_xy = lambda rc: patch_centre(rc, (h, w), size)  # noqa: E731
    positive = np.array([to_xy(p) for p in found], dtype=np.float32)
    negative = np.array([to_xy(p) for p in lows], dtype=np.float32).reshape(-1, 2)

    def make(pos: np.ndarray, box: np.ndarray | None, source: str) -> PromptSet:
        coords = [pos, negative]
        labels = [np.ones(len(pos), np.int64), np.zeros(len(negative), np.int64)]
        if user.point_coords is not None:
            coords.append(user.point_coords)
            labels.append(user.point_labels)
        if user.box is not None:
            box = user.box
        return PromptSet(
            np.concatenate(coords).astype(np.float32), np.concatenate(labels), box, source
        )

    sets = [make(positive[:1], None, "peak")]
    if len(positive) > 1:
        sets.append(make(positive, None, "peaks"))
    if use_box and user.box is None:
        region = region_box(margin_map, allowed, found[0], point_threshold, size)
        if region is not None:
            sets.append(make(positive[:1], region, "box"))
    return sets


def peaks(values: np.ndarray, threshold: float, count: int) -> list[tuple[int, int]]:
    """Local maxima (3x3) above ``threshold``, highest first, at most ``count``."""
    if count <= 0:
        return []
    finite = np.where(np.isfinite(values), values, -np.inf)
    local = finite == ndimage.maximum_filter(finite, size=3, mode="constant", cval=-np.inf)
    rows, cols = np.nonzero(local & (finite > threshold))
    order = np.argsort(-finite[rows, cols], kind="stable")[:count]
    return [(int(rows[i]), int(cols[i])) for i in order]


def region_box(margin_map, allowed, peak, threshold, size) -> np.ndarray | None:
    """XYXY box (image pixels) around the above-threshold region holding ``peak``."""
    region, _ = ndimage.label((margin_map > threshold) & allowed)
    label = region[peak]
    if label == 0:
        return None
    rows, cols = np.nonzero(region == label)
    h, w = margin_map.shape
    height, width = size
    return np.array(
        [
            cols.min() * width / w,
            rows.min() * height / h,
            (cols.max() + 1) * width / w,
            (rows.max() + 1) * height / h,
        ],
        dtype=np.float32,
    )


def patch_centre(rc, grid, size) -> tuple[float, float]:
    """The image pixel (x, y) at the centre of patch (row, col) of the (h, w) ``grid``."""
    (r, c), (h, w), (height, width) = rc, grid, size
    return (c + 0.5) * width / w, (r + 0.5) * height / h


def patches_in_box(grid, box, size) -> np.ndarray:
    """(h, w) bool: the patches whose centre is inside ``box`` (XYXY image pixels)."""
    h, w = grid
    height, width = size
    ys = (np.arange(h) + 0.5) * height / h
    xs = (np.arange(w) + 0.5) * width / w
    inside = (ys[:, None] >= box[1]) & (ys[:, None] <= box[3])
    inside = inside & (xs[None, :] >= box[0]) & (xs[None, :] <= box[2])
    if not inside.any():  # a box smaller than a patch: the patch under its centre
        r = min(h - 1, int((box[1] + box[3]) / 2 * h / height))
        c = min(w - 1, int((box[0] + box[2]) / 2 * w / width))
        inside[r, c] = True
    return inside


def patch_cover(masks, grid: tuple[int, int], chunk: int = 8) -> torch.Tensor:
    """Masks (M, H, W) bool (an array or a list of them) -> (M, h * w): the fraction of each
    patch of the (h, w) ``grid`` inside each mask. A few masks at a time, so that full-resolution
    masks are never all converted to float at once."""
    covers = [
        F.adaptive_avg_pool2d(torch.from_numpy(np.stack(masks[i : i + chunk])).float(), grid)
        for i in range(0, len(masks), chunk)
    ]
    return torch.cat(covers).flatten(1)


def cover_margins(
    cover: torch.Tensor, dense: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor
) -> np.ndarray:
    """Dense features (h, w, D) pooled by ``cover`` (M, h * w) of :func:`patch_cover` -> margin
    of the text over the best negative (M,); masks covering nothing get -inf."""
    pooled = F.normalize(cover @ dense.reshape(cover.shape[1], -1), dim=-1)
    margins = pooled @ target - (pooled @ negatives.T).max(1).values
    return torch.where(cover.sum(1) > 0, margins, -torch.inf).numpy()


def pooled_margins(
    dense: torch.Tensor, masks: np.ndarray, target: torch.Tensor, negatives: torch.Tensor
) -> np.ndarray:
    """Free pre-score: dense features (h, w, D) averaged inside each mask (area-weighted on
    the patch grid), margin of the text over the best negative; empty masks get -inf."""
    return cover_margins(patch_cover(masks, dense.shape[:2]), dense, target, negatives)
