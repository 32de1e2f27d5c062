"""The page's API endpoints (gradio_client, MCP): ``segment`` (one object: points, a box, text)
and ``segment_objects`` (several boxes or point sets in one call). Stateless: each call reads
its image and answers; bad input is a :class:`gradio.Error` with one sentence saying what to do
(logged without a traceback)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from prompts.clicks import PromptState
from prompts.page_handlers import Handlers, file_path, gpu_task, sentence
from prompts.render import iou_caption
from prompts.session import Session
from sam.io.images import read_image

log = logging.getLogger("sam.app")

MAX_OBJECTS_PER_CALL = 64


def refuse(error: Exception) -> gr.Error:
    """Bad input as the API's answer: one sentence, no traceback in the server's log."""
    log.info("API call refused: %s", error)
    return gr.Error(sentence(str(error)), print_exception=False)


def write_masks(masks: list[np.ndarray], captions: list[str]) -> list[tuple[str, str]]:
    """(H, W) bool masks -> [(black-and-white PNG path, caption)] in a new folder."""
    folder = Path(tempfile.mkdtemp(prefix="sam_segment_"))
    files = []
    for rank, (mask, caption) in enumerate(zip(masks, captions, strict=True)):
        path = folder / f"mask_{rank}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        files.append((str(path), caption))
    return files


class Api:
    """The endpoints, on the page's models (its default model serves them)."""

    def __init__(self, handlers: Handlers) -> None:
        self.handlers = handlers

    def _session(self, image: str | dict | None) -> Session:
        image = file_path(image)
        if image is None:
            raise ValueError("no image: give an image file (PNG, JPEG or WebP)")
        session = self.handlers.new_session(self.handlers.default_model)
        session.set_image(read_image(image), file_name=Path(image).name)
        return session

    @gpu_task
    def segment(
        self,
        image: str | None,
        points: list | None = None,
        labels: list | None = None,
        box: list | None = None,
        text: str | None = None,
    ) -> tuple[list[tuple[str, str]], list[float], str]:
        """Segment one object: an image file and prompts -> its three candidate masks (PNG, best
        first), their predicted IoUs, and a message (what the text found; empty without text; a
        text that is not found gives no masks).

        Args:
            image: the image file (PNG, JPEG or WebP, up to 40 megapixels).
            points: [[x, y], ...] in pixels inside the image, or None.
            labels: one per point: 1 on the object, 0 on the background.
            box: [x0, y0, x1, y1] in pixels inside the image, or None.
            text: what to segment, e.g. "red ellipse", with the points and box ("": none).
        """
        try:
            session = self._session(image)
            session.predict(points, labels, box, text or None)
        except ValueError as error:
            raise refuse(error) from error
        candidates = session.candidates
        clips = session.clip_scores or [None] * len(candidates)
        captions = [iou_caption(c.score, clip) for c, clip in zip(candidates, clips)]
        files = write_masks([c.mask for c in candidates], captions)
        return files, [c.score for c in candidates], session.status

    @gpu_task
    def segment_objects(
        self,
        image: str | None,
        boxes: list | None = None,
        points: list | None = None,
        labels: list | None = None,
    ) -> tuple[list[tuple[str, str]], list[float], str]:
        """Segment several objects in one call: one mask per object (PNG, in the order given),
        its predicted IoU, and a message.

        Args:
            image: the image file (PNG, JPEG or WebP, up to 40 megapixels).
            boxes: [[x0, y0, x1, y1], ...] in pixels, one per object, or None.
            points: [[[x, y], ...], ...]: one list of points per object, or None.
            labels: [[1, 0, ...], ...]: one label per point (1 object, 0 background).
        """
        try:
            session = self._session(image)
            ranked = session.predictor.predict_batch(
                **object_prompts(session, boxes, points, labels)
            )
        except ValueError as error:
            raise refuse(error) from error
        best = [candidates[0] for candidates in ranked]
        captions = [f"object {i + 1} · {iou_caption(c.score)}" for i, c in enumerate(best)]
        files = write_masks([c.mask for c in best], captions)
        return files, [c.score for c in best], f"{len(best)} objects segmented."


def object_prompts(
    session: Session, boxes: list | None, points: list | None, labels: list | None
) -> dict:
    """The API's boxes and point sets, checked against the image (inside it, one label per
    point), as :meth:`sam.SamPredictor.predict_batch`'s arguments."""
    if boxes is None and points is None:
        raise ValueError("no prompt: give boxes, or one list of points per object")
    if points is not None and (labels is None or len(labels) != len(points)):
        raise ValueError("give one list of labels per list of points (1 object, 0 background)")
    count = len(boxes) if boxes is not None else len(points)
    if boxes is not None and points is not None and len(points) != count:
        raise ValueError(f"{count} boxes but {len(points)} point lists: give one per object")
    if not 0 < count <= MAX_OBJECTS_PER_CALL:
        raise ValueError(f"give between 1 and {MAX_OBJECTS_PER_CALL} objects, got {count}")
    empty = PromptState(session.image.shape[:2])
    states = [
        empty.with_points(
            None if points is None else points[i], None if labels is None else labels[i]
        )
        for i in range(count)
    ]
    if boxes is not None:
        states = [state.with_box(box) for state, box in zip(states, boxes)]
    arguments: dict = {}
    if boxes is not None:
        arguments["boxes"] = np.array([state.box for state in states], dtype=np.float32)
    if points is not None:
        args = [state.predictor_args() for state in states]
        arguments["point_coords"] = [a["point_coords"] for a in args]
        arguments["point_labels"] = [a["point_labels"] for a in args]
        if any(c is None for c in arguments["point_coords"]):
            if boxes is None:
                raise ValueError("every object needs a box or at least one point")
            arguments["point_coords"] = [
                np.zeros((0, 2), np.float32) if c is None else c for c in arguments["point_coords"]
            ]
            arguments["point_labels"] = [
                np.zeros(0, np.int32) if lab is None else lab for lab in arguments["point_labels"]
            ]
    return arguments
