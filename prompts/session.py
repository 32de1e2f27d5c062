"""One person's work on the page: the image, its prompts, the ranked candidate masks and the
accepted annotations. Knows the predictor's public methods, nothing of Gradio or the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sam import Candidate, SamPredictor

from .annotations import AnnotatedImage, Annotation
from .brush import mask_box, mask_to_mask_input
from .clicks import BACKGROUND, FOREGROUND, PromptState
from .render import candidate_views, draw_prompts, overlay_mask

ClickMode = Literal["foreground", "background", "box"]
MAX_ANNOTATIONS = 200
THUMBNAIL_SIDE = 512


@dataclass
class Session:
    """Every edit either succeeds as a whole or raises ValueError leaving the session as it
    was, so a refused click never loses the other prompts."""

    predictor: SamPredictor
    image: np.ndarray | None = None
    prompts: PromptState | None = None
    candidates: list[Candidate] = field(default_factory=list)
    current: int | None = None
    images: list[AnnotatedImage] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    max_annotations: int = MAX_ANNOTATIONS

    # -- image and model ------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, file_name: str = "image.png") -> None:
        """Encode a new image (cached by content) and start with no prompts."""
        self.predictor.set_image(image)
        self.image = image
        self.prompts = PromptState(image.shape[:2])
        self.candidates, self.current = [], None
        image_id = self.images[-1].image_id + 1 if self.images else 1
        annotated = {a.image_id for a in self.annotations}
        self.images = [i for i in self.images if i.image_id in annotated]  # bounded as they are
        self.images.append(AnnotatedImage(image_id, file_name, *image.shape[:2]))

    def forget_image(self) -> None:
        """No image (the annotations stay)."""
        self.predictor.reset_image()
        self.image, self.prompts, self.candidates, self.current = None, None, [], None

    def set_predictor(self, predictor: SamPredictor) -> None:
        """Switch model: re-encode the image and predict again from the same prompts."""
        if self.image is not None:
            predictor.set_image(self.image)
        self.predictor = predictor
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

    def _predict(self, prompts: PromptState) -> None:
        candidates = []
        if not prompts.is_empty:
            candidates = self.predictor.predict_ranked(**prompts.predictor_args())
        self.prompts = prompts.with_logits(candidates[0].low_res_logits if candidates else None)
        self.candidates = candidates
        self.current = 0 if candidates else None

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
        next_id = self.annotations[-1].annotation_id + 1 if self.annotations else 1
        annotation = Annotation.from_mask(
            next_id, self.images[-1].image_id, label, candidate.mask, candidate.score
        )
        self.annotations.append(annotation)
        self.clear()
        return annotation

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
        )
