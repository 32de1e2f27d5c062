"""What goes into and comes out of a text prompt: the text and the person's own clicks and box,
checked, and the result types (:class:`TextResult` with its ranked :class:`TextCandidate` masks,
the :class:`PromptSet` that made them and the :class:`Evidence` that the text is there)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prompts.clip_model import MAX_TEXT_CHARS
from sam.validation import check_boxes, check_points


@dataclass(frozen=True)
class TextCandidate:
    """One SAM mask with its CLIP verdict."""

    mask: np.ndarray  # (H, W) bool
    iou: float  # SAM's predicted IoU
    clip_score: float  # P(text | masked crop) against the negatives, 0..1
    clip_margin: float  # cos(crop, text) - max cos(crop, negative); > 0: text beats negatives
    low_res_logits: np.ndarray  # (1, 256, 256), usable as the next mask_input
    output_index: int


@dataclass(frozen=True)
class PromptSet:
    """Prompts handed to SAM, in original-image pixels."""

    point_coords: np.ndarray | None  # (N, 2) xy
    point_labels: np.ndarray | None  # (N,) 1 foreground, 0 background
    box: np.ndarray | None  # (4,) XYXY
    source: str  # "peak", "peaks", "box", "proposal", "user"


@dataclass(frozen=True)
class Evidence:
    """Does the text appear at all? Margins are cosine(text) - max cosine(negatives)."""

    global_margin: float
    region_margin: float  # best patch of the dense similarity map
    global_score: float  # P(text) against the negatives on the whole image

    @property
    def margin(self) -> float:
        return max(self.global_margin, self.region_margin)


@dataclass
class TextResult:
    text: str  # the text as used (cleaned, possibly truncated)
    found: bool
    message: str
    candidates: list[TextCandidate] = field(default_factory=list)  # best predicted IoU first
    prompts: PromptSet | None = None
    evidence: Evidence | None = None
    similarity: np.ndarray | None = None  # (h, w) patch margin over the negatives
    truncated: bool = False
    # every verified prompt set with its candidates, the chosen one included (when found)
    alternatives: list[tuple[PromptSet, list[TextCandidate]]] = field(default_factory=list)

    @property
    def best(self) -> TextCandidate | None:
        return self.candidates[0] if self.candidates else None


def clean_text(text: object) -> tuple[str, bool]:
    """Validate a text prompt -> (cleaned text, whether it was truncated)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError('text is empty: describe what to segment, e.g. "red circle"')
    truncated = len(cleaned) > MAX_TEXT_CHARS
    return cleaned[:MAX_TEXT_CHARS], truncated


def user_prompt_set(points, labels, box) -> PromptSet:
    """The person's own clicks (N, 2) with labels (N,) 1/0 and box (4,) XYXY, checked, as a
    :class:`PromptSet` (any of them None; no clicks at all count as none)."""
    if points is None and labels is not None:
        raise ValueError("points must be supplied if labels is supplied")
    if points is not None:
        if labels is None:
            raise ValueError("labels must be supplied if points is supplied")
        check_points(points, labels)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if np.any(labels == -1):
            raise ValueError("labels must be 1 (foreground) or 0 (background)")
        if len(points) == 0:
            points = labels = None
    if box is not None:
        check_boxes(box)
        box = np.asarray(box, dtype=np.float32).reshape(4)
    return PromptSet(points, labels, box, "user")
