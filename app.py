"""The Segment Anything page: click, box, brush or describe an object, pick one of three ranked
masks, refine it, segment everything, label masks (or pre-fill the confident ones), and download
the annotations as SA-1B JSON, COCO JSON and PNG masks.

python app.py [--model vit_b|vit_l|vit_h|demo|/path/to/model.safetensors] [--device auto]
              [--precision auto] [--host 127.0.0.1] [--port 7860] [--share]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image

from prompts.annotations import coco_json_bytes, masks_zip_bytes, sa1b_files
from prompts.brush import editor_mask
from prompts.everything import EverythingSettings, settings_for
from prompts.render import iou_caption
from prompts.session import ClickMode, Session
from prompts.text_models import ClipLoader, TextModel, TextModels, clip_kind, load_text_model
from sam import CheckpointError, EmbeddingCache, Sam, SamPredictor, build_sam, load_sam
from sam.io.images import read_image

log = logging.getLogger("sam.app")

MODEL_CHOICES = ("vit_b", "vit_l", "vit_h", "demo")
FALLBACK_MODEL = "vit_test"
CLICK_MODES: dict[str, ClickMode] = {
    "Foreground point": "foreground",
    "Background point": "background",
    "Box (two clicks)": "box",
}
EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
MAX_FILE_SIZE = "25mb"
LOADED_MODELS_KEPT = 2
SESSION_TTL_S = 2 * 60 * 60  # a person's image, prompts and masks are dropped after this idle time
QUEUE_CONCURRENCY = 4  # events of one kind served at once (sessions are independent)

Loader = Callable[..., Sam]

INTRO = """# Segment Anything
Upload an image (or paste one, or use the webcam), then click on an object: green dots mark
what belongs to it, red dots (*Background point*) what does not; *Box* takes two corner clicks.
Or describe it in words (*Text*); clicks then extend or cut the text's mask.
Pick one of the three candidates (best predicted IoU first); further clicks refine it.
Name it and press *Accept*, or let *Pre-fill confident masks* add what segment everything is
sure of; download everything as SA-1B JSON, COCO JSON and PNG masks."""


# -- models -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, with its shared embedding cache; ``banner`` says what went wrong
    if it is not the one asked for (empty when it is)."""

    requested: str
    used: str
    model: Sam
    cache: EmbeddingCache
    banner: str = ""

    def predictor(self) -> SamPredictor:
        """A new predictor (one per session) sharing this model's embedding cache."""
        return SamPredictor(self.model, cache=self.cache)

    def everything_settings(self) -> EverythingSettings:
        """Segment-everything settings that suit this model on its device."""
        return settings_for(self.used, on_gpu=self.model.device.type == "cuda")


def fallback_banner(requested: str, used: str, reason: str) -> str:
    """The warning shown when ``requested`` could not be loaded and ``used`` serves instead."""
    fix = (
        "To fix it, pass a checkpoint: `python app.py --model /path/to/model.safetensors` "
        "(Meta's weights: model.safetensors from https://huggingface.co/facebook/sam-vit-base)."
    )
    if used == FALLBACK_MODEL:
        return (
            f"⚠️ **Could not load `{requested}`**: {reason}\n\n"
            f"**Running a randomly initialised `{FALLBACK_MODEL}` model instead: it is untrained "
            f"and its masks are meaningless.** {fix}"
        )
    return (
        f"⚠️ **Could not load `{requested}`**: {reason}\n\n"
        f"Running the bundled `{used}` model instead (small, trained on synthetic shapes only). "
        f"{fix}"
    )


def load_with_fallback(
    name: str, device: str | None = None, precision: str = "auto", loader: Loader = load_sam
) -> LoadedModel:
    """``name``, else the bundled demo model, else a random test model; never raises for a
    missing or unreadable checkpoint."""
    try:
        model = loader(name, device=device, precision=precision)
        return LoadedModel(name, name, model, EmbeddingCache())
    except CheckpointError as error:
        reason = str(error)
    log.warning("could not load %s: %s", name, reason)
    if name != "demo":
        try:
            model = loader("demo", device=device, precision=precision)
            return LoadedModel(
                name, "demo", model, EmbeddingCache(), fallback_banner(name, "demo", reason)
            )
        except CheckpointError as error:
            log.warning("could not load the demo model either: %s", error)
    model = build_sam(FALLBACK_MODEL).eval()
    banner = fallback_banner(name, FALLBACK_MODEL, reason)
    return LoadedModel(name, FALLBACK_MODEL, model, EmbeddingCache(), banner)


