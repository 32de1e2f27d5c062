"""Instant prompts: the mask decoder in the browser.

The server encodes each image once, as always; :func:`instant_value` then hands the page the
image's features (SAM's embedding; SAM 2's embedding and its two high-resolution maps), the
model's exported ONNX decoder (:func:`sam.onnx_export.cached_decoder`) and the active object's
prompts, and :func:`instant_view`'s JavaScript (``assets/instant/``) runs the
decoder through onnxruntime-web (WebAssembly, vendored, so it works offline). The mask under the
cursor follows the mouse; a click adds a point or a box corner exactly as
:meth:`prompts.session.Session.click` would (the previous best candidate's low-res logits fed
back as the mask prompt) and sends the three ranked masks to the server with the view's ``mask``
event, which :func:`read_click` reads. The server path stays what the API and the fallback use;
both give the same masks for the same prompts (float32 decoder on both sides).

Threads: onnxruntime-web runs the decoder on up to 4 threads where the page is cross-origin
isolated (SharedArrayBuffer), on one otherwise. :data:`ISOLATION_MIDDLEWARE`, given to
``launch(app_kwargs={"middleware": ...})``, sends the headers that isolate it; a page embedded in
another site's frame (a Space inside huggingface.co) is isolated only if that site is, and runs
on one thread.

The view's events: ``mask`` (a click was decoded; ``gr.EventData._data`` is what
:func:`read_click` takes), ``ready`` (the decoder and embedding are loaded; ``load_ms``) and
``unavailable`` (the browser cannot run it; ``reason``): use the server path then.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prompts.clicks import BACKGROUND, FOREGROUND, PromptState
from sam import Sam, SamPredictor
from sam.io.masks import mask_to_uncompressed_rle, rle_to_mask
from sam.modeling.sam2 import Sam2, Sam2Features
from sam.onnx_export import cached_decoder

RUNTIME = Path(__file__).resolve().parent.parent / "assets" / "instant"
# The per-image files (embeddings, shown images, mask prompts) and the exported decoders, served
# to the page as static files; the oldest per-image files go beyond FILES_BUDGET bytes.
FILES = Path(tempfile.gettempdir()) / "sam_instant"
FILES_BUDGET = 1 << 30
MODES = ("foreground", "background", "box")
# Masks are decoded in the browser at the image's size up to this long side, and at a view of
# this long side for larger images, whose full-size candidates would be hundreds of megabytes.
VIEW_MAX_SIDE = 1024
DEFAULT_COLOUR = (30, 144, 255)

TEMPLATE = """<div class="sam-instant" data-state="off">
<img alt="the image: move over it to see the mask under the cursor, click to add a prompt">
<canvas></canvas><div class="sam-instant-note"></div></div>"""
CSS = """
.sam-instant { position: relative; display: inline-block; max-width: 100%; line-height: 0; }
.sam-instant img { display: block; max-width: 100%; max-height: var(--sam-instant-height);
  width: auto; height: auto; user-select: none; pointer-events: none; }
.sam-instant canvas { position: absolute; inset: 0; width: 100%; height: 100%;
  cursor: crosshair; }
.sam-instant[data-state="loading"] canvas { cursor: progress; }
.sam-instant-note { line-height: 1.4; font-size: 0.9em; }
.sam-instant[data-state="off"] { display: none; }
"""


class CrossOriginIsolation:
    """ASGI middleware: every HTTP response with the headers that make a page cross-origin
    isolated. COEP ``credentialless`` rather than ``require-corp`` still lets the page load
    other sites' resources (fonts, images) that send no CORP header, without cookies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_isolated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                headers["Cross-Origin-Embedder-Policy"] = "credentialless"
            await send(message)

        await self.app(scope, receive, send_isolated)


ISOLATION_MIDDLEWARE = [Middleware(CrossOriginIsolation)]


def instant_view(height: int = 540, **kwargs) -> gr.HTML:
    """The view: the image, the mask under the cursor and the prompts; its value is
    :func:`instant_value`'s (None: off). ``kwargs`` go to ``gr.HTML`` (elem_id, visible, ...)."""
    FILES.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([RUNTIME, FILES])
    return gr.HTML(
        None,
        html_template=TEMPLATE,
        css_template=CSS.replace("var(--sam-instant-height)", f"{int(height)}px"),
        js_on_load="\n".join((RUNTIME / name).read_text() for name in ("masks.js", "instant.js")),
        **kwargs,
    )


