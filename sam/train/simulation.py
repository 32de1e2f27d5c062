"""Simulated interactive prompting for training and evaluation (SAM paper, appendix A).

Iteration 0 prompts with a foreground point or a noisy box (even odds). Each later iteration
feeds back the previous prediction's unthresholded low-res logits as a mask prompt and, in 8 of
them, adds a point drawn uniformly from the error region: foreground on a false negative,
background on a false positive. Two iterations add no point: one at a random place among the
point iterations, one at the end, for 11 in all. Masks may be numpy arrays or torch tensors;
everything returned is numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from sam.io.masks import mask_box

BOX_NOISE_FRACTION = 0.1
BOX_NOISE_MAX = 20.0

IterationKind = Literal["first", "point", "mask_only"]


def _as_bool(mask: Any) -> np.ndarray:
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask, dtype=bool)


@dataclass(frozen=True)
class Prompt:
    """One iteration's prompt, in input-image pixels: ``points_xy`` (N, 2) float32 (x, y),
    ``point_labels`` (N,) int64 (1 foreground, 0 background), ``box`` (4,) float32 XYXY or None,
    ``mask_logits`` (1, 256, 256) low-res logits (numpy or torch) or None."""

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None
    mask_logits: Any = None

    @property
    def num_points(self) -> int:
        return len(self.point_labels)

    @property
    def is_ambiguous(self) -> bool:
        """A lone point: the prompt SAM answers with three masks (``multimask_output``)."""
        return self.num_points == 1 and self.box is None and self.mask_logits is None

    def with_point(self, xy: np.ndarray, label: int) -> Prompt:
        """A copy with the point ``xy`` (2,) and its label appended."""
        point = np.asarray(xy, dtype=np.float32).reshape(1, 2)
        return replace(
            self,
            points_xy=np.concatenate([self.points_xy, point]),
            point_labels=np.append(self.point_labels, np.int64(label)),
        )

    def with_mask_logits(self, mask_logits: Any) -> Prompt:
        """A copy with ``mask_logits`` (1, 256, 256) as the mask prompt."""
        return replace(self, mask_logits=mask_logits)


def noisy_box(rng: np.random.Generator, mask: Any) -> np.ndarray:
    """The mask's box with N(0, (10% of its side)^2) noise per coordinate, each shift capped at
    20 px, clipped to the image: (4,) float32 XYXY."""
    height, width = np.shape(mask)[-2:]
    box = mask_box(_as_bool(mask))
    if box is None:
        raise ValueError("empty mask has no box")
    sides = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2, dtype=np.float32)
    shift = rng.normal(0.0, BOX_NOISE_FRACTION * sides)
    box = box + np.clip(shift, -BOX_NOISE_MAX, BOX_NOISE_MAX)
    box = np.clip(box, 0, [width - 1, height - 1, width - 1, height - 1])
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    return np.array([x0, y0, x1, y1], dtype=np.float32)


def sample_point(rng: np.random.Generator, region: Any) -> np.ndarray | None:
    """(x, y) (2,) float32 of a pixel drawn uniformly from a (H, W) mask; None if it is empty."""
    ys, xs = np.nonzero(_as_bool(region))
    if len(xs) == 0:
        return None
    index = rng.integers(len(xs))
    return np.array([xs[index], ys[index]], dtype=np.float32)


def first_prompt(rng: np.random.Generator, gt_mask: Any, box_probability: float = 0.5) -> Prompt:
    """A foreground point uniform in ``gt_mask`` (H, W), or its noisy box, with even odds."""
    if rng.random() < box_probability:
        return Prompt(box=noisy_box(rng, gt_mask))
    point = sample_point(rng, gt_mask)
    if point is None:
        raise ValueError("empty ground-truth mask")
    return Prompt().with_point(point, 1)


def next_point(
    rng: np.random.Generator, pred_mask: Any, gt_mask: Any
) -> tuple[np.ndarray, int] | None:
    """A point uniform in the error region of ``pred_mask`` vs ``gt_mask`` (both (H, W), same
    size): ((x, y) (2,) float32, 1) on a false negative, (.., 0) on a false positive; None if
    the prediction is exact."""
    pred, gt = _as_bool(pred_mask), _as_bool(gt_mask)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    point = sample_point(rng, pred != gt)
    if point is None:
        return None
    x, y = int(point[0]), int(point[1])
    return point, int(gt[y, x])


@dataclass(frozen=True)
class Iteration:
    """One step of the simulation: ``kind`` is 'first' (initial prompt), 'point' (add an
    error-region point) or 'mask_only' (no new point); all but the first feed back the mask."""

    index: int
    kind: IterationKind

    @property
    def adds_point(self) -> bool:
        return self.kind == "point"

    @property
    def uses_previous_mask(self) -> bool:
        return self.kind != "first"


def simulation_schedule(
    rng: np.random.Generator | None = None, num_points: int = 8, num_mask_only: int = 2
) -> list[Iteration]:
    """The 1 + ``num_points`` + ``num_mask_only`` (11) iterations. One mask-only iteration is
    always last; the others go at random places among the point iterations (evenly spread if
    ``rng`` is None)."""
    kinds: list[IterationKind] = ["point"] * num_points
    for count in range(num_mask_only - 1):
        if rng is None:
            slot = (count + 1) * (num_points + 1) // num_mask_only
        else:
            slot = int(rng.integers(len(kinds) + 1))
        kinds.insert(slot, "mask_only")
    if num_mask_only > 0:
        kinds.append("mask_only")
    return [Iteration(0, "first")] + [Iteration(i + 1, kind) for i, kind in enumerate(kinds)]


def best_by_predicted_iou(mask_logits: Any, iou_pred: Any) -> Any:
    """The output to feed back: ``mask_logits`` (K, h, w) and ``iou_pred`` (K,) -> (1, h, w) of
    highest predicted IoU, as the paper does when several masks are returned."""
    index = int(iou_pred.argmax())
    return mask_logits[index : index + 1]


def next_prompt(
    rng: np.random.Generator,
    prompt: Prompt,
    iteration: Iteration,
    pred_mask: Any,
    gt_mask: Any,
    mask_logits: Any,
) -> Prompt:
    """The prompt for ``iteration`` (index >= 1) given the previous prompt and its chosen output:
    ``pred_mask`` (H, W) bool at input size and its low-res ``mask_logits`` (1, 256, 256), which
    the caller should detach. Adds an error-region point if the iteration calls for one."""
    if not iteration.uses_previous_mask:
        raise ValueError("the first iteration is made by first_prompt")
    prompt = prompt.with_mask_logits(mask_logits)
    if iteration.adds_point:
        point = next_point(rng, pred_mask, gt_mask)
        if point is not None:
            prompt = prompt.with_point(*point)
    return prompt
