"""What a person has clicked so far on one image: points, box corners, a brush mask, and the
candidate being refined, as an immutable :class:`PromptState` that turns into predictor arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

FOREGROUND = 1
BACKGROUND = 0
MAX_POINTS = 64
MAX_TEXTS = 64
MAX_TEXT_CHARS = 1000

Step = Literal["point", "corner", "brush", "text"]


@dataclass(frozen=True)
class Point:
    """A click in original-image pixels; ``label`` is 1 (foreground) or 0 (background)."""

    x: float
    y: float
    label: int


@dataclass(frozen=True)
class PromptState:
    """Prompts on one image of ``image_size`` (H, W). Every operation returns a new state.

    ``corners`` holds the box's clicked corners: one while a box is being drawn, two once it is
    complete. ``brush_input`` is a low-res mask_input made from a brush stroke and
    ``logits`` the low-res logits of the candidate being refined (fed back as mask_input).
    ``texts`` holds the text prompts given, latest last; only the latest (:attr:`text`) is used.
    ``steps`` records the order of edits, so :meth:`undo` removes the latest one.
    """

    image_size: tuple[int, int]
    points: tuple[Point, ...] = ()
    corners: tuple[tuple[float, float], ...] = ()
    brush_input: np.ndarray | None = None
    logits: np.ndarray | None = None
    texts: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()

    # -- edits ----------------------------------------------------------------------------------

    def add_point(self, x: float, y: float, label: int = FOREGROUND) -> PromptState:
        """A foreground (1) or background (0) click."""
        if label not in (FOREGROUND, BACKGROUND):
            raise ValueError(f"label must be 1 (foreground) or 0 (background), got {label!r}")
        if len(self.points) >= MAX_POINTS:
            raise ValueError(f"at most {MAX_POINTS} points per object: undo or clear some first")
        self._check_inside(x, y)
        point = Point(float(x), float(y), int(label))
        return replace(self, points=(*self.points, point), steps=(*self.steps, "point"))

    def add_corner(self, x: float, y: float) -> PromptState:
        """A box corner: the first click starts a box, the second completes it; a click after a
        complete box starts a new one. A box with no width or height is refused."""
        self._check_inside(x, y)
        corner = (float(x), float(y))
        if len(self.corners) == 1:
            (x0, y0) = self.corners[0]
            if x0 == corner[0] or y0 == corner[1]:
                raise ValueError(
                    f"the box from ({x0:g}, {y0:g}) to ({corner[0]:g}, {corner[1]:g}) has zero "
                    "area: click a second corner diagonally away from the first"
                )
            corners = (*self.corners, corner)
        else:
            corners = (corner,)
        return replace(self, corners=corners, steps=(*self.steps, "corner"))

    def with_points(self, points: object, labels: object) -> PromptState:
        """Points [[x, y], ...] in pixels with labels [1 or 0, ...] (the API's form) added; None
        for both adds none."""
        if points is None and labels is None:
            return self
        coords = numbers(points, "points must be [[x, y], ...] in pixels")
        values = numbers(labels, "labels must be [1 or 0, ...], one per point")
        if coords.size and (coords.ndim != 2 or coords.shape[1] != 2):
            raise ValueError(f"points must be [[x, y], ...], got shape {coords.shape}")
        if len(coords) != values.size:
            raise ValueError(
                f"{len(coords)} points but {values.size} labels: give one label (1 foreground, "
                "0 background) per point"
            )
        state = self
        for (x, y), label in zip(coords.reshape(-1, 2), values.reshape(-1)):
            state = state.add_point(x, y, int(label) if label in (0, 1) else label)
        return state

    def with_box(self, box: object) -> PromptState:
        """A whole box [x0, y0, x1, y1] in pixels (the API's form), inside the image."""
        values = numbers(box, "box must be [x0, y0, x1, y1] in pixels").reshape(-1)
        height, width = self.image_size
        if values.size != 4 or not np.isfinite(values).all():
            raise ValueError(f"box must be [x0, y0, x1, y1] in pixels, got {values.tolist()}")
        x0, y0, x1, y1 = values.tolist()
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"box {[round(v, 1) for v in values]} must lie inside the {width}x{height} image "
                "with x0 < x1 and y0 < y1"
            )
        return replace(self, corners=((x0, y0), (x1, y1)), steps=(*self.steps, "corner", "corner"))

    def with_brush(self, mask_input: np.ndarray | None) -> PromptState:
        """Use a brush stroke (as a low-res mask_input, see :mod:`prompts.brush`)."""
        return replace(self, brush_input=mask_input, logits=None, steps=(*self.steps, "brush"))

    def with_text(self, text: str) -> PromptState:
        """Describe the object in words (replaces the previous text; undo brings it back)."""
        text = " ".join(str(text).split())[:MAX_TEXT_CHARS]
        if not text:
            raise ValueError('the text is empty: describe the object, e.g. "red ellipse"')
        if len(self.texts) >= MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts per object: undo or clear first")
        return replace(self, texts=(*self.texts, text), logits=None, steps=(*self.steps, "text"))

    def with_logits(self, logits: np.ndarray | None) -> PromptState:
        """Make a candidate current: its low-res logits refine the next prediction."""
        return replace(self, logits=logits)

    def undo(self) -> PromptState:
        """Remove the latest point, box corner or brush stroke (and the refinement logits)."""
        if not self.steps:
            return self
        last, steps = self.steps[-1], self.steps[:-1]
        if last == "point":
            return replace(self, points=self.points[:-1], steps=steps, logits=None)
        if last == "corner":
            return replace(self, corners=self.corners[:-1], steps=steps, logits=None)
        if last == "text":
            return replace(self, texts=self.texts[:-1], steps=steps, logits=None)
        return replace(self, brush_input=None, steps=steps, logits=None)

    def clear(self) -> PromptState:
        """No prompts at all, on the same image."""
        return PromptState(self.image_size)

    # -- reading --------------------------------------------------------------------------------

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """The complete box as XYXY (x0 <= x1, y0 <= y1), or None."""
        if len(self.corners) != 2:
            return None
        (xa, ya), (xb, yb) = self.corners
        return (min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb))

    @property
    def pending_corner(self) -> tuple[float, float] | None:
        """The first corner of a box still being drawn."""
        return self.corners[0] if len(self.corners) == 1 else None

    @property
    def text(self) -> str | None:
        """The latest text prompt, or None."""
        return self.texts[-1] if self.texts else None

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to predict from (a lone box corner is not a prompt)."""
        return not self.points and self.box is None and self.brush_input is None and not self.texts

    def predictor_args(self) -> dict[str, np.ndarray | None]:
        """Keyword arguments for ``SamPredictor.predict``/``predict_ranked``."""
        coords = labels = box = None
        if self.points:
            coords = np.array([[p.x, p.y] for p in self.points], dtype=np.float32)
            labels = np.array([p.label for p in self.points], dtype=np.int32)
        if self.box is not None:
            box = np.array(self.box, dtype=np.float32)
        mask_input = self.logits if self.logits is not None else self.brush_input
        return {
            "point_coords": coords,
            "point_labels": labels,
            "box": box,
            "mask_input": mask_input,
        }

    def _check_inside(self, x: float, y: float) -> None:
        height, width = self.image_size
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"click ({x}, {y}) is not a finite position")
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(
                f"click ({x:g}, {y:g}) is outside the {width}x{height} image "
                f"(x must be in [0, {width}), y in [0, {height}))"
            )


def numbers(values: object, expected: str) -> np.ndarray:
    """JSON numbers (None: none) as a float64 array; ValueError saying ``expected`` otherwise."""
    try:
        return np.asarray([] if values is None else values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{expected}, got {values!r}"[:200]) from error