class ModelShelf:
    """Models loaded on demand and shared by every session; keeps the latest few SAM models,
    and the CLIP models for text prompts, loaded when text is first used."""

    def __init__(
        self,
        device: str | None = None,
        precision: str = "auto",
        loader: Loader = load_sam,
        capacity: int = LOADED_MODELS_KEPT,
        clip_loader: ClipLoader = load_text_model,
    ) -> None:
        self.device, self.precision = device, precision
        self.loader, self.capacity = loader, capacity
        self.text_models = TextModels(clip_loader)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def text_model_for(self, loaded: LoadedModel) -> Callable[[], TextModel]:
        """What a session calls, on its first text prompt, to get the CLIP for ``loaded``."""
        kind = clip_kind(loaded.used)
        return lambda: self.text_models.get(kind)

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            if name not in self._models:
                self._models[name] = load_with_fallback(
                    name, self.device, self.precision, self.loader
                )
                while len(self._models) > self.capacity:
                    self._models.popitem(last=False)
            self._models.move_to_end(name)
            return self._models[name]


# -- event handlers -----------------------------------------------------------------------------


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


# -- the page -----------------------------------------------------------------------------------


def tolerate_unreadable(component: gr.Image) -> gr.Image:
    """Let ``component`` hand the uploaded file's path to the handler even when Gradio cannot
    read it, so corrupt files and decompression bombs reach :func:`sam.io.images.read_image`
    (and a warning) instead of failing inside Gradio's preprocessing. Use it on a
    ``gr.Image(type="filepath", image_mode=None)``, which passes readable files on undecoded.
    (Wrapping the instance, not subclassing: Gradio writes a .pyi stub beside any module that
    defines a component class.)"""
    preprocess = component.preprocess

    def preprocess_or_pass_path(payload: FileData | None) -> str | None:
        try:
            return preprocess(payload)
        except Exception:  # unreadable: the handler says so
            return None if payload is None or payload.path is None else str(payload.path)

    component.preprocess = preprocess_or_pass_path
    return component


def example_images() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix in (".png", ".jpg"))


