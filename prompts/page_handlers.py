"""What the page's events call: a new image, clicks, the brush, text, segment everything,
accepting and downloading annotations, switching model, and the ``segment`` API endpoint. Plain
methods on a :class:`Handlers`, so tests call them directly; errors become warning toasts that
leave the person's prompts as they were."""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from prompts.annotations import coco_json_bytes, masks_zip_bytes, sa1b_files
from prompts.brush import editor_mask
from prompts.model_shelf import ModelShelf
from prompts.render import iou_caption
from prompts.session import ClickMode, Session
from sam.io.images import read_image

log = logging.getLogger("sam.app")

CLICK_MODES: dict[str, ClickMode] = {
    "Foreground point": "foreground",
    "Background point": "background",
    "Box (two clicks)": "box",
}


def gpu_task(fn: Callable) -> Callable:
    """``fn`` wrapped with ``spaces.GPU`` on a Hugging Face ZeroGPU Space (which lends a GPU only
    to functions so marked, call by call); ``fn`` unchanged everywhere else."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return fn
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def friendly(outputs: int) -> Callable:
    """Turn a handler's errors into a warning toast (never a stack trace) and leave its
    ``outputs`` outputs unchanged, so the person's prompts are kept."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except ValueError as error:  # bad input: the message says what to do
                gr.Warning(str(error))
            except Exception as error:
                log.exception("handler %s failed", handler.__name__)
                gr.Warning(f"Something went wrong ({type(error).__name__}: {error}).")
            skipped = tuple(gr.skip() for _ in range(outputs))
            return skipped if outputs > 1 else skipped[0]

        return wrapper

    return decorate


def require_image(session: Session | None) -> Session:
    """The session, if it has an image to prompt."""
    if session is None or session.image is None:
        raise ValueError("upload an image first")
    return session


def session_views(session: Session | None) -> tuple:
    """(session, canvas, candidates gallery, annotations table, status text) after an edit."""
    if session is None:
        return None, None, [], annotation_rows(None), ""
    return session, session.canvas(), session.gallery(), annotation_rows(session), session.status


def annotation_rows(session: Session | None) -> list[list]:
    if session is None:
        return []
    return [[a.annotation_id, a.label, a.area, round(a.score, 3)] for a in session.annotations]


def optional_array(values: list | None, dtype: type) -> np.ndarray | None:
    """JSON from the API as an array; None or [] as None."""
    if values is None or (isinstance(values, list) and not values):
        return None
    try:
        return np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(f"expected a list of numbers, got {values!r}") from error


