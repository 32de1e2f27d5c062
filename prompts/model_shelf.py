"""The models the page serves, loaded on demand and shared by every session: SAM models (the one
asked for, else the bundled demo model, else an untrained test model, with a banner saying so)
and the CLIP model that serves text prompts with each of them (the bundled tiny CLIP for the demo
and test models, open_clip's ViT-B-16 trained on DataComp for Meta's vit_b/l/h), loaded when
text is first used."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prompts.clip_model import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEMO_CLIP_CHECKPOINT,
    DEMO_MODEL_NAME,
    ClipLoadError,
    create_random_clip,
    load_clip,
)
from prompts.everything import EverythingSettings, settings_for
from prompts.hub_access import HubAccess, needs_hub
from prompts.model_notice import FALLBACK_MODEL, serving_notice
from prompts.text_prompter import DEMO_TEXT_OPTIONS, TextModel
from sam import CheckpointError, EmbeddingCache, Sam, SamPredictor, build_sam, load_sam
from sam.cache import LRUCache
from sam.modeling.sam2 import Sam2
from sam.weights.checkpoint import HUB_REPOS

log = logging.getLogger("sam.app")

LOADED_MODELS_KEPT = 2
RETRY_AFTER_S = 300.0  # a failed CLIP download is retried after this long, not on every request
UNTRAINED_NOTE = (
    "Note: the bundled CLIP is not trained yet, so text results come from an untrained model "
    "and are meaningless."
)

Loader = Callable[..., Sam]
ClipKind = Literal["demo", "default"]


# -- CLIP for text prompts ----------------------------------------------------------------------


ClipLoader = Callable[[ClipKind], TextModel]


def clip_kind(sam_model: str) -> ClipKind:
    """The CLIP that goes with a SAM model name: the tiny one for the small models and for
    checkpoint files of unknown size, ViT-B-16 for Meta's models (SAM and SAM 2.1)."""
    return "default" if sam_model in HUB_REPOS else "demo"


def load_text_model(kind: ClipKind) -> TextModel:
    """Load the CLIP of ``kind``; raises :class:`ClipLoadError` with a message a person can act
    on. The tiny CLIP falls back to random weights (with a note) while it is not bundled."""
    if kind == "demo":
        if Path(DEMO_CLIP_CHECKPOINT).is_file():
            return TextModel(load_clip("demo"), options=dict(DEMO_TEXT_OPTIONS))
        log.warning("the bundled CLIP %s is missing: using random weights", DEMO_CLIP_CHECKPOINT)
        return TextModel(create_random_clip(DEMO_MODEL_NAME), UNTRAINED_NOTE)
    try:
        return TextModel(load_clip(DEFAULT_MODEL, DEFAULT_PRETRAINED))
    except ClipLoadError as error:
        log.warning("could not load CLIP %s (%s): %s", DEFAULT_MODEL, DEFAULT_PRETRAINED, error)
        raise ClipLoadError(
            f"Text prompts need the CLIP model {DEFAULT_MODEL} from the Hugging Face Hub, which "
            "could not be loaded: connect to the internet once, or choose the demo model; "
            "clicks, boxes and the brush keep working."
        ) from error


class TextModels:
    """CLIP models loaded on first use and shared by every session. A failed load is remembered
    for ``retry_after_s`` seconds so an offline machine is not asked again on every request."""

    def __init__(
        self, loader: ClipLoader = load_text_model, retry_after_s: float = RETRY_AFTER_S
    ) -> None:
        self.loader, self.retry_after_s = loader, retry_after_s
        self._models: dict[ClipKind, TextModel] = {}
        self._failures: dict[ClipKind, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, kind: ClipKind) -> TextModel:
        """The CLIP of ``kind``; raises ValueError (the reason, for the person) if unavailable."""
        with self._lock:
            if kind in self._models:
                return self._models[kind]
            failed = self._failures.get(kind)
            if failed is not None and time.monotonic() - failed[0] < self.retry_after_s:
                raise ValueError(failed[1])
            try:
                model = self.loader(kind)
            except (ClipLoadError, OSError, RuntimeError) as error:
                message = str(error)
                self._failures[kind] = (time.monotonic(), message)
                log.warning("text prompts unavailable: %s", message)
                raise ValueError(message) from error
            self._failures.pop(kind, None)
            self._models[kind] = model
            return model


