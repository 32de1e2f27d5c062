"""Text prompts for SAM through CLIP: "red circle" -> three masks, or an honest "not found".

Pipeline (one CLIP pass over the image, one SAM embedding, both cached by image content):

(a) validate the text (empty -> ValueError; long text is truncated at CLIP's context) and the
    person's clicks and box (:mod:`prompts.text_results`);
(b) existence: the text (a prompt-template ensemble) against negatives ("", "background", ...),
    with the global image embedding and the best image region; the margin over the *negatives*
    decides, so an absent object is reported absent instead of the least-bad guess winning;
(c) localisation: MaskCLIP dense patch-to-text similarity minus the best negative's similarity
    (never min-max normalised): patches that beat the negatives become positive points, the
    lowest patches background points, their connected region an optional box
    (:mod:`prompts.text_evidence`);
(d) verification: every SAM candidate of every prompt set is scored by CLIP on a masked crop
    (:mod:`prompts.text_verification`); the best prompt set wins (its best candidate's CLIP
    margin, plus ``iou_weight`` times SAM's predicted IoU: CLIP's margins alone are noisy
    between sets of similar masks) and its three masks are returned ranked by predicted IoU
    (``verify_sets=k`` first pre-ranks the sets by dense features pooled inside their masks and
    crop-verifies only the best k, trading some robustness for speed on CPU); with
    ``refine_rounds`` > 0 each of SAM's three masks is first fed back to it as the mask prompt
    with the same points and box, that many times (the rounds without a new point of the
    paper's interactive training);
(e) fallback: if no prompt set passes verification, segment everything's object proposals
    (a ``proposal_points`` grid, once per image, the SAM embedding reused; their coverage of
    CLIP's patch grid is kept with them) are ranked by their pooled dense margin and the best
    ``proposal_sets`` are prompted with their grid point and box and verified the same way
    (:mod:`prompts.text_proposals`);
(f) user clicks extend (positive) or cut (negative) the text result; a user box restricts it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from prompts.clip_model import ClipModel
from prompts.text_evidence import measure_evidence, peak_prompt_sets, pooled_margins
from prompts.text_proposals import ProposalCache, proposal_prompt_sets
from prompts.text_results import (
    PromptSet,
    TextCandidate,
    TextResult,
    clean_text,
    user_prompt_set,
)
from prompts.text_verification import passing_prompt_set, ranked_candidates, score_masks
from sam.cache import LRUCache, content_key
from sam.io.images import as_rgb_uint8

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a {} in a scene.",
    "a photo of the {}.",
    "there is a {} in the image.",
)
NEGATIVES: tuple[str, ...] = ("", "background", "an object", "nothing")
TEXT_EMBEDDINGS_KEPT = 256

#: TextPrompter settings for the bundled tiny CLIP and SAM: two refinement rounds, and the
#: verification threshold and IoU weight chosen with them by
#: :func:`prompts.text_evaluation.choose_text_options` on validation scenes (seed 2, never the
#: held-out seed 1); the proposal fallback is cheap with the tiny SAM.
DEMO_TEXT_OPTIONS = {
    "verify_threshold": 0.1,
    "iou_weight": 0.2,
    "proposal_points": 16,
    "refine_rounds": 2,
}


@dataclass(frozen=True)
class TextModel:
    """A CLIP model ready for text prompts; ``note`` is shown with every text result (empty
    when there is nothing to say); ``options`` are keyword arguments for
    :class:`TextPrompter` (thresholds that suit this CLIP)."""

    clip: ClipModel
    note: str = ""
    options: dict = field(default_factory=dict)

    def prompter(self, predictor) -> TextPrompter:
        """A text prompter with this CLIP and its options over ``predictor``."""
        return TextPrompter(self.clip, predictor, **self.options)


class TextPrompter:
    """Segment what a text describes, with a SAM predictor and a CLIP model."""

    def __init__(
        self,
        clip: ClipModel,
        predictor,
        templates: tuple[str, ...] = TEMPLATES,
        negatives: tuple[str, ...] = NEGATIVES,
        existence_threshold: float = 0.0,
        point_threshold: float = 0.0,
        verify_threshold: float = 0.0,
        max_points: int = 3,
        background_points: int = 2,
        use_box: bool = True,
        outside: str = "grey",
        context: float = 0.1,
        cache_entries: int = 8,
        verify_sets: int | None = None,
        iou_weight: float = 0.0,
        proposal_points: int | None = None,
        proposal_sets: int = 3,
        refine_rounds: int = 0,
    ) -> None:
        if outside not in ("grey", "blur"):
            raise ValueError(f"outside must be 'grey' or 'blur', got {outside!r}")
        if not templates or any("{}" not in t for t in templates):
            raise ValueError("every template must contain '{}'")
        if not negatives:
            raise ValueError("at least one negative text is needed")
        if refine_rounds < 0:
            raise ValueError(f"refine_rounds must be >= 0, got {refine_rounds}")
        self.clip = clip
        self.predictor = predictor
        self.templates = tuple(templates)
        self.negatives = tuple(negatives)
        self.existence_threshold = existence_threshold
        self.point_threshold = point_threshold
        self.verify_threshold = verify_threshold
        self.max_points = max_points
        self.background_points = background_points
        self.use_box = use_box
        self.outside = outside
        self.context = context
        self.verify_sets = verify_sets
        self.iou_weight = iou_weight
        self.proposal_points = proposal_points
        self.proposal_sets = proposal_sets
        self.refine_rounds = refine_rounds
        self._proposal_cache = ProposalCache(cache_entries)
        self._image_cache: LRUCache[tuple[torch.Tensor, torch.Tensor]] = LRUCache(cache_entries)
        self._text_cache: LRUCache[torch.Tensor] = LRUCache(TEXT_EMBEDDINGS_KEPT)
        self._negative_embeddings: torch.Tensor | None = None

    # -- features (cached) ----------------------------------------------------------------------

    def text_embedding(self, text: str) -> torch.Tensor:
        """(D,) unit-norm mean of the template embeddings of ``text``."""

        def embed() -> torch.Tensor:
            features = self.clip.encode_text([t.format(text) for t in self.templates])
            return torch.nn.functional.normalize(features.mean(0), dim=0)

        return self._text_cache.get_or_create(text, embed)

    def negative_embeddings(self) -> torch.Tensor:
        """(K, D): each negative through the same templates (template bias cancels)."""
        if self._negative_embeddings is None:
            embeddings = [self.text_embedding(n) for n in self.negatives]
            self._negative_embeddings = torch.stack(embeddings)
        return self._negative_embeddings

    def image_features(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(global (D,), dense (h, w, D)) for an image, from one CLIP pass, cached by content."""
        image = as_rgb_uint8(image)
        key = content_key(image, "clip", id(self.clip.model))
        return self._image_cache.get_or_create(key, lambda: self.clip.encode_image_dense(image))

    # -- main entry -----------------------------------------------------------------------------

    def segment(
        self,
        image: np.ndarray,
        text: str,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
    ) -> TextResult:
        """Text (plus optional clicks / box in image pixels) -> :class:`TextResult`."""
        text, truncated = clean_text(text)
        image = as_rgb_uint8(image)
        user = user_prompt_set(points, labels, box)
        size = image.shape[:2]

        self.predictor.set_image(image)  # the predictor's own cache keeps repeats cheap
        global_feature, dense = self.image_features(image)
        target = self.text_embedding(text)
        negatives = self.negative_embeddings()
        evidence, margin_map, allowed = measure_evidence(
            global_feature, dense, target, negatives, self.clip.logit_scale, user.box, size
        )
        common = {
            "text": text,
            "evidence": evidence,
            "similarity": margin_map,
            "truncated": truncated,
        }
        absent = f'not found: "{text}" does not appear in the image'
        if evidence.margin <= self.existence_threshold:
            return self._fallback(image, target, negatives, absent, user, common)

        prompt_sets = self._prompt_sets(
            margin_map, allowed, size, user.point_coords, user.point_labels, user.box
        )
        scored = self._verified(image, prompt_sets, dense, target, negatives)
        chosen = self._choose(scored)
        if chosen is None and self.proposal_points and user.box is None:
            # no peak prompt passed: segment-everything proposals, best pooled margin first
            records, cover = self._proposal_cache.get(
                self.predictor, image, self.proposal_points, tuple(dense.shape[:2])
            )
            proposal_sets = proposal_prompt_sets(
                records, cover, dense, target, negatives, user, self.proposal_sets
            )
            proposals_scored = self._verified(image, proposal_sets, dense, target, negatives)
            scored += proposals_scored
            chosen = self._choose(proposals_scored)
        if chosen is None:
            return self._fallback(image, target, negatives, absent, user, common)
        prompts, candidates = chosen
        best_margin = max(c.clip_margin for c in candidates)
        best_score = max(c.clip_score for c in candidates)
        message = f'found "{text}" (CLIP score {best_score:.2f}, margin {best_margin:+.3f})'
        return TextResult(
            found=True,
            message=message,
            candidates=candidates,
            prompts=prompts,
            alternatives=scored,
            **common,
        )

    def proposals(self, image: np.ndarray) -> list[dict]:
        """Object proposals of segment everything on a ``proposal_points`` grid (records of
        :func:`sam.tasks.proposals.generate_proposals`, best first), cached by image content;
        the image embedding is the predictor's."""
        image = as_rgb_uint8(image)
        return self._proposal_cache.get(self.predictor, image, self.proposal_points, None)[0]

    # -- steps ----------------------------------------------------------------------------------

    def _verified(self, image, prompt_sets, dense, target, negatives) -> list:
        """SAM on each prompt set, candidates CLIP-verified -> [(PromptSet, candidates)] for the
        sets with any candidate."""
        outputs = self._predict(prompt_sets)
        if self.verify_sets is not None and len(outputs) > self.verify_sets:
            # Pre-rank the sets for free by pooling the dense features inside each mask; only
            # the best few are verified on masked crops (each crop is a full CLIP pass).
            pooled = [pooled_margins(dense, masks, target, negatives) for masks, _, _ in outputs]
            keep = np.argsort([-float(np.max(m)) for m in pooled], kind="stable")
            keep = sorted(keep[: max(1, self.verify_sets)].tolist())
            prompt_sets = [prompt_sets[i] for i in keep]
            outputs = [outputs[i] for i in keep]
        runs = self._candidates(image, outputs, target, negatives) if outputs else []
        return [(p, c) for p, c in zip(prompt_sets, runs) if c]

    def _choose(self, scored: list) -> tuple[PromptSet, list[TextCandidate]] | None:
        return passing_prompt_set(scored, self.iou_weight, self.verify_threshold)

    def _fallback(self, image, target, negatives, absent, user, common) -> TextResult:
        """Text not found: segment from the user's own prompts if there are any, else nothing."""
        has_user = user.box is not None or (
            user.point_labels is not None and (user.point_labels == 1).any()
        )
        if not has_user:
            return TextResult(found=False, message=absent, **common)
        candidates = self._candidates(image, self._predict([user]), target, negatives)[0]
        message = absent + "; showing the segmentation from your clicks only"
        return TextResult(
            found=False, message=message, candidates=candidates, prompts=user, **common
        )

    def _prompt_sets(
        self, margin_map, allowed, size, user_points, user_labels, user_box
    ) -> list[PromptSet]:
        user = PromptSet(user_points, user_labels, user_box, "user")
        return peak_prompt_sets(
            margin_map,
            allowed,
            size,
            user,
            self.point_threshold,
            self.max_points,
            self.background_points,
            self.use_box,
        )

    def _predict(self, prompt_sets: list[PromptSet]) -> list[tuple[np.ndarray, ...]]:
        """SAM on each prompt set -> (masks (3, H, W), ious (3,), low_res (3, h, w))."""
        outputs = []
        for prompts in prompt_sets:
            output = self.predictor.predict(
                point_coords=prompts.point_coords,
                point_labels=prompts.point_labels,
                box=prompts.box,
                multimask_output=True,
            )
            outputs.append(self._refine(prompts, output[2]) if self.refine_rounds else output)
        return outputs

    def _refine(self, prompts: PromptSet, low_res: np.ndarray) -> tuple[np.ndarray, ...]:
        """Each of the three masks' logits (3, h, w) fed back ``refine_rounds`` times with the
        same prompts, one decoder call per round for all three -> the outputs of the last."""
        predictor = self.predictor
        device, size = predictor.device, predictor.original_size
        count = len(low_res)
        coords = labels = boxes = None
        if prompts.point_coords is not None:
            xy = predictor.transform.apply_coords(prompts.point_coords, size)
            coords = torch.as_tensor(xy, dtype=torch.float, device=device).expand(count, -1, -1)
            labels = torch.as_tensor(prompts.point_labels, device=device).expand(count, -1)
        if prompts.box is not None:
            box = predictor.transform.apply_boxes(np.asarray(prompts.box), size)
            boxes = torch.as_tensor(box, dtype=torch.float, device=device).expand(count, 4)
        logits = torch.as_tensor(low_res, dtype=torch.float, device=device)[:, None]
        for _ in range(self.refine_rounds):
            masks, ious, logits = predictor.predict_torch(coords, labels, boxes, logits, False)
        return masks[:, 0].cpu().numpy(), ious[:, 0].cpu().numpy(), logits[:, 0].cpu().numpy()

    def _candidates(self, image, outputs, target, negatives) -> list[list[TextCandidate]]:
        """SAM outputs -> candidates CLIP-scored on masked crops (one batch for all sets),
        each set's candidates best predicted IoU first."""
        all_masks = np.concatenate([masks for masks, _, _ in outputs])
        margins, scores = score_masks(
            self.clip, image, all_masks, target, negatives, self.outside, self.context
        )
        return ranked_candidates(outputs, margins, scores)
