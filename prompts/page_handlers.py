"""What the page's events call: a new image, clicks, the candidate toggle, objects (new,
select, rename, delete), the brush, text, segment everything, downloads, switching model. Plain
methods on a :class:`Handlers`, so tests call them directly; bad input becomes one short warning
that leaves the person's image, prompts and objects as they were."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import gradio as gr

from prompts.annotations import coco_json_bytes, masks_zip_bytes, sa1b_files
from prompts.brush import editor_mask
from prompts.model_shelf import ModelShelf
from prompts.objects import clean_label, hex_colour
from prompts.render import object_rows
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


def sentence(message: str) -> str:
    """A message as the page shows it: capitalised, ending with a full stop."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def warn(error: Exception) -> None:
    """One warning for the person: bad input says what to do; anything else is logged (with its
    traceback, as it is a bug) and reported plainly."""
    if isinstance(error, ValueError):
        log.info("refused: %s", error)
        gr.Warning(sentence(str(error)))
    else:
        log.exception("the page failed on an event")
        gr.Warning("Something went wrong on the server; your work is kept. Try again.")


_session_locks: dict[int, threading.RLock] = {}  # id(session) -> its lock, while it lives
_session_locks_guard = threading.Lock()


def session_lock(session: Session | None) -> contextlib.AbstractContextManager:
    """What one person's events hold while they run, so that two of them (a click and the
    label's blur, two quick clicks) never edit a session at once. Kept beside the session, not
    in it: a session goes to ZeroGPU's worker pickled, which a lock cannot be."""
    if session is None:
        return contextlib.nullcontext()
    with _session_locks_guard:
        lock = _session_locks.get(id(session))
        if lock is None:
            lock = _session_locks[id(session)] = threading.RLock()
            weakref.finalize(session, _session_locks.pop, id(session), None)
    return lock


def friendly(outputs: int) -> Callable:
    """Run a handler holding its session's lock (:func:`session_lock`); turn its errors into a
    warning and leave its ``outputs`` outputs unchanged, so the person's work is kept."""

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(*args, **kwargs):
            session = next((a for a in (*args, *kwargs.values()) if isinstance(a, Session)), None)
            try:
                with session_lock(session):
                    return handler(*args, **kwargs)
            except Exception as error:
                warn(error)
            skipped = tuple(gr.skip() for _ in range(outputs))
            return skipped if outputs > 1 else skipped[0]

        return wrapper

    return decorate


def file_path(value: str | dict | None) -> str | None:
    """An uploaded file's path, from an event that takes the file unprocessed (a FileData
    dict) or from a direct call (a path)."""
    if isinstance(value, dict):
        return value.get("path")
    return None if value is None else str(value)


def require_image(session: Session | None) -> Session:
    """The session, if it has an image to prompt."""
    if session is None or session.image is None:
        raise ValueError("upload an image first")
    return session


def object_views(session: Session) -> tuple:
    """(object choice, object list) of the session's image."""
    here = session.objects.on_image(session.image_id)
    choices = [(f"#{o.object_id} {o.label}", o.object_id) for o in here]
    active = session.active_id if session.objects.get(session.active_id) else None
    rows = [
        (hex_colour(o.colour), f"#{o.object_id} {o.label}", o.area, o.score, o.object_id == active)
        for o in here
    ]
    others = len(session.objects.items) - len(here)
    listing = object_rows(rows)
    if others:
        listing += f'<p class="objects-elsewhere">and {others} on earlier images</p>'
    return gr.Radio(choices=choices, value=active), listing


def session_views(session: Session | None) -> tuple:
    """(session, image, candidate toggle, object choice, object list, status, label)."""
    if session is None or session.image is None:
        return (
            session,
            gr.skip(),
            gr.Radio(choices=[], value=None),
            gr.Radio(choices=[], value=None),
            object_rows([]),
            "" if session is None else session.status,
            gr.skip(),
        )
    return (
        session,
        session.canvas(),
        gr.Radio(choices=session.candidate_choices(), value=session.current),
        *object_views(session),
        session.status,
        session.label,
    )