def instant_value(
    predictor: SamPredictor,
    shown: np.ndarray,
    prompts: PromptState | None = None,
    mask: np.ndarray | None = None,
    mode: str = "foreground",
    colour: tuple[int, int, int] = DEFAULT_COLOUR,
) -> dict | None:
    """The view's value for the predictor's current image.

    shown: (H, W, 3) uint8, what to draw the masks over (the image, or the page's picture of
    the other objects); prompts: the active object's (its points, box corners and mask prompt
    are where the browser goes on from); mask: its current (H, W) bool mask, drawn until the
    next hover; mode: what a click adds ("foreground", "background" or "box"; shift-click adds
    a background point). None (instant mode off) for prompts with text, which only the server
    path can answer. The first call for a model exports its decoder (seconds).

    What the page reads of it: ``features`` (the decoder's image inputs: name, file, shape),
    ``input_size`` (the frame the prompts' coordinates are scaled to, as the predictor's
    transform does), ``box_first`` (SAM 2 puts a box's corners ahead of the points), and
    ``mask_frame``/``mask_crop``: the low-res logits are resized to ``mask_frame``, cropped to
    ``mask_crop`` and resized to the view, as the model's ``postprocess_masks`` does.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    model = predictor.model
    if (prompts is not None and prompts.text is not None) or not isinstance(model, (Sam, Sam2)):
        return None
    height, width = predictor.original_size
    if shown.shape[:2] != (height, width):
        raise ValueError(f"shown is {shown.shape[:2]} but the image is {(height, width)}")
    prompts = prompts or PromptState((height, width))
    mask_input = prompts.predictor_args()["mask_input"]
    view_height, view_width = view_size((height, width))
    if (view_height, view_width) != (height, width):
        shown = np.array(Image.fromarray(shown).resize((view_width, view_height), Image.BILINEAR))
        if mask is not None:
            mask = _resize_mask(mask, (view_height, view_width))
    if isinstance(model, Sam2):  # SAM 2 resizes the logits to the image in one step
        mask_frame = mask_crop = (view_height, view_width)
    else:  # SAM to its square frame, then crops the padding
        mask_frame, mask_crop = (model.image_encoder.img_size,) * 2, predictor.input_size
    return {
        "runtime": str(RUNTIME),
        "decoder": str(cached_decoder(model, FILES)),
        "features": _feature_files(predictor),
        "image": str(_store(_jpeg(shown), ".jpg")),
        "width": width,
        "height": height,
        "view_width": view_width,
        "view_height": view_height,
        "input_size": list(predictor.input_size),
        "mask_frame": list(mask_frame),
        "mask_crop": list(mask_crop),
        "box_first": isinstance(model, Sam2),
        "mask_input_size": model.prompt_encoder.mask_input_size[0],
        "points": [[p.x, p.y, p.label] for p in prompts.points],
        "corners": [list(c) for c in prompts.corners],
        "logits": None
        if mask_input is None
        else str(_store(np.asarray(mask_input, "<f4").tobytes(), ".f32")),
        "mask": None if mask is None else mask_to_uncompressed_rle(mask),
        "mode": mode,
        "colour": [int(c) for c in colour],
    }


def decoder_features(predictor: SamPredictor) -> dict[str, np.ndarray]:
    """The page decoder's image inputs for the predictor's image, float32 little-endian:
    SAM's ``image_embeddings`` (1, C, G, G); SAM 2's ``image_embed`` and ``high_res_feats_0``,
    ``high_res_feats_1`` (see :mod:`sam.onnx_sam2`)."""
    features = predictor.features
    if isinstance(features, Sam2Features):
        named = {
            "image_embed": features.image_embed,
            "high_res_feats_0": features.high_res_feats[0],
            "high_res_feats_1": features.high_res_feats[1],
        }
    else:
        named = {"image_embeddings": predictor.get_image_embedding()}
    return {name: t.detach().float().cpu().numpy().astype("<f4") for name, t in named.items()}


# the served files of each image's features, by id of its embedding tensor while it lives (a
# new image has a new tensor; tensors cannot be dictionary keys by value): a view refreshed
# after every event would otherwise copy and hash them again (16 MB for SAM 2)
_stored_features: dict[int, list[dict]] = {}


def _feature_files(predictor: SamPredictor) -> list[dict]:
    """:func:`decoder_features` stored in ``FILES``: [{name, path, shape}, ...]."""
    embedding = predictor.get_image_embedding()
    files = _stored_features.get(id(embedding))
    if files is not None and all(Path(f["path"]).exists() for f in files):
        for f in files:
            Path(f["path"]).touch()  # recently used: pruned last, as _store does
        return files
    files = [
        {"name": name, "path": str(_store(array.tobytes(), ".f32")), "shape": list(array.shape)}
        for name, array in decoder_features(predictor).items()
    ]
    if id(embedding) not in _stored_features:
        weakref.finalize(embedding, _stored_features.pop, id(embedding), None)
    _stored_features[id(embedding)] = files
    return files


@dataclass(frozen=True)
class InstantCandidate:
    mask: np.ndarray  # (H, W) bool
    score: float  # predicted IoU
    output_index: int  # which multimask output (0..2), as Candidate.output_index


@dataclass(frozen=True)
class InstantClick:
    """What the browser sent after a click: the prompts after it and the candidates they gave,
    best first (none when the prompts are only a box's first corner)."""

    x: float
    y: float
    mode: str  # what the click added: "foreground", "background" or "box" (a corner)
    points: np.ndarray  # (N, 2) xy pixels
    labels: np.ndarray  # (N,) 1 foreground, 0 background
    corners: list[tuple[float, float]]
    candidates: list[InstantCandidate]
    decode_ms: float  # from the click to the mask drawn, in the browser


def view_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of the masks the browser decodes for an image of ``image_size``."""
    height, width = image_size
    scale = min(1.0, VIEW_MAX_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def read_click(data: dict, image_size: tuple[int, int]) -> InstantClick:
    """The ``mask`` event's data (``gr.EventData._data``) for an image of ``image_size``
    (H, W); ValueError naming what is wrong when it does not fit. Masks decoded at a smaller
    view (images beyond ``VIEW_MAX_SIDE``) come back resized to the image (nearest), close to
    but not exactly the server path's: replay the click there when exact masks matter."""
    image_size = (int(image_size[0]), int(image_size[1]))
    try:
        size = tuple(int(v) for v in data["size"])
        if size != view_size(image_size):
            raise ValueError(f"the masks are {size} but the image is {image_size}")
        x, y, mode = float(data["click"]["x"]), float(data["click"]["y"]), data["click"]["mode"]
        rows = np.asarray(data["points"], dtype=float).reshape(-1, 3)
        corners = [(float(cx), float(cy)) for cx, cy in data["corners"]]
        candidates = [
            InstantCandidate(
                _resize_mask(_mask(c["rle"], size), image_size), float(c["score"]), int(c["index"])
            )
            for c in data["candidates"]
        ]
        decode_ms = float(data.get("decode_ms", 0.0))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"the browser's click is malformed: {error}") from error
    if mode not in MODES:
        raise ValueError(f"the click's mode must be one of {MODES}, got {mode!r}")
    if not set(rows[:, 2].tolist()) <= {FOREGROUND, BACKGROUND} or len(corners) > 2:
        raise ValueError("the click's points need labels 0 or 1, and a box at most two corners")
    if len(candidates) not in (0, 3) or any(c.output_index not in (0, 1, 2) for c in candidates):
        raise ValueError("the click needs three candidates (outputs 0, 1, 2) or none")
    return InstantClick(
        x, y, mode, rows[:, :2], rows[:, 2].astype(int), corners, candidates, decode_ms
    )


