"""Verifying SAM's masks for a text and choosing among prompt sets: each mask is scored by CLIP on
a masked crop (pixels outside the mask greyed or blurred, never the raw box crop, so neighbours
cannot vote), and the prompt set whose best mask scores highest wins if it passes the gate."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

from prompts.clip_model import ClipModel
from prompts.text_results import PromptSet, TextCandidate
from sam.cache import content_key

GREY = (124, 116, 104)  # CLIP's mean colour: neutral after normalisation


def masked_crop(
    image: np.ndarray, mask: np.ndarray, outside: str = "grey", context: float = 0.1
) -> np.ndarray | None:
    """The mask's box (plus ``context``) with every pixel outside the mask greyed or blurred,
    padded to a square with grey; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    height, width = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad_y = max(1, int((y1 - y0) * context + 0.5))
    pad_x = max(1, int((x1 - x0) * context + 0.5))
    y0, y1 = max(0, y0 - pad_y), min(height, y1 + pad_y)
    x0, x1 = max(0, x0 - pad_x), min(width, x1 + pad_x)
    crop = image[y0:y1, x0:x1]
    keep = mask[y0:y1, x0:x1, None]
    if outside == "blur":
        radius = max(2.0, max(crop.shape[:2]) / 10)
        blurred = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius)))
        background = (blurred * 0.5 + np.array(GREY) * 0.5).astype(np.uint8)
    else:
        background = np.broadcast_to(np.array(GREY, dtype=np.uint8), crop.shape)
    crop = np.where(keep, crop, background)
    side = max(crop.shape[:2])
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[:] = GREY
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return square


def score_masks(
    clip: ClipModel,
    image: np.ndarray,
    masks: np.ndarray,
    target: torch.Tensor,
    negatives: torch.Tensor,
    outside: str = "grey",
    context: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """CLIP on masked crops (one batch, each distinct mask once) -> (margins, scores) per mask;
    empty masks get (-inf, 0)."""
    margins = np.full(len(masks), -np.inf, dtype=np.float32)
    scores = np.zeros(len(masks), dtype=np.float32)
    crops, index, seen = [], [], {}
    for i, mask in enumerate(masks):
        key = content_key(np.packbits(mask), mask.shape)
        if key in seen:  # the same mask from another prompt set: score it once
            seen[key].append(i)
            continue
        crop = masked_crop(image, mask, outside, context)
        if crop is not None:
            seen[key] = [i]
            crops.append(crop)
            index.append(seen[key])
    if crops:
        features = clip.encode_image(crops)
        sims = features @ torch.cat([target[None], negatives]).T  # (M, 1 + K)
        crop_margins = (sims[:, 0] - sims[:, 1:].max(1).values).numpy()
        crop_scores = torch.softmax(clip.logit_scale * sims, 1)[:, 0].numpy()
        for j, targets in enumerate(index):
            margins[targets] = crop_margins[j]
            scores[targets] = crop_scores[j]
    return margins, scores


def ranked_candidates(
    outputs: list[tuple[np.ndarray, ...]], margins: np.ndarray, scores: np.ndarray
) -> list[list[TextCandidate]]:
    """SAM outputs (masks (3, H, W), ious (3,), low_res (3, h, w)) per prompt set, with the
    CLIP margins and scores of all their masks in that order -> each set's candidates, best
    predicted IoU first."""
    results, start = [], 0
    for masks, ious, low_res in outputs:
        set_margins = margins[start : start + len(masks)]
        set_scores = scores[start : start + len(masks)]
        start += len(masks)
        order = np.argsort(-ious, kind="stable")
        results.append(
            [
                TextCandidate(
                    mask=masks[i],
                    iou=float(ious[i]),
                    clip_score=float(set_scores[i]),
                    clip_margin=float(set_margins[i]),
                    low_res_logits=low_res[i : i + 1],
                    output_index=int(i),
                )
                for i in order
            ]
        )
    return results


def best_prompt_set(
    scored: list[tuple[PromptSet, list[TextCandidate]]], iou_weight: float = 0.0
) -> tuple[PromptSet, list[TextCandidate]]:
    """The prompt set whose best candidate scores highest: CLIP margin plus ``iou_weight``
    times SAM's predicted IoU (ties: the higher predicted IoU)."""
    return max(
        scored, key=lambda pc: max((c.clip_margin + iou_weight * c.iou, c.iou) for c in pc[1])
    )


def passing_prompt_set(
    scored: list[tuple[PromptSet, list[TextCandidate]]], iou_weight: float, verify_threshold: float
) -> tuple[PromptSet, list[TextCandidate]] | None:
    """:func:`best_prompt_set`, or None if there is none or its best CLIP margin does not pass
    ``verify_threshold`` (the gate of :meth:`prompts.text_prompter.TextPrompter.segment`)."""
    if not scored:
        return None
    prompts, candidates = best_prompt_set(scored, iou_weight)
    if max(c.clip_margin for c in candidates) <= verify_threshold:
        return None
    return prompts, candidates