class Handlers:
    """What the page's events call; plain methods, so tests can call them directly."""

    VIEWS = 5  # outputs of session_views

    def __init__(self, shelf: ModelShelf, default_model: str) -> None:
        self.shelf = shelf
        self.default_model = default_model

    def new_session(self, model_name: str) -> Session:
        loaded = self.shelf.get(model_name)
        return Session(
            loaded.predictor(),
            text_model=self.shelf.text_model_for(loaded),
            everything_settings=loaded.everything_settings(),
        )

    @friendly(VIEWS + 1)
    @gpu_task
    def image(
        self,
        path: str | None,
        session: Session | None,
        model_name: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for it)
    ) -> tuple:
        """A new image: encode it (cached) and clear the prompts; also show it in the brush tab."""
        if path is None:
            if session is not None:
                session.forget_image()
            return (*session_views(session), None)
        image = read_image(path)
        progress(0.1, desc="Loading the model")
        session = session or self.new_session(model_name)
        progress(0.4, desc="Encoding the image")
        session.set_image(image, file_name=Path(path).name)
        progress(1.0, desc="Ready")
        return (*session_views(session), image)

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def click(self, session: Session | None, mode: str, event: gr.SelectData) -> tuple:
        """A click on the canvas: a point or a box corner, then predict."""
        x, y = event.index
        require_image(session).click(x, y, CLICK_MODES.get(mode, "foreground"))
        return session_views(session)

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def pick(self, session: Session | None, event: gr.SelectData) -> tuple:
        """Choosing a candidate in the gallery makes it current."""
        require_image(session).pick(int(event.index))
        return session_views(session)

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def undo(self, session: Session | None) -> tuple:
        require_image(session).undo()
        return session_views(session)

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def clear(self, session: Session | None) -> tuple:
        require_image(session).clear()
        return session_views(session)

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def brush(self, session: Session | None, editor: dict | None) -> tuple:
        """The brush layers become a mask prompt plus a box around the stroke."""
        session = require_image(session)
        layers = [layer for layer in (editor or {}).get("layers") or [] if layer is not None]
        session.brush(editor_mask(layers, session.image.shape[:2]))
        return session_views(session)

    @friendly(VIEWS)
    @gpu_task
    def text(
        self,
        session: Session | None,
        text: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """A text prompt: CLIP finds the object, SAM segments it; clicks then refine it. The
        first text loads CLIP (a download for Meta's models)."""
        progress(0.1, desc="Finding the text (the first one loads CLIP)")
        require_image(session).text(text or "")
        return session_views(session)

    @friendly(VIEWS + 1)
    @gpu_task
    def everything(
        self,
        session: Session | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """Segment everything: every mask coloured on the image (shown in its own view)."""
        session = require_image(session)
        points = session.everything_settings.points_per_side**2
        progress(0.1, desc=f"Prompting the image with {points} points")
        session.segment_everything()
        progress(0.9, desc="Colouring the masks")
        return (*session_views(session), session.everything_canvas())

    @friendly(VIEWS + 1)
    @gpu_task
    def prefill(
        self,
        session: Session | None,
        label: str | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """Semi-automatic annotation: add segment everything's confident masks to the list."""
        session = require_image(session)
        if not session.everything:
            progress(0.1, desc="Segment everything")
        added = session.prefill(label or "")
        gr.Info(f"Pre-filled {len(added)} masks")
        return (*session_views(session), session.everything_canvas())

    @friendly(VIEWS)
    def accept(self, session: Session | None, label: str) -> tuple:
        annotation = require_image(session).accept(label or "")
        gr.Info(f"Accepted #{annotation.annotation_id} '{annotation.label}'")
        return session_views(session)

    @friendly(1)
    def export(self, session: Session | None) -> list[str]:
        """Write the annotations as SA-1B JSON (one file per image), COCO JSON and a zip of PNG
        masks; return their paths."""
        if session is None or not session.annotations:
            raise ValueError("nothing to download yet: accept a mask first")
        folder = Path(tempfile.mkdtemp(prefix="sam_annotations_"))
        coco = folder / "annotations_coco.json"
        coco.write_bytes(coco_json_bytes(session.images, session.annotations))
        masks = folder / "masks.zip"
        masks.write_bytes(masks_zip_bytes(session.annotations))
        paths = [str(coco), str(masks)]
        for name, payload in sa1b_files(session.images, session.annotations).items():
            (folder / name).write_bytes(payload)
            paths.append(str(folder / name))
        return paths

    @friendly(VIEWS + 1)
    @gpu_task
    def model(
        self,
        model_name: str,
        session: Session | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """Switch this session's model (loaded once for everybody); re-encode the image."""
        progress(0.1, desc=f"Loading {model_name}")
        loaded = self.shelf.get(model_name)
        if session is not None:
            progress(0.5, desc="Encoding the image")
            session.set_predictor(
                loaded.predictor(),
                self.shelf.text_model_for(loaded),
                loaded.everything_settings(),
            )
        else:
            session = self.new_session(model_name)
        if loaded.banner:
            gr.Warning(f"Could not load {model_name}; see the banner.")
        return (*session_views(session), loaded.banner)

    @gpu_task
    def segment(
        self,
        image: str,
        points: list | None = None,
        labels: list | None = None,
        box: list | None = None,
        text: str | None = None,
    ) -> tuple[list[tuple[str, str]], list[float], str]:
        """API: an image file and prompts -> the three masks (PNG, best first), their predicted
        IoUs, and a message (what the text found; empty without text). points: [[x, y], ...] in
        pixels; labels: [1 or 0, ...]; box: [x0, y0, x1, y1]; text: what to segment ("red
        circle"), combined with the points and box. A text that is not found gives no masks."""
        try:
            session = self.new_session(self.default_model)
            session.set_image(read_image(image))
            session.predict(
                optional_array(points, np.float32),
                optional_array(labels, np.int32),
                optional_array(box, np.float32),
                None if text is None or text == "" else text,
            )
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error)) from error
        folder = Path(tempfile.mkdtemp(prefix="sam_segment_"))
        masks = []
        clip_scores = session.clip_scores or [None] * len(session.candidates)
        for rank, (candidate, clip_score) in enumerate(zip(session.candidates, clip_scores)):
            path = folder / f"mask_{rank}.png"
            Image.fromarray(candidate.mask.astype(np.uint8) * 255).save(path)
            masks.append((str(path), iou_caption(candidate.score, clip_score)))
        return masks, [c.score for c in session.candidates], session.status