# -- SAM ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve, with its shared embedding cache; ``notice`` says which model
    serves and, if it is not the one asked for, why and what to do."""

    requested: str
    used: str
    model: Sam
    cache: EmbeddingCache
    notice: str = ""

    @property
    def fell_back(self) -> bool:
        """True when another model serves than the one asked for."""
        return self.used != self.requested

    def predictor(self) -> SamPredictor:
        """A new predictor (one per session) sharing this model's embedding cache."""
        return SamPredictor(self.model, cache=self.cache)

    def everything_settings(self) -> EverythingSettings:
        """Segment-everything settings that suit this model on its device."""
        return settings_for(self.used, on_gpu=self.model.device.type == "cuda")


def load_with_fallback(
    name: str,
    device: str | None = None,
    precision: str = "auto",
    loader: Loader = load_sam,
    hub: HubAccess | None = None,
) -> LoadedModel:
    """``name``, else the bundled demo model, else a random test model; never raises for a
    missing or unreadable checkpoint. A model from the Hub first asks ``hub`` whether it is
    reachable (once per process), so that an offline machine falls back in seconds."""
    offline = needs_hub(name) and (hub or HubAccess()).offline
    try:
        model = loader(name, device=device, precision=precision)
        return LoadedModel(name, name, model, EmbeddingCache(), serving_notice(name, name))
    except CheckpointError as error:
        log.warning("could not load %s: %s", name, error)
    if name != "demo":
        try:
            model = loader("demo", device=device, precision=precision)
            notice = serving_notice(name, "demo", offline)
            return LoadedModel(name, "demo", model, EmbeddingCache(), notice)
        except CheckpointError as error:
            log.warning("could not load the demo model either: %s", error)
    model = build_sam(FALLBACK_MODEL).eval()
    notice = serving_notice(name, FALLBACK_MODEL, offline)
    return LoadedModel(name, FALLBACK_MODEL, model, EmbeddingCache(), notice)


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
        self.hub = HubAccess()
        self._models: LRUCache[LoadedModel] = LRUCache(capacity)

    def text_model_for(self, loaded: LoadedModel) -> Callable[[], TextModel]:
        """What a session calls, on its first text prompt, to get the CLIP for ``loaded``."""
        kind = clip_kind(loaded.used)

        def text_model() -> TextModel:
            if kind == "default" and self.hub.offline:  # decided once, before any download
                log.info("offline: open_clip's weights are looked for in the Hub cache only")
            return self.text_models.get(kind)

        return text_model

    def get(self, name: str) -> LoadedModel:
        """The model ``name`` (loaded once, under the shelf's lock, while it stays on the
        shelf)."""
        return self._models.get_or_create(name, lambda: self._load(name))

    def _load(self, name: str) -> LoadedModel:
        loaded = load_with_fallback(name, self.device, self.precision, self.loader, self.hub)
        prewarm_decoder(loaded.model)
        return loaded


PREWARM_THREAD = "prewarm-decoder"  # the name of prewarm_decoder's threads


def prewarm_decoder(model: Sam | Sam2) -> None:
    """Export ``model``'s decoder for the page's instant mode in the background (a thread
    named ``PREWARM_THREAD``), so that the first image's view does not wait seconds for it."""
    from prompts.instant import FILES  # the page's static files; gradio is imported lazily
    from sam.onnx_export import cached_decoder

    if isinstance(model, (Sam, Sam2)):
        threading.Thread(
            target=cached_decoder, args=(model, FILES), name=PREWARM_THREAD, daemon=True
        ).start()
