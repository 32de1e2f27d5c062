"""One person's work on the page: the image, its prompts (clicks, box, brush, text), the ranked
candidate masks, segment everything, and the accepted annotations. Knows the predictor's and the
text prompter's public methods, nothing of Gradio or the models' insides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pycocotools import mask as mask_utils

from prompts.annotations import AnnotatedImage, Annotation
from prompts.brush import mask_to_mask_input
from prompts.clicks import BACKGROUND, FOREGROUND, PromptState
from prompts.everything import EverythingSettings, Record, confident, segment_everything
from prompts.render import candidate_views, colour_masks, draw_prompts
from prompts.text_prompter import TextModel, TextPrompter
from sam import Candidate, SamPredictor
from sam.io.masks import mask_box, rle_to_mask
from sam.io.overlay import overlay_mask

ClickMode = Literal["foreground", "background", "box"]
MAX_ANNOTATIONS = 200
THUMBNAIL_SIDE = 512
DUPLICATE_IOU = 0.5  # a pre-filled mask this close to an annotation already there is skipped


@dataclass
class Session:
    """Every edit either succeeds as a whole or raises ValueError leaving the session as it
    was, so a refused click never loses the other prompts."""

    predictor: SamPredictor
    text_model: Callable[[], TextModel] | None = None  # called once, when text is first used
    everything_settings: EverythingSettings = field(default_factory=EverythingSettings)
    image: np.ndarray | None = None
    prompts: PromptState | None = None
    candidates: list[Candidate] = field(default_factory=list)
    clip_scores: list[float] | None = None  # per candidate, when they come from text
    current: int | None = None
    status: str = ""  # what the latest text prompt or segment everything found
    everything: list[Record] = field(default_factory=list)  # segment everything, largest first
    images: list[AnnotatedImage] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    max_annotations: int = MAX_ANNOTATIONS
    _text_prompter: TextPrompter | None = field(default=None, repr=False)
    _text_note: str = field(default="", repr=False)

    # -- image and model ------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, file_name: str = "image.png") -> None:
        """Encode a new image (cached by content) and start with no prompts."""
        self.predictor.set_image(image)
        self.image = image
        self.prompts = PromptState(image.shape[:2])
        self.candidates, self.clip_scores, self.current = [], None, None
        self.status, self.everything = "", []
        image_id = self.images[-1].image_id + 1 if self.images else 1
        annotated = {a.image_id for a in self.annotations}
        self.images = [i for i in self.images if i.image_id in annotated]  # bounded as they are
        self.images.append(AnnotatedImage(image_id, file_name, *image.shape[:2]))

    def forget_image(self) -> None:
        """No image (the annotations stay)."""
        self.predictor.reset_image()
        self.image, self.prompts, self.candidates, self.current = None, None, [], None
        self.clip_scores, self.status, self.everything = None, "", []

    def set_predictor(
        self,
        predictor: SamPredictor,
        text_model: Callable[[], TextModel] | None = None,
        everything_settings: EverythingSettings | None = None,
    ) -> None:
        """Switch model: re-encode the image and predict again from the same prompts."""
        if self.image is not None:
            predictor.set_image(self.image)
        self.predictor = predictor
        self.text_model, self._text_prompter = text_model, None
        self.everything_settings = everything_settings or self.everything_settings
        self.everything = []
        if self.prompts is not None:
            self._predict(self.prompts.with_logits(None))

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
        side = self._mask_input_side()
        prompts = prompts.with_brush(mask_to_mask_input(mask, side))
        box = mask_box(mask)
        if use_box and box is not None and box[0] < box[2] and box[1] < box[3]:
            prompts = prompts.add_corner(box[0], box[1]).add_corner(box[2], box[3])
        self._predict(prompts)

    def text(self, text: str) -> None:
        """Describe the object in words; clicks and a box given before or after refine it
        (positive points extend, negative points cut, a box restricts)."""
        self._predict(self._require_prompts().with_text(text))

    def pick(self, index: int) -> None:
        """Make candidate ``index`` (0 = best) current: the next click refines it."""
        if not 0 <= index < len(self.candidates):
            raise ValueError(f"no candidate {index}: there are {len(self.candidates)}")
        self.current = index
        self.prompts = self._require_prompts().with_logits(self.candidates[index].low_res_logits)

    def undo(self) -> None:
        self._predict(self._require_prompts().undo())

    def clear(self) -> None:
        self._predict(self._require_prompts().clear())

    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        text: str | None = None,
    ) -> list[Candidate]:
        """Explicit prompts (the API): points (N, 2) xy pixels, labels (N,) 1/0, box (4,) XYXY,
        text -> the candidates, best predicted IoU first (also kept as the session's); the
        clicked prompts are left as they were."""
        self._require_prompts()
        candidates, clip_scores, status = [], None, ""
        if text is not None:
            candidates, clip_scores, status = self._predict_text(text, points, labels, box)
        elif points is not None or labels is not None or box is not None:
            candidates = self.predictor.predict_ranked(points, labels, box)
        self.candidates, self.clip_scores, self.status = candidates, clip_scores, status
        self.current = 0 if candidates else None
        return candidates

    def _predict(self, prompts: PromptState) -> None:
        candidates, clip_scores, status = [], None, ""
        if prompts.text is not None:
            args = prompts.predictor_args()
            candidates, clip_scores, status = self._predict_text(
                prompts.text, args["point_coords"], args["point_labels"], args["box"]
            )
            if prompts.brush_input is not None:
                status += " The brush stroke is not used together with text."
        elif not prompts.is_empty:
            candidates = self.predictor.predict_ranked(**prompts.predictor_args())
        self.prompts = prompts.with_logits(candidates[0].low_res_logits if candidates else None)
        self.candidates, self.clip_scores, self.status = candidates, clip_scores, status
        self.current = 0 if candidates else None

    def _predict_text(
        self,
        text: str,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        box: np.ndarray | None,
    ) -> tuple[list[Candidate], list[float], str]:
        """Text plus optional clicks and box -> candidates best predicted IoU first, their
        CLIP scores, and what was found (or not)."""
        result = self.text_prompter().segment(
            self.image, text, points=points, labels=labels, box=box
        )
        candidates = [
            Candidate(c.mask, c.iou, c.low_res_logits, c.output_index) for c in result.candidates
        ]
        notes = [result.message[:1].upper() + result.message[1:] + "."]
        if result.truncated:
            notes.append(f"The text was shortened to {len(result.text)} characters.")
        if self._text_note:
            notes.append(self._text_note)
        return candidates, [c.clip_score for c in result.candidates], " ".join(notes)

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

    def _require_prompts(self) -> PromptState:
        if self.prompts is None:
            raise ValueError("upload an image first")
        return self.prompts

    # -- annotations ----------------------------------------------------------------------------

    def accept(self, label: str) -> Annotation:
        """Store the current mask under ``label`` and start the next object."""
        if self.current is None or self.image is None:
            raise ValueError("no mask to accept: click on an object first")
        if len(self.annotations) >= self.max_annotations:
            raise ValueError(
                f"at most {self.max_annotations} annotations per session: download them and "
                "reload the page to start a new list"
            )
        label = label.strip() or "object"
        candidate = self.candidates[self.current]
        points = tuple((p.x, p.y) for p in self._require_prompts().points)
        annotation = Annotation.from_mask(
            self._next_annotation_id(),
            self.images[-1].image_id,
            label,
            candidate.mask,
            candidate.score,
            points,
        )
        self.annotations.append(annotation)
        self.clear()
        return annotation

    def _next_annotation_id(self) -> int:
        return self.annotations[-1].annotation_id + 1 if self.annotations else 1

    # -- segment everything and semi-automatic annotation ---------------------------------------

    def segment_everything(self) -> list[Record]:
        """Every mask on the image (kept for :meth:`prefill` and :meth:`everything_canvas`)."""
        if self.image is None:
            raise ValueError("upload an image first")
        self.everything = segment_everything(self.predictor, self.image, self.everything_settings)
        self.status = f"Segment everything found {len(self.everything)} masks."
        if not self.everything:
            self.status = "Segment everything found no confident mask on this image."
        return self.everything

    def prefill(self, label: str = "") -> list[Annotation]:
        """Semi-automatic start: add segment everything's confident masks to the annotation
        list (skipping those that duplicate one already there), so only what is missing needs
        clicking. Runs segment everything first if it has not run on this image."""
        if self.image is None:
            raise ValueError("upload an image first")
        if not self.everything:
            self.segment_everything()
        settings = self.everything_settings
        image_id = self.images[-1].image_id
        existing = [a.pycoco_rle() for a in self.annotations if a.image_id == image_id]
        label = label.strip() or "object"
        added: list[Annotation] = []
        picks = confident(self.everything, settings)
        room = self.max_annotations - len(self.annotations)
        next_id = self._next_annotation_id()
        full = 0
        for record in picks:
            annotation = Annotation.from_record(next_id + len(added), image_id, label, record)
            rle = annotation.pycoco_rle()
            if existing and mask_utils.iou([rle], existing, [0] * len(existing)).max() >= (
                DUPLICATE_IOU
            ):
                continue
            if len(added) >= room:
                full += 1
                continue
            existing.append(rle)
            added.append(annotation)
        self.annotations.extend(added)
        self.status = (
            f"Pre-filled {len(added)} confident masks of {len(self.everything)} found "
            f"(predicted IoU ≥ {settings.confident_iou:g}, stability ≥ "
            f"{settings.confident_stability:g}); click to add what is missing."
        )
        if full:
            self.status += f" {full} more did not fit: at most {self.max_annotations} annotations."
        return added

    # -- views ----------------------------------------------------------------------------------

    @property
    def current_mask(self) -> np.ndarray | None:
        return None if self.current is None else self.candidates[self.current].mask

    def canvas(self) -> np.ndarray | None:
        """The image with the current mask and the prompts drawn on it."""
        if self.image is None or self.prompts is None:
            return None
        mask = self.current_mask
        shown = self.image if mask is None else overlay_mask(self.image, mask)
        return draw_prompts(shown, self.prompts)

    def gallery(self) -> list[tuple[np.ndarray, str]]:
        """The candidates best first, captioned 'IoU 0.93'."""
        if self.image is None or self.prompts is None:
            return []
        return candidate_views(
            self.image,
            [c.mask for c in self.candidates],
            [c.score for c in self.candidates],
            self.prompts,
            max_side=THUMBNAIL_SIDE,
            clip_scores=self.clip_scores,
        )

    def everything_canvas(self) -> np.ndarray | None:
        """The image with every mask of segment everything in its own colour (None if it has
        not run on this image)."""
        if self.image is None or not self.everything:
            return None
        masks = [rle_to_mask(r["segmentation"]) for r in self.everything]
        return colour_masks(self.image, masks)
