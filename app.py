"""The Segment Anything page: click, box, brush or describe an object, pick one of three ranked
masks, refine it, then the next object (each kept with its colour, label and prompts, and
selectable to refine again); segment everything, pre-fill the confident masks, and download
every object as SA-1B JSON, COCO JSON and PNG masks. Its API: ``segment`` (one object) and
``segment_objects`` (several boxes or point sets in one call), also as MCP tools. This file is
the page's layout and the wiring of its events; what the events do is
:mod:`prompts.page_handlers` and :mod:`prompts.page_api`, the models it serves
:mod:`prompts.model_shelf`.

python app.py [--model vit_b|vit_l|vit_h|demo|/path/to/model.safetensors] [--device auto]
              [--precision auto] [--host 127.0.0.1] [--port 7860] [--share] [--mcp]
              [--no-instant]
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from prompts.instant import ISOLATION_MIDDLEWARE, instant_view
from prompts.instant_handlers import instant_click, instant_state, instant_switch, server_path
from prompts.model_shelf import Loader, ModelShelf
from prompts.page_api import Api
from prompts.page_args import parse_args
from prompts.page_handlers import CLICK_MODES, Handlers, model_choices
from prompts.render import object_rows
from prompts.upload_guard import refuse_too_big, size_text, upload_guard
from sam import load_sam, suggested_model

log = logging.getLogger("sam.app")

MODEL_CHOICES = (
    "vit_b",
    "vit_l",
    "vit_h",
    "sam2.1_tiny",
    "sam2.1_small",
    "sam2.1_base_plus",
    "sam2.1_large",
    "demo",
)
EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
MAX_FILE_SIZE = 25 * gr.FileSize.MB  # bytes; Gradio refuses larger uploads, the page says so
LIMITS = (
    f"PNG, JPEG or WebP, up to {size_text(MAX_FILE_SIZE)} and 40 megapixels; at most 200 objects "
    "per session, kept 2 hours after your last click."
)
SESSION_TTL_S = 2 * 60 * 60  # a person's image, prompts and masks are dropped after this idle time
SESSIONS_KEPT = 500  # at most this many people's sessions in memory; the oldest go first
CLICK_CONCURRENCY = 4  # clicks and other quick events served at once (sessions are independent)
HEAVY_CONCURRENCY = 1  # segment everything, pre-fill, model switches: one at a time
QUEUE_SIZE = 64  # events waiting beyond this are refused with "the queue is full"
CACHE_CLEANUP = (3600, SESSION_TTL_S)  # every hour, delete served files older than a session
CSS_FILE = Path(__file__).resolve().parent / "prompts" / "page.css"

INTRO = """# Segment Anything
Click on an object in the image: green dots mark what belongs to it, red dots (*Background
point*) what does not; *Box* takes two corner clicks; or describe it in words. Pick one of the
three candidates, then *New object* for the next one: each object keeps its colour, label and
prompts, and a click on it in *Objects* refines it again. Download them all as SA-1B JSON, COCO
JSON and PNG masks."""
TEXT_PLACEHOLDER = 'e.g. "purple striped ellipse", then Enter'
# Texts that the bundled demo model finds in the bundled shape scenes.
TEXT_EXAMPLES = (
    ("shapes_7.png", "purple striped ellipse"),
    ("shapes_7.png", "red ellipse"),
    ("shapes_3.png", "blue dotted diamond"),
)


def example_images() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix in (".png", ".jpg"))


def text_examples() -> list[list[str]]:
    return [
        [str(EXAMPLES_DIR / name), text]
        for name, text in TEXT_EXAMPLES
        if (EXAMPLES_DIR / name).is_file()
    ]


def build_demo(
    model: str | None = None,
    device: str | None = None,
    precision: str = "auto",
    loader: Loader = load_sam,
    handlers: Handlers | None = None,
    instant_masks: bool = True,
) -> gr.Blocks:
    """The page. ``model`` is a name or a checkpoint path (None: :func:`suggested_model` for
    ``device``), loaded now (falling back, with a notice saying so, if it cannot be); the Model
    menu loads the others on demand.
    ``instant_masks``: whether masks decoded in the browser (instant mode) start switched on."""
    model = model or suggested_model(device)
    handlers = handlers or Handlers(ModelShelf(device, precision, loader), model)
    handlers.menu = MODEL_CHOICES
    api = Api(handlers)
    loaded = handlers.shelf.get(handlers.default_model)

    with gr.Blocks(title="Segment Anything", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown(INTRO)
        notice = gr.Markdown(loaded.notice, elem_id="model-notice")
        session = gr.State(None, time_to_live=SESSION_TTL_S)
        text_in = gr.Textbox(  # shown beside the buttons; the text examples fill it too
            label="Text", placeholder=TEXT_PLACEHOLDER, scale=3, elem_id="text-prompt", render=False
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                with gr.Tabs() as tabs:
                    with gr.Tab("Image", id="image-tab"):
                        image = gr.Image(
                            type="filepath",
                            format="jpeg",  # fast to encode for large photos
                            sources=["upload", "webcam", "clipboard"],
                            label="Image: click on an object",
                            height=540,
                            buttons=["download", "fullscreen"],
                            elem_id="image",
                        )
                        # once an image is in, clicks decoded in the browser (gr.Image: server)
                        instant = instant_view(height=540, elem_id="instant")
                        # the next image while the view hides gr.Image's upload box
                        upload_another = gr.UploadButton(
                            "Upload another image",
                            file_types=["image"],
                            size="md",
                            visible=False,
                            elem_id="upload-another",
                        )
                        gr.Markdown(LIMITS, elem_classes=["limits"])
                        guard = upload_guard(
                            MAX_FILE_SIZE, drops={"instant": "upload-another"}, elem_id="guard"
                        )
                    with gr.Tab("Brush", id="brush-tab"):
                        editor = gr.ImageEditor(
                            type="numpy",
                            label="Paint over the object",
                            sources=[],
                            brush=gr.Brush(colors=["#1e90ff"], color_mode="fixed"),
                            layers=False,
                            height=540,
                            elem_id="brush",
                        )
                        brush_button = gr.Button("Segment from brush")
                    with gr.Tab("Everything", id="everything-tab"):
                        everything_view = gr.Image(
                            label="Segment everything: every mask in its own colour",
                            type="numpy",
                            format="jpeg",
                            interactive=False,
                            height=540,
                            elem_id="everything",
                        )
                image_examples = gr.Examples(
                    example_images(), inputs=[image], label="Example images", elem_id="examples"
                )
                text_examples_block = gr.Examples(
                    text_examples(),
                    inputs=[image, text_in],
                    label="Text examples (the demo model knows these shapes)",
                    elem_id="text-examples",
                )
            with gr.Column(scale=2):
                with gr.Row():
                    model_choice = gr.Dropdown(
                        model_choices(loaded.used, MODEL_CHOICES),
                        value=loaded.used,
                        label="Model",
                        allow_custom_value=False,
                        elem_id="model",
                    )
                    mode = gr.Radio(list(CLICK_MODES), value="Foreground point", label="Click adds")
                instant_on = gr.Checkbox(
                    instant_masks, label="Instant masks (in the browser)", elem_id="instant-mode"
                )
                with gr.Row():
                    text_in.render()
                    text_button = gr.Button("Segment from text", scale=1)
                candidates = gr.Radio(
                    [],
                    label="Candidates, best predicted IoU first: pick one to see it",
                    elem_id="candidates",
                )
                status = gr.Markdown(elem_id="status")
                object_list = gr.HTML(object_rows([]), label="Objects", elem_id="object-list")
                object_choice = gr.Radio([], label="Refine object", elem_id="object-choice")
                with gr.Row():
                    label = gr.Textbox(label="Label", placeholder="object", scale=2)
                    new_button = gr.Button("New object", variant="primary", scale=1)
                with gr.Row():
                    undo_button = gr.Button("Undo")
                    clear_button = gr.Button("Clear")
                    delete_button = gr.Button("Delete object")
                with gr.Row():
                    everything_button = gr.Button("Segment everything")
                    prefill_button = gr.Button("Pre-fill confident masks")
                export_button = gr.Button("Download SA-1B JSON, COCO JSON, PNG masks")
                downloads = gr.File(label="Downloads", file_count="multiple", elem_id="downloads")
        with gr.Group(visible=False):  # the API endpoints' own inputs and outputs
            api_image = gr.Image(type="filepath")
            api_points, api_labels = gr.JSON(label="points"), gr.JSON(label="labels")
            api_box, api_boxes = gr.JSON(label="box"), gr.JSON(label="boxes")
            api_text = gr.Textbox(label="text")
            api_x, api_y = gr.Number(label="x"), gr.Number(label="y")
            api_masks = gr.Gallery(label="masks", format="png")
            api_scores = gr.JSON(label="scores")
            api_message = gr.Textbox(label="message")
            api_buttons = [gr.Button() for _ in range(3)]

        views = [session, image, candidates, object_choice, object_list, status, label]
        new_image = [*views, editor, everything_view]
        quick = {"api_visibility": "private", "concurrency_limit": CLICK_CONCURRENCY}
        # Events that read an uploaded file take it unprocessed (its path): Gradio's own reading
        # would fail on a corrupt file or a decompression bomb before the handler could say so.
        raw = {"preprocess": False}
        heavy = {"api_visibility": "private", "concurrency_limit": HEAVY_CONCURRENCY}
        heavy["concurrency_id"] = "heavy"
        # the instant view follows every event that changes the image, object, prompts or model
        refresh = (instant_state, [session, mode, instant_on], [instant, image, upload_another])
        unseen = {**quick, "show_progress": "hidden"}  # no overlay on the image to catch a click
        image.input(
            handlers.image,
            [image, session, model_choice],
            new_image,
            api_name="upload",
            api_visibility="undocumented",
            **raw,
            concurrency_limit=CLICK_CONCURRENCY,
        ).then(*refresh, **unseen)
        upload_another.upload(
            handlers.image, [upload_another, session, model_choice], new_image, **quick, **raw
        ).then(*refresh, **unseen)
        # A file over the size limit is stopped in the browser, before Gradio's own refusal: the
        # app's message instead of Gradio's, and nothing on the page changes.
        guard.too_big(refuse_too_big(MAX_FILE_SIZE), None, None, **quick)
        # Should Gradio refuse one all the same (the guard's script not loaded), the image is
        # emptied: put the person's picture back (no queue: it answers at once).
        image.change(
            handlers.restore,
            [image, session],
            new_image,
            queue=False,
            show_progress="hidden",
            api_visibility="private",
            **raw,
        )
        image_examples.load_input_event.then(
            handlers.image, [image, session, model_choice], new_image, **quick, **raw
        ).then(*refresh, **unseen)
        text_examples_block.load_input_event.then(
            handlers.image, [image, session, model_choice], new_image, **quick, **raw
        ).then(handlers.text, [session, text_in], views, **quick).then(*refresh, **unseen)
        image.select(handlers.click, [session, mode], views, **quick)
        instant.mask(instant_click, [session], views, **quick)  # the view already shows it
        instant.unavailable(server_path, None, [instant_on, *refresh[2]], **quick)
        mode.input(*refresh, **unseen)
        instant_on.input(instant_switch, refresh[1], refresh[2], **quick)
        candidates.input(handlers.pick, [session, candidates], views, **quick).then(
            *refresh, **unseen
        )
        object_choice.input(handlers.select_object, [session, object_choice], views, **quick).then(
            *refresh, **unseen
        )
        new_button.click(handlers.new_object, [session, label], views, **quick).then(
            *refresh, **unseen
        )
        for trigger in (label.submit, label.blur):  # blur: when the image is clicked, too
            trigger(handlers.rename, [session, label], views, **unseen)
        for button, handler in (
            (delete_button, handlers.delete_object),
            (undo_button, handlers.undo),
            (clear_button, handlers.clear),
        ):
            button.click(handler, [session], views, **quick).then(*refresh, **unseen)
        brush_button.click(handlers.brush, [session, editor], views, **quick).then(
            *refresh, **unseen
        )
        for trigger in (text_in.submit, text_button.click):
            trigger(handlers.text, [session, text_in], views, **quick).then(*refresh, **unseen)
        everything_button.click(
            handlers.everything, [session], [*views, everything_view], **heavy
        ).success(lambda: gr.Tabs(selected="everything-tab"), None, tabs, api_visibility="private")
        prefill_button.click(
            handlers.prefill, [session, label], [*views, everything_view], **heavy
        ).then(*refresh, **unseen)
        export_button.click(
            handlers.export,
            [session],
            [downloads],
            api_name="download",
            api_visibility="undocumented",
            concurrency_limit=CLICK_CONCURRENCY,
        )
        model_choice.select(  # fires once a choice (its .input fires twice)
            handlers.model,
            [model_choice, session],
            [*views, model_choice, notice, everything_view],
            **heavy,
        ).then(*refresh, **unseen)
        api_buttons[0].click(
            api.segment,
            [api_image, api_points, api_labels, api_box, api_text],
            [api_masks, api_scores, api_message],
            api_name="segment",
            concurrency_limit=CLICK_CONCURRENCY,
            **raw,
        )
        api_buttons[1].click(
            api.segment_objects,
            [api_image, api_boxes, api_points, api_labels],
            [api_masks, api_scores, api_message],
            api_name="segment_objects",
            concurrency_limit=CLICK_CONCURRENCY,
            **raw,
        )
        api_buttons[2].click(  # a click in the caller's session, after /upload
            handlers.click_at,
            [session, api_x, api_y, mode],
            views,
            api_name="click_at",
            api_visibility="undocumented",
            concurrency_limit=CLICK_CONCURRENCY,
        )
    demo.queue(default_concurrency_limit=CLICK_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def launch_options(**options) -> dict:
    """What :meth:`gradio.Blocks.launch` needs for this page (its styles, upload limit, session
    bound, the headers that let instant mode's decoder run on several threads), plus
    ``options``."""
    app_kwargs = {"middleware": ISOLATION_MIDDLEWARE, **options.pop("app_kwargs", {})}
    return {
        "css": CSS_FILE.read_text(),
        "max_file_size": MAX_FILE_SIZE,
        "state_session_capacity": SESSIONS_KEPT,
        "app_kwargs": app_kwargs,
        **options,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # the page's own news at INFO; libraries' (the ONNX exporter's notes on every node) only
    # from WARNING up
    logging.basicConfig(level=logging.WARNING)
    for name in ("sam", "prompts"):
        logging.getLogger(name).setLevel(logging.INFO)
    model = args.model or suggested_model(args.device)
    log.info("loading %s (Meta's weights are downloaded on first use)", model)
    demo = build_demo(
        model,
        device=args.device,
        precision=args.precision,
        instant_masks=args.instant_masks,
    )
    demo.launch(
        **launch_options(
            server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp
        )
    )


if __name__ == "__main__":
    main()
