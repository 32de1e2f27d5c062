"""The Segment Anything page: click, box, brush or describe an object, pick one of three ranked
masks, refine it, segment everything, label masks (or pre-fill the confident ones), and download
the annotations as SA-1B JSON, COCO JSON and PNG masks. This file is the page's layout and the
wiring of its events; what the events do is :mod:`prompts.page_handlers`, the models it serves
:mod:`prompts.model_shelf`.

python app.py [--model vit_b|vit_l|vit_h|demo|/path/to/model.safetensors] [--device auto]
              [--precision auto] [--host 127.0.0.1] [--port 7860] [--share]
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from prompts.model_shelf import Loader, ModelShelf
from prompts.page_handlers import CLICK_MODES, Handlers
from sam import load_sam

log = logging.getLogger("sam.app")

MODEL_CHOICES = ("vit_b", "vit_l", "vit_h", "demo")
EXAMPLES_DIR = Path(__file__).resolve().parent / "assets" / "examples"
MAX_FILE_SIZE = "25mb"
SESSION_TTL_S = 2 * 60 * 60  # a person's image, prompts and masks are dropped after this idle time
QUEUE_CONCURRENCY = 4  # events of one kind served at once (sessions are independent)

INTRO = """# Segment Anything
Upload an image (or paste one, or use the webcam), then click on an object: green dots mark
what belongs to it, red dots (*Background point*) what does not; *Box* takes two corner clicks.
Or describe it in words (*Text*); clicks then extend or cut the text's mask.
Pick one of the three candidates (best predicted IoU first); further clicks refine it.
Name it and press *Accept*, or let *Pre-fill confident masks* add what segment everything is
sure of; download everything as SA-1B JSON, COCO JSON and PNG masks."""


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
