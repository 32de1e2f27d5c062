"""Text plus clicks, as the page documents them: the text finds an object (negative clicks cut
it and a box restricts it, inside the text prompter), and every positive click outside the
text's mask adds the object under it, so a click on a second object extends the result."""

from __future__ import annotations

import numpy as np

from prompts.text_prompter import TextPrompter
from prompts.text_results import TextResult
from sam import Candidate, SamPredictor

QUOTED_CHARS = 40


def quoted(text: str, limit: int = QUOTED_CHARS) -> str:
    """``text`` in quotes for a status line, cut to ``limit`` characters."""
    return f'"{text if len(text) <= limit else text[: limit - 1].rstrip() + "…"}"'


def segment_text_with_clicks(
    prompter: TextPrompter,
    image: np.ndarray,
    text: str,
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
) -> tuple[list[Candidate], list[float] | None, str]:
    """Text plus clicks (N, 2) with labels (N,) and a box (4,) -> candidates best predicted IoU
    first, their CLIP scores (None when the masks come from the clicks alone), and a status
    sentence. Negative clicks and the box go to the text prompter with the text; positive
    clicks outside the best text mask are segmented on their own (each with every negative
    click) and added to every candidate, their logits joined by maximum (a union)."""
    positive = np.zeros(0, bool) if labels is None else np.asarray(labels) == 1
    negatives = None if points is None else np.asarray(points)[~positive]
    if negatives is not None and not len(negatives):
        negatives = None
    result = prompter.segment(
        image,
        text,
        points=negatives,
        labels=None if negatives is None else np.zeros(len(negatives), np.int32),
        box=box,
    )
    candidates = [
        Candidate(c.mask, c.iou, c.low_res_logits, c.output_index) for c in result.candidates
    ]
    # masks of a text that was not found come from the box and clicks: no CLIP score
    clip_scores = [c.clip_score for c in result.candidates] if result.found else None
    if positive.any():
        clicked = np.asarray(points)[positive]
        outside = [p for p in clicked if not _covers(candidates, p)]
        if outside:
            added = _click_masks(prompter.predictor, outside, negatives)
            if candidates:
                candidates = [_union(c, added) for c in candidates]
            else:
                candidates, clip_scores = added, None
    return candidates, clip_scores, _status(result, bool(candidates))


def _covers(candidates: list[Candidate], point: np.ndarray) -> bool:
    if not candidates:
        return False
    mask = candidates[0].mask
    x, y = int(point[0]), int(point[1])
    return bool(mask[min(y, mask.shape[0] - 1), min(x, mask.shape[1] - 1)])


def _click_masks(
    predictor: SamPredictor, clicked: list[np.ndarray], negatives: np.ndarray | None
) -> list[Candidate]:
    """Each positive click with every negative one -> their union, as three ranked
    candidates (the k-th best of every click joined)."""
    extra = np.zeros((0, 2)) if negatives is None else np.asarray(negatives, float)
    sets = [np.concatenate([np.asarray([p], float), extra]) for p in clicked]
    label_sets = [np.array([1] + [0] * len(extra)) for _ in clicked]
    ranked = predictor.predict_batch(point_coords=sets, point_labels=label_sets)
    joined = ranked[0]
    for other in ranked[1:]:
        joined = [_union(a, [b]) for a, b in zip(joined, other)]
    return joined


def _union(candidate: Candidate, added: list[Candidate]) -> Candidate:
    """``candidate`` with the best of ``added`` joined to it (the predicted IoU stays its own)."""
    best = added[0]
    return Candidate(
        candidate.mask | best.mask,
        candidate.score,
        np.maximum(candidate.low_res_logits, best.low_res_logits),
        candidate.output_index,
    )


def _status(result: TextResult, has_masks: bool) -> str:
    text = quoted(result.text)
    if result.found:
        best = max(c.clip_score for c in result.candidates)
        status = f"Found {text} (CLIP score {best:.2f})."
    elif has_masks:
        status = f"{text} was not found; the masks come from your clicks and box alone."
    else:
        status = f"{text} was not found: try other words, or click on the object."
    if result.truncated:
        status += f" The text was shortened to {len(result.text)} characters."
    return status
