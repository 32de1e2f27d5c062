"""What the page's tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import huggingface_hub.constants

from prompts.everything import EverythingSettings

# Keep every mask segment everything finds, and call all of them confident (random weights).
KEEP_ALL = EverythingSettings(
    points_per_side=4,
    pred_iou_thresh=0.0,
    stability_score_thresh=0.0,
    min_mask_region_area=0,
    confident_iou=0.0,
    confident_stability=0.0,
)


@contextmanager
def hub_state_kept() -> Iterator[None]:
    """huggingface_hub's offline switch and the HF_HUB_OFFLINE variable restored afterwards:
    a page whose Hub probe fails switches both on for the rest of the process."""
    offline, variable = huggingface_hub.constants.HF_HUB_OFFLINE, os.environ.get("HF_HUB_OFFLINE")
    try:
        yield
    finally:
        huggingface_hub.constants.HF_HUB_OFFLINE = offline
        if variable is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = variable