def _mask(rle: dict, image_size: tuple[int, int]) -> np.ndarray:
    counts = [int(c) for c in rle["counts"]]
    if tuple(rle["size"]) != tuple(image_size) or sum(counts) != image_size[0] * image_size[1]:
        raise ValueError(f"a mask's run lengths do not cover the {image_size} image")
    return rle_to_mask({"size": list(image_size), "counts": counts})


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) bool -> ``size`` (H, W), nearest neighbour."""
    if tuple(mask.shape) == tuple(size):
        return np.asarray(mask, dtype=bool)
    picture = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.array(picture.resize((size[1], size[0]), Image.NEAREST)) > 127


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB").save(
        buffer, "JPEG", quality=90
    )
    return buffer.getvalue()


def _store(data: bytes, suffix: str) -> Path:
    """FILES/HASH+suffix holding ``data`` (written once), keeping the folder within budget."""
    path = FILES / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if path.exists():
        path.touch()  # recently used: pruned last
        return path
    FILES.mkdir(parents=True, exist_ok=True)
    partial = FILES / f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial"
    partial.write_bytes(data)
    partial.replace(path)
    _prune()
    return path


def _prune() -> None:
    files = [p for p in FILES.iterdir() if p.suffix in (".f32", ".jpg")]
    files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    total = 0
    for path in files:
        total += path.stat().st_size
        if total > FILES_BUDGET:
            path.unlink(missing_ok=True)
