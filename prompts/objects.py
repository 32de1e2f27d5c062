"""The objects a person has segmented: each kept with its own colour, label, mask and the
prompts that made it (so it can be selected and refined later), bounded in number, and exported
as annotations."""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from functools import cache

import numpy as np
from pycocotools import mask as mask_utils

from prompts.annotations import Annotation
from prompts.clicks import PromptState
from sam.io.overlay import distinct_colours

MAX_OBJECTS = 200
DUPLICATE_IOU = 0.5  # a pre-filled mask this close to an object already there is skipped


@cache
def object_colour(object_id: int) -> tuple[int, int, int]:
    """Object ``object_id``'s colour (ids from 1), the same wherever it is drawn."""
    red, green, blue = distinct_colours(object_id + 1, seed=1)[object_id]
    return int(red), int(green), int(blue)


def hex_colour(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


@dataclass(frozen=True)
class KeptObject(Annotation):
    """One object: an annotation (its mask as COCO RLE, label, SAM's predicted IoU, and for
    export the prompt points) that also keeps the prompts that made it (without refinement
    logits) and the chosen candidate's low-res logits (1, 256, 256) in float16, fed back when
    the object is refined again. Objects pre-filled by segment everything have no prompts."""

    prompts: PromptState | None = None
    logits: np.ndarray | None = None
    clip_score: float | None = None

    @classmethod
    def from_prediction(
        cls,
        object_id: int,
        image_id: int,
        label: str,
        mask: np.ndarray,
        score: float,
        prompts: PromptState,
        logits: np.ndarray,
        clip_score: float | None = None,
    ) -> KeptObject:
        points = tuple((p.x, p.y) for p in prompts.points)
        base = Annotation.from_mask(object_id, image_id, label, mask, score, points)
        fields = {f.name: getattr(base, f.name) for f in dataclass_fields(Annotation)}
        return cls(
            **fields,
            prompts=prompts.with_logits(None),
            logits=np.asarray(logits, dtype=np.float16),
            clip_score=clip_score,
        )

    @property
    def object_id(self) -> int:
        return self.annotation_id

    @property
    def colour(self) -> tuple[int, int, int]:
        return object_colour(self.annotation_id)

    def renamed(self, label: str) -> KeptObject:
        return replace(self, label=label)


def clean_label(label: str | None) -> str:
    """A label as shown and exported: one line, at most 60 characters, "object" if empty."""
    return " ".join(str(label or "").split())[:60] or "object"


def duplicates(rle: dict, others: list[dict], threshold: float = DUPLICATE_IOU) -> bool:
    """Whether a mask (COCO RLE, str counts) overlaps any of ``others`` with IoU >= threshold."""
    if not others:
        return False
    encoded = [{**r, "counts": r["counts"].encode()} for r in (rle, *others)]
    return bool(mask_utils.iou(encoded[:1], encoded[1:], [0] * len(others)).max() >= threshold)


class ObjectList:
    """Kept objects across the session's images, in the order they were made; at most
    ``capacity``."""

    def __init__(self, capacity: int = MAX_OBJECTS) -> None:
        self.capacity = capacity
        self.items: list[KeptObject] = []
        self._last_id = 0

    def next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def get(self, object_id: int) -> KeptObject | None:
        return next((o for o in self.items if o.object_id == object_id), None)

    def on_image(self, image_id: int) -> list[KeptObject]:
        return [o for o in self.items if o.image_id == image_id]

    def room(self) -> int:
        return self.capacity - len(self.items)

    def check_room_for(self, object_id: int) -> None:
        """Refuse (ValueError) a new object when the list is full."""
        if self.get(object_id) is None and self.room() <= 0:
            raise ValueError(
                f"at most {self.capacity} objects: download them, then delete some to go on"
            )

    def put(self, kept: KeptObject) -> None:
        """Add ``kept``, or replace the object of the same id in place."""
        for index, existing in enumerate(self.items):
            if existing.object_id == kept.object_id:
                self.items[index] = kept
                return
        self.check_room_for(kept.object_id)
        self.items.append(kept)

    def remove(self, object_id: int) -> None:
        self.items = [o for o in self.items if o.object_id != object_id]

    def annotations(self) -> list[Annotation]:
        return list(self.items)