def build_demo(
    model: str = "vit_b",
    device: str | None = None,
    precision: str = "auto",
    loader: Loader = load_sam,
    handlers: Handlers | None = None,
) -> gr.Blocks:
    """The page. ``model`` is a name or a checkpoint path, loaded now (falling back with a
    banner if it cannot be); the dropdown loads the others on demand."""
    handlers = handlers or Handlers(ModelShelf(device, precision, loader), model)
    loaded = handlers.shelf.get(handlers.default_model)
    choices = list(MODEL_CHOICES)
    if handlers.default_model not in choices:
        choices.insert(0, handlers.default_model)

    with gr.Blocks(title="Segment Anything") as demo:
        gr.Markdown(INTRO)
        banner = gr.Markdown(loaded.banner, elem_id="model-banner")
        session = gr.State(None, time_to_live=SESSION_TTL_S)
        with gr.Row():
            model_choice = gr.Dropdown(
                choices, value=handlers.default_model, label="Model", allow_custom_value=False
            )
            mode = gr.Radio(list(CLICK_MODES), value="Foreground point", label="Click adds")
        with gr.Row():
            with gr.Column():
                image_in = tolerate_unreadable(
                    gr.Image(
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "webcam", "clipboard"],
                        label="Image",
                        height=380,
                        elem_id="image-input",
                    )
                )
                if example_images():
                    gr.Examples(
                        example_images(), inputs=[image_in], label="Examples", elem_id="examples"
                    )
            with gr.Column():
                with gr.Tabs() as tabs:
                    with gr.Tab("Click", id="click"):
                        canvas = gr.Image(
                            label="Click on an object",
                            type="numpy",
                            format="jpeg",  # fast to encode for large photos
                            interactive=False,
                            height=380,
                            elem_id="canvas",
                        )
                    with gr.Tab("Brush", id="brush"):
                        editor = gr.ImageEditor(
                            type="numpy",
                            label="Paint over the object",
                            sources=[],
                            brush=gr.Brush(colors=["#1e90ff"], color_mode="fixed"),
                            layers=False,
                            height=380,
                            elem_id="brush",
                        )
                        brush_button = gr.Button("Segment from brush")
                    with gr.Tab("Everything", id="everything"):
                        everything_view = gr.Image(
                            label="Segment everything: every mask in its own colour",
                            type="numpy",
                            format="jpeg",
                            interactive=False,
                            height=380,
                            elem_id="everything",
                        )
                with gr.Row():
                    text_in = gr.Textbox(
                        label="Text",
                        placeholder="describe the object, e.g. red circle (Enter)",
                        scale=3,
                        elem_id="text-prompt",
                    )
                    text_button = gr.Button("Segment from text", scale=1)
                with gr.Row():
                    undo_button = gr.Button("Undo")
                    clear_button = gr.Button("Clear")
                    everything_button = gr.Button("Segment everything")
                    prefill_button = gr.Button("Pre-fill confident masks")
                status = gr.Markdown(elem_id="status")
        candidates = gr.Gallery(
            label="Candidates, best predicted IoU first (click one to refine it)",
            columns=3,
            format="jpeg",
            allow_preview=False,
            object_fit="contain",
            height="auto",
            elem_id="candidates",
        )
        with gr.Row():
            label = gr.Textbox(label="Label", placeholder="object", scale=3)
            accept_button = gr.Button("Accept mask", variant="primary", scale=1)
        table = gr.Dataframe(
            headers=["id", "label", "area", "IoU"], label="Annotations", interactive=False
        )
        export_button = gr.Button("Download SA-1B JSON, COCO JSON, PNG masks")
        downloads = gr.File(
            label="Downloads", file_count="multiple", height=120, elem_id="downloads"
        )

        with gr.Group(visible=False):  # the `segment` API endpoint's own inputs and outputs
            api_image = tolerate_unreadable(gr.Image(type="filepath", image_mode=None))
            api_points = gr.JSON(label="points")
            api_labels = gr.JSON(label="labels")
            api_box = gr.JSON(label="box")
            api_text = gr.Textbox(label="text")
            api_masks = gr.Gallery(label="masks", format="png")
            api_scores = gr.JSON(label="scores")
            api_message = gr.Textbox(label="message")
            api_button = gr.Button()

        views = [session, canvas, candidates, table, status]
        image_in.change(
            handlers.image, [image_in, session, model_choice], [*views, editor], api_name=False
        ).then(lambda: None, None, everything_view, api_name=False)  # a new image: none yet
        canvas.select(handlers.click, [session, mode], views, api_name=False)
        candidates.select(handlers.pick, [session], views, api_name=False)
        undo_button.click(handlers.undo, [session], views, api_name=False)
        clear_button.click(handlers.clear, [session], views, api_name=False)
        brush_button.click(handlers.brush, [session, editor], views, api_name=False)
        for trigger in (text_in.submit, text_button.click):
            trigger(handlers.text, [session, text_in], views, api_name=False)
        everything_button.click(
            handlers.everything, [session], [*views, everything_view], api_name=False
        ).success(lambda: gr.Tabs(selected="everything"), None, tabs, api_name=False)
        prefill_button.click(
            handlers.prefill, [session, label], [*views, everything_view], api_name=False
        )
        accept_button.click(handlers.accept, [session, label], views, api_name=False)
        export_button.click(handlers.export, [session], [downloads], api_name=False)
        model_choice.change(
            handlers.model, [model_choice, session], [*views, banner], api_name=False
        ).then(lambda: None, None, everything_view, api_name=False)
        api_button.click(
            handlers.segment,
            [api_image, api_points, api_labels, api_box, api_text],
            [api_masks, api_scores, api_message],
            api_name="segment",
        )
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Launch the Segment Anything page.")
    parser.add_argument(
        "--model",
        default="vit_b",
        help="vit_b (default), vit_l, vit_h (Meta's weights from the Hugging Face Hub), demo, "
        "or a checkpoint path (.safetensors, .pth); falls back to demo, then to an untrained "
        "test model, with a banner saying so",
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="the image encoder's precision",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public share link")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    log.info("loading %s (Meta's weights are downloaded on first use)", args.model)
    demo = build_demo(args.model, device=args.device, precision=args.precision)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_FILE_SIZE,
    )


if __name__ == "__main__":
    main()
