"""Which CLIP model serves text prompts for which SAM model, loaded lazily and kept once per
process: the bundled tiny CLIP for the demo (and test) models, open_clip's ViT-B-16 trained on
DataComp for Meta's vit_b/l/h."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prompts.clip_model import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEMO_CLIP_CHECKPOINT,
    DEMO_MODEL_NAME,
    ClipLoadError,
    ClipModel,
    create_random_clip,
    load_clip,
)

log = logging.getLogger(__name__)

ClipKind = Literal["demo", "default"]
#: TextPrompter settings for the bundled tiny CLIP and SAM: two refinement rounds, and the
#: threshold and weight chosen with them on 100 validation scenes (seed 2, not the held-out seed
#: 1) with ``sam.train.demo_clip.choose_text_options`` (objective, picked + absent: 1.551 without
#: refinement and the previous CLIP, 1.616 with refinement, 1.644 with refinement and the current
#: CLIP); the proposal fallback, cheap with the tiny SAM, measured on 50 of them (iou_weight 0:
#: right object found 0.80 -> 0.83, absent rejected 0.85 -> 0.83).
DEMO_TEXT_OPTIONS = {
    "verify_threshold": 0.1,
    "iou_weight": 0.2,
    "proposal_points": 16,
    "refine_rounds": 2,
}
RETRY_AFTER_S = 300.0  # a failed CLIP download is retried after this long, not on every request
UNTRAINED_NOTE = (
    "Note: the bundled CLIP is not trained yet, so text results come from an untrained model "
    "and are meaningless."
)


@dataclass(frozen=True)
class TextModel:
    """A CLIP model ready for text prompts; ``note`` is shown with every text result (empty
    when there is nothing to say); ``options`` are keyword arguments for
    :class:`prompts.text_prompter.TextPrompter` (thresholds that suit this CLIP)."""

    clip: ClipModel
    note: str = ""
    options: dict = field(default_factory=dict)


ClipLoader = Callable[[ClipKind], TextModel]


def clip_kind(sam_model: str) -> ClipKind:
    """The CLIP that goes with a SAM model name: the tiny one for the small models and for
    checkpoint files of unknown size, ViT-B-16 for Meta's models."""
    return "default" if sam_model in ("vit_b", "vit_l", "vit_h") else "demo"


def load_text_model(kind: ClipKind) -> TextModel:
    """Load the CLIP of ``kind``; raises :class:`ClipLoadError` with a message a person can act
    on. The tiny CLIP falls back to random weights (with a note) while it is not bundled."""
    if kind == "demo":
        if Path(DEMO_CLIP_CHECKPOINT).is_file():
            return TextModel(load_clip("demo"), options=dict(DEMO_TEXT_OPTIONS))
        log.warning("the bundled CLIP %s is missing: using random weights", DEMO_CLIP_CHECKPOINT)
        return TextModel(create_random_clip(DEMO_MODEL_NAME), UNTRAINED_NOTE)
    try:
        return TextModel(load_clip(DEFAULT_MODEL, DEFAULT_PRETRAINED))
    except ClipLoadError as error:
        raise ClipLoadError(
            f"Text prompts need the CLIP model {DEFAULT_MODEL} ({DEFAULT_PRETRAINED}) from the "
            f"Hugging Face Hub, which could not be loaded; clicks, boxes, brush and segment "
            f"everything keep working. Details: {error}"
        ) from error


class TextModels:
    """CLIP models loaded on first use and shared by every session. A failed load is remembered
    for ``retry_after_s`` seconds so an offline machine is not asked again on every request."""

    def __init__(
        self, loader: ClipLoader = load_text_model, retry_after_s: float = RETRY_AFTER_S
    ) -> None:
        self.loader, self.retry_after_s = loader, retry_after_s
        self._models: dict[ClipKind, TextModel] = {}
        self._failures: dict[ClipKind, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, kind: ClipKind) -> TextModel:
        """The CLIP of ``kind``; raises ValueError (the reason, for the person) if unavailable."""
        with self._lock:
            if kind in self._models:
                return self._models[kind]
            failed = self._failures.get(kind)
            if failed is not None and time.monotonic() - failed[0] < self.retry_after_s:
                raise ValueError(failed[1])
            try:
                model = self.loader(kind)
            except (ClipLoadError, OSError, RuntimeError) as error:
                message = str(error)
                self._failures[kind] = (time.monotonic(), message)
                log.warning("text prompts unavailable: %s", message)
                raise ValueError(message) from error
            self._failures.pop(kind, None)
            self._models[kind] = model
            return model
