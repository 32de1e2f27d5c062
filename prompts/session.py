"""One person's work on the page: the image, the objects segmented on it (each kept with its
own colour, label, mask and prompts), the object being refined (its prompts and ranked
candidates), and segment everything. Knows the predictor's and the text prompter's public
methods, nothing of Gradio or the models' insides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from prompts.annotations import AnnotatedImage, Annotation
from prompts.brush import mask_to_mask_input
from prompts.clicks import BACKGROUND, FOREGROUND, PromptState
from prompts.everything import EverythingSettings, Record, confident, segment_everything
from prompts.objects import (
    MAX_OBJECTS,
    KeptObject,
    ObjectList,
    clean_label,
    duplicates,
    object_colour,
)
from prompts.render import candidate_choices, colour_masks, draw_canvas
from prompts.text_clicks import segment_text_with_clicks
from prompts.text_prompter import TextModel, TextPrompter
from sam import Candidate, SamPredictor
from sam.io.masks import mask_box, rle_to_mask

ClickMode = Literal["foreground", "background", "box"]


@dataclass
class Session:
    """Every edit either succeeds as a whole or raises ValueError leaving the session as it
    was, so a refused click never loses the other prompts or objects.

    The object being refined is ``active_id``: its ``prompts`` and ranked ``candidates`` (the
    ``current`` one is its mask); each prediction keeps it in ``objects`` too."""

    predictor: SamPredictor
    text_model: Callable[[], TextModel] | None = None  # called once, when text is first used
    everything_settings: EverythingSettings = field(default_factory=EverythingSettings)
    max_objects: int = MAX_OBJECTS
    image: np.ndarray | None = None
    prompts: PromptState | None = None
    candidates: list[Candidate] = field(default_factory=list)
    clip_scores: list[float] | None = None  # per candidate, when they come from text
    current: int | None = None
    status: str = ""  # what the latest text prompt or segment everything found
    everything: list[Record] = field(default_factory=list)  # segment everything, largest first
    images: list[AnnotatedImage] = field(default_factory=list)
    active_id: int = 0
    label: str = "object"
    objects: ObjectList = field(init=False)
    _text_prompter: TextPrompter | None = field(default=None, repr=False)
    _text_note: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.objects = ObjectList(self.max_objects)

    # -- image and model ------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, file_name: str = "image.png") -> None:
        """Encode a new image (cached by content) and start a new object on it; the objects of
        earlier images are kept for download."""
        self.predictor.set_image(image)
        self.image = image
        self.everything = []
        image_id = self.images[-1].image_id + 1 if self.images else 1
        used = {o.image_id for o in self.objects.items}
        self.images = [i for i in self.images if i.image_id in used]  # bounded as objects are
        self.images.append(AnnotatedImage(image_id, file_name, *image.shape[:2]))
        self.new_object()
        height, width = image.shape[:2]
        self.status = f"Ready: {width}×{height} pixels. Click on an object."

    @property
    def image_id(self) -> int:
        return self.images[-1].image_id if self.images else 0

    def set_predictor(
        self,
        predictor: SamPredictor,
        text_model: Callable[[], TextModel] | None = None,
        everything_settings: EverythingSettings | None = None,
    ) -> None:
        """Switch model: re-encode the image and predict the active object again from its
        prompts (the other objects keep their masks)."""
        if self.image is not None:
            predictor.set_image(self.image)
        self.predictor = predictor
        self.text_model, self._text_prompter = text_model, None
        self.everything_settings = everything_settings or self.everything_settings
        self.everything = []
        if self.prompts is not None and not self.prompts.is_empty:
            self._predict(self.prompts.with_logits(None))

    # -- objects --------------------------------------------------------------------------------

    def new_object(self, label: str = "") -> None:
        """Start the next object (the active one stays, with its mask); an active object with no
        mask yet is simply renamed."""
        self._require_image()
        if self.objects.get(self.active_id) is not None or not self.active_id:
            self.active_id = self.objects.next_id()
        self.label = clean_label(label)
        self.prompts = PromptState(self.image.shape[:2])
        self.candidates, self.clip_scores, self.current = [], None, None
        self.status = f"New object #{self.active_id}: click on it."

    def select_object(self, object_id: int) -> None:
        """Make a kept object of this image the one refined by the next clicks."""
        kept = self.objects.get(object_id)
        if kept is None or kept.image_id != self.image_id:
            raise ValueError(f"there is no object #{object_id} on this image")
        mask = kept.mask
        if kept.logits is not None:
            logits = kept.logits.astype(np.float32)
        else:  # pre-filled: its mask becomes the mask prompt
            logits = mask_to_mask_input(mask, self._mask_input_side())
        prompts = kept.prompts or PromptState(self.image.shape[:2])
        self.active_id, self.label = kept.object_id, kept.label
        self.prompts = prompts.with_logits(logits)
        self.candidates = [Candidate(mask, kept.score, logits, 0)]
        self.clip_scores = None if kept.clip_score is None else [kept.clip_score]
        self.current = 0
        self.status = f"Refining #{kept.object_id} {kept.label}: click to add or remove parts."

    def rename(self, label: str) -> None:
        """Label the active object."""
        self.label = clean_label(label)
        kept = self.objects.get(self.active_id)
        if kept is not None:
            self.objects.put(kept.renamed(self.label))

    def delete_object(self, object_id: int | None = None) -> None:
        """Delete an object (the active one by default) and start a new one."""
        object_id = self.active_id if object_id is None else object_id
        if self.objects.get(object_id) is None:
            raise ValueError(f"there is no object #{object_id} to delete")
        self.objects.remove(object_id)
        if object_id == self.active_id:
            self.active_id = 0
            self.new_object()
        self.status = f"Deleted object #{object_id}."

    def annotations(self) -> list[Annotation]:
        """Every object with its mask, of every image, for export."""
        return self.objects.annotations()

    # -- prompts --------------------------------------------------------------------------------

    def click(self, x: float, y: float, mode: ClickMode) -> None:
        """A click on the image: a foreground or background point, or a box corner."""
        prompts = self._require_prompts()
        if mode == "box":
            self._predict(prompts.add_corner(x, y))
        elif mode in ("foreground", "background"):
            label = FOREGROUND if mode == "foreground" else BACKGROUND
            self._predict(prompts.add_point(x, y, label))
        else:
            raise ValueError(f"click mode must be foreground, background or box, got {mode!r}")

    def brush(self, mask: np.ndarray | None, use_box: bool = True) -> None:
        """A brush stroke (H, W) bool becomes a mask prompt, plus its extent as a box."""
        prompts = self._require_prompts()
        if mask is None or not mask.any():
            raise ValueError("nothing is painted: paint over the object with the brush first")
        if mask.shape != prompts.image_size:
            raise ValueError(f"brush mask is {mask.shape} but the image is {prompts.image_size}")
        prompts = prompts.with_brush(mask_to_mask_input(mask, self._mask_input_side()))
        box = mask_box(mask)
        if use_box and box is not None and box[0] < box[2] and box[1] < box[3]:
            prompts = prompts.add_corner(box[0], box[1]).add_corner(box[2], box[3])
        self._predict(prompts)

    def text(self, text: str) -> None:
        """Describe the object in words; clicks and a box given before or after change it
        (positive clicks add the objects under them, negative ones cut, a box restricts)."""
        self._predict(self._require_prompts().with_text(text))
        if self.label == "object" and self.prompts.text:  # unnamed: the text names it
            self.rename(self.prompts.text)

    def pick(self, index: int) -> None:
        """Make candidate ``index`` (0 = best) the object's mask: the next click refines it."""
        if not 0 <= index < len(self.candidates):
            raise ValueError(f"no candidate {index + 1}: there are {len(self.candidates)}")
        self.current = index
        self.prompts = self._require_prompts().with_logits(self.candidates[index].low_res_logits)
        self._keep()

    def undo(self) -> None:
        self._predict(self._require_prompts().undo())

    def clear(self) -> None:
        """No prompts on the active object (which leaves the list until it has a mask again)."""
        self._predict(self._require_prompts().clear())

    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        text: str | None = None,
    ) -> list[Candidate]:
        """Explicit prompts (the API): points (N, 2) xy pixels inside the image, labels (N,)
        1/0, box (4,) XYXY, text -> the candidates, best predicted IoU first (also kept as the
        session's); the objects are left as they were."""
        prompts = self._require_prompts().clear().with_points(points, labels)
        if box is not None:
            prompts = prompts.with_box(box)
        if text is not None:
            prompts = prompts.with_text(text)
        if prompts.is_empty:
            raise ValueError("no prompt: give points, a box or a text")
        self.candidates, self.clip_scores, self.status = self._candidates(prompts)
        self.current = 0 if self.candidates else None
        return self.candidates

    def _predict(self, prompts: PromptState) -> None:
        self.objects.check_room_for(self.active_id)
        candidates, clip_scores, status = self._candidates(prompts)
        self.prompts = prompts.with_logits(candidates[0].low_res_logits if candidates else None)
        self.candidates, self.clip_scores, self.status = candidates, clip_scores, status
        self.current = 0 if candidates else None
        self._keep()

    def _candidates(self, prompts: PromptState) -> tuple[list[Candidate], list[float] | None, str]:
        args = prompts.predictor_args()
        if prompts.text is None:
            if prompts.is_empty:
                return [], None, ""
            return self.predictor.predict_ranked(**args), None, ""
        candidates, clip_scores, status = segment_text_with_clicks(
            self.text_prompter(),
            self.image,
            prompts.text,
            args["point_coords"],
            args["point_labels"],
            args["box"],
        )
        if prompts.brush_input is not None:
            status += " The brush stroke is not used together with text."
        return candidates, clip_scores, " ".join(filter(None, [status, self._text_note]))

    def _keep(self) -> None:
        """Keep the active object's current mask in the list (or drop it when it has none)."""
        if self.current is None:
            self.objects.remove(self.active_id)
            return
        candidate = self.candidates[self.current]
        clip = None if self.clip_scores is None else self.clip_scores[self.current]
        self.objects.put(
            KeptObject.from_prediction(
                self.active_id,
                self.image_id,
                self.label,
                candidate.mask,
                candidate.score,
                self.prompts,
                candidate.low_res_logits,
                clip,
            )
        )

    def text_prompter(self) -> TextPrompter:
        """The text prompter, made on first use (loading CLIP; ValueError if unavailable)."""
        if self._text_prompter is None:
            if self.text_model is None:
                raise ValueError("text prompts are not available with this model")
            model = self.text_model()
            self._text_prompter = model.prompter(self.predictor)
            self._text_note = model.note
        return self._text_prompter

    def _mask_input_side(self) -> int:
        # TODO: read a public SamPredictor.mask_input_size once the predictor offers one.
        return int(self.predictor.model.prompt_encoder.mask_input_size[0])

    def _require_image(self) -> None:
        if self.image is None:
            raise ValueError("upload an image first")

    def _require_prompts(self) -> PromptState:
        self._require_image()
        return self.prompts

    # -- segment everything and semi-automatic annotation ---------------------------------------

    def segment_everything(self) -> list[Record]:
        """Every mask on the image (kept for :meth:`prefill` and :meth:`everything_canvas`)."""
        self._require_image()
        self.everything = segment_everything(self.predictor, self.image, self.everything_settings)
        self.status = f"Segment everything found {len(self.everything)} masks."
        if not self.everything:
            self.status = "Segment everything found no confident mask on this image."
        return self.everything

    def prefill(self, label: str = "") -> list[KeptObject]:
        """Semi-automatic start: add segment everything's confident masks as objects (skipping
        those that duplicate one already there), so only what is missing needs clicking. Runs
        segment everything first if it has not run on this image."""
        self._require_image()
        if not self.everything:
            self.segment_everything()
        settings = self.everything_settings
        existing = [o.rle for o in self.objects.on_image(self.image_id)]
        added: list[KeptObject] = []
        full = 0
        for record in confident(self.everything, settings):
            kept = KeptObject.from_record(0, self.image_id, clean_label(label), record)
            if duplicates(kept.rle, existing):
                continue
            if self.objects.room() <= 0:
                full += 1
                continue
            kept = replace(kept, annotation_id=self.objects.next_id())
            self.objects.put(kept)
            existing.append(kept.rle)
            added.append(kept)
        self.status = (
            f"Pre-filled {len(added)} confident masks of {len(self.everything)} found "
            f"(predicted IoU ≥ {settings.confident_iou:g}, stability ≥ "
            f"{settings.confident_stability:g}); click to add what is missing."
        )
        if full:
            self.status += f" {full} more did not fit: at most {self.objects.capacity} objects."
        return added

    # -- views ----------------------------------------------------------------------------------

    @property
    def current_mask(self) -> np.ndarray | None:
        return None if self.current is None else self.candidates[self.current].mask

    def canvas(self) -> np.ndarray | None:
        """The image with every object of it in its colour, the active one's current candidate
        stronger, and its prompts."""
        if self.image is None:
            return None
        others = [
            (o.mask, o.colour)
            for o in self.objects.on_image(self.image_id)
            if o.object_id != self.active_id
        ]
        mask = self.current_mask
        active = None if mask is None else (mask, object_colour(self.active_id))
        return draw_canvas(self.image, others, active, self.prompts)

    def candidate_choices(self) -> list[tuple[str, int]]:
        """The candidates' captions ('1 · IoU 0.93'), best first, for the toggle."""
        return candidate_choices([c.score for c in self.candidates], self.clip_scores)

    def everything_canvas(self) -> np.ndarray | None:
        """The image with every mask of segment everything in its own colour (None if it has
        not run on this image)."""
        if self.image is None or not self.everything:
            return None
        masks = [rle_to_mask(r["segmentation"]) for r in self.everything]
        return colour_masks(self.image, masks)