class Handlers:
    """What the page's events call; plain methods, so tests can call them directly."""

    VIEWS = 7  # outputs of session_views

    def __init__(self, shelf: ModelShelf, default_model: str) -> None:
        self.shelf = shelf
        self.default_model = default_model
        self.menu: tuple[str, ...] = ()  # the Model menu's names (the page sets them)

    def new_session(self, model_name: str) -> Session:
        loaded = self.shelf.get(model_name)
        return Session(
            loaded.predictor(),
            text_model=self.shelf.text_model_for(loaded),
            everything_settings=loaded.everything_settings(),
        )

    @gpu_task
    def image(
        self,
        path: str | dict | None,
        session: Session | None,
        model_name: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way of asking for it)
    ) -> tuple:
        """A new image: encode it (cached) and start a new object on it; also show it in the
        brush tab. A file that cannot be used gets a warning, and the picture shown goes back
        to the session's, so nothing is lost."""
        path = file_path(path)
        try:
            if path is None:
                raise ValueError("no image came through: upload a PNG, JPEG or WebP file")
            image = read_image(path)
            progress(0.1, desc="Loading the model")
            session = session or self.new_session(model_name)
            progress(0.4, desc="Encoding the image")
            session.set_image(image, file_name=Path(path).name)
        except Exception as error:
            warn(error)
            return self.restore(None, session)
        progress(1.0, desc="Ready")
        return (*session_views(session), image, None)

    def restore(self, value: object, session: Session | None) -> tuple:
        """The image was emptied without a new one (a file over the size limit, refused in the
        browser): show the session's picture again. Views, brush background, everything view."""
        if value is not None or session is None or session.image is None:
            return tuple(gr.skip() for _ in range(self.VIEWS + 2))
        return (*session_views(session), gr.skip(), gr.skip())

    @friendly(VIEWS)
    @gpu_task  # runs the mask decoder
    def click(self, session: Session | None, mode: str, event: gr.SelectData) -> tuple:
        """A click on the image: a point or a box corner of the active object, then predict."""
        x, y = event.index
        return self.click_at(session, x, y, mode)

    @friendly(VIEWS)
    @gpu_task
    def click_at(self, session: Session | None, x: float, y: float, mode: str) -> tuple:
        """A click at pixel (x, y), as the page's API gives it."""
        require_image(session).click(x, y, CLICK_MODES.get(mode, "foreground"))
        return session_views(session)

    @friendly(VIEWS)
    def pick(self, session: Session | None, index: int | None) -> tuple:
        """The candidate toggle: candidate ``index`` (0 = best) becomes the object's mask."""
        if index is None:
            return session_views(session)
        require_image(session).pick(int(index))
        return session_views(session)

    @friendly(VIEWS)
    def select_object(self, session: Session | None, object_id: int | None) -> tuple:
        """Choose an object of this image to refine."""
        if object_id is not None:
            require_image(session).select_object(int(object_id))
        return session_views(session)

    @friendly(VIEWS)
    def new_object(self, session: Session | None, label: str | None) -> tuple:
        """Keep the active object and start the next one."""
        require_image(session).new_object(label or "")
        return session_views(session)

    @friendly(VIEWS)
    def rename(self, session: Session | None, label: str | None) -> tuple:
        """Label the active object: of the views, only the object choice, the list and the
        label change, and nothing when the label is as it was. The label loses focus when the
        image is clicked, so this runs right before or after that click (the session's lock
        orders the two), and its answer may reach the page after the click's: a picture,
        candidates and status sent from here would undo the click's, and so would an object
        list from before the click, which is why an unchanged label sends none."""
        if session is None or session.image is None:
            return session_views(session)
        if clean_label(label) == session.label:
            return tuple(gr.skip() for _ in range(self.VIEWS))
        session.rename(label or "")
        return (session, gr.skip(), gr.skip(), *object_views(session), gr.skip(), session.label)

    @friendly(VIEWS)
    def delete_object(self, session: Session | None) -> tuple:
        require_image(session).delete_object()
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
        """A text prompt: CLIP finds the object, SAM segments it; clicks then change it. The
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
        """Semi-automatic annotation: add segment everything's confident masks as objects."""
        session = require_image(session)
        if not session.everything:
            progress(0.1, desc="Segment everything")
        session.prefill(label or "")
        return (*session_views(session), session.everything_canvas())

    @friendly(1)
    def export(self, session: Session | None) -> list[str]:
        """Write every object as SA-1B JSON (one file per image), COCO JSON and a zip of PNG
        masks; return their paths."""
        annotations = [] if session is None else session.annotations()
        if not annotations:
            raise ValueError("nothing to download yet: segment an object first")
        folder = Path(tempfile.mkdtemp(prefix="sam_annotations_"))
        coco = folder / "annotations_coco.json"
        coco.write_bytes(coco_json_bytes(session.images, annotations))
        masks = folder / "masks.zip"
        masks.write_bytes(masks_zip_bytes(annotations))
        paths = [str(coco), str(masks)]
        for name, payload in sa1b_files(session.images, annotations).items():
            (folder / name).write_bytes(payload)
            paths.append(str(folder / name))
        return paths

    @gpu_task
    def model(
        self,
        model_name: str,
        session: Session | None,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> tuple:
        """Switch this session's model (loaded once for everybody); re-encode the image. The
        menu then shows the model that serves, the notice says which and why."""
        try:
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
        except Exception as error:
            warn(error)
            return tuple(gr.skip() for _ in range(self.VIEWS + 3))
        if loaded.fell_back:
            gr.Warning(f"{model_name} could not be loaded: see the notice above the image.")
        menu = gr.Dropdown(choices=model_choices(loaded.used, self.menu), value=loaded.used)
        return (*session_views(session), menu, loaded.notice, None)


def model_choices(serving: str, menu: tuple[str, ...]) -> list[str]:
    """The Model menu: ``menu``, plus the model serving if it is another (a checkpoint file, or
    the untrained test model)."""
    return list(menu) if serving in menu else [serving, *menu]
