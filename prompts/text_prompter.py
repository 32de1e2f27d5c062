"""Text prompts for SAM through CLIP: "red circle" -> three masks, or an honest "not found".

Pipeline (one CLIP pass over the image, one SAM embedding, both cached by image content):

(a) validate the text (empty -> ValueError; long text is truncated at CLIP's context);
(b) existence: the text (a prompt-template ensemble) against negatives ("", "background", ...),
    with the global image embedding and the best image region; the margin over the *negatives*
    decides, so an absent object is reported absent instead of the least-bad guess winning;
(c) localisation: MaskCLIP dense patch-to-text similarity minus the best negative's similarity
    (never min-max normalised): patches that beat the negatives become positive points, the
    lowest patches background points, their connected region an optional box;
(d) verification: every SAM candidate of every prompt set is scored by CLIP on a masked crop
    (pixels outside the mask greyed or blurred, never the raw box crop, so neighbours cannot
    vote); the best prompt set wins (its best candidate's CLIP margin, plus ``iou_weight`` times
    SAM's predicted IoU: CLIP's margins alone are noisy between sets of similar masks) and its
    three masks are returned ranked by predicted IoU (``verify_sets=k`` first pre-ranks the sets
    by dense features pooled inside their masks and crop-verifies only the best k, trading some
    robustness for speed on CPU); with ``refine_rounds`` > 0 each of SAM's three masks is first
    fed back to it as the mask prompt with the same points and box, that many times (the rounds
    without a new point of the paper's interactive training);
(e) fallback: if no prompt set passes verification, segment everything's object proposals
    (a ``proposal_points`` grid, once per image, the SAM embedding reused; their coverage of
    CLIP's patch grid is kept with them) are ranked by their pooled dense margin and the best
    ``proposal_sets`` are prompted with their grid point and box and verified the same way;
(f) user clicks extend (positive) or cut (negative) the text result; a user box restricts it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from scipy import ndimage

from prompts.clip_model import MAX_TEXT_CHARS, ClipModel
from sam.cache import content_key
from sam.io.images import as_rgb_uint8
from sam.tasks.proposals import generate_proposals
from sam.validation import check_boxes, check_points

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a {} in a scene.",
    "a photo of the {}.",
    "there is a {} in the image.",
)
NEGATIVES: tuple[str, ...] = ("", "background", "an object", "nothing")
GREY = (124, 116, 104)  # CLIP's mean colour: neutral after normalisation
PROPOSALS_KEPT = 100  # segment-everything proposals kept per image for the fallback


@dataclass(frozen=True)
class TextCandidate:
    """One SAM mask with its CLIP verdict."""

    mask: np.ndarray  # (H, W) bool
    iou: float  # SAM's predicted IoU
    clip_score: float  # P(text | masked crop) against the negatives, 0..1
    clip_margin: float  # cos(crop, text) - max cos(crop, negative); > 0: text beats negatives
    low_res_logits: np.ndarray  # (1, 256, 256), usable as the next mask_input
    output_index: int


@dataclass(frozen=True)
class PromptSet:
    """Prompts handed to SAM, in original-image pixels."""

    point_coords: np.ndarray | None  # (N, 2) xy
    point_labels: np.ndarray | None  # (N,) 1 foreground, 0 background
    box: np.ndarray | None  # (4,) XYXY
    source: str  # "peak", "peaks", "box", "user"


@dataclass(frozen=True)
class Evidence:
    """Does the text appear at all? Margins are cosine(text) - max cosine(negatives)."""

    global_margin: float
    region_margin: float  # best patch of the dense similarity map
    global_score: float  # P(text) against the negatives on the whole image

    @property
    def margin(self) -> float:
        return max(self.global_margin, self.region_margin)


@dataclass
class TextResult:
    text: str  # the text as used (cleaned, possibly truncated)
    found: bool
    message: str
    candidates: list[TextCandidate] = field(default_factory=list)  # best predicted IoU first
    prompts: PromptSet | None = None
    evidence: Evidence | None = None
    similarity: np.ndarray | None = None  # (h, w) patch margin over the negatives
    truncated: bool = False
    # every verified prompt set with its candidates, the chosen one included (when found)
    alternatives: list[tuple[PromptSet, list[TextCandidate]]] = field(default_factory=list)

    @property
    def best(self) -> TextCandidate | None:
        return self.candidates[0] if self.candidates else None


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def clean_text(text: object) -> tuple[str, bool]:
    """Validate a text prompt -> (cleaned text, whether it was truncated)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError('text is empty: describe what to segment, e.g. "red circle"')
    truncated = len(cleaned) > MAX_TEXT_CHARS
    return cleaned[:MAX_TEXT_CHARS], truncated


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
        self._proposal_cache = _LRU(cache_entries)
        self._image_cache = _LRU(cache_entries)
        self._text_cache = _LRU(256)
        self._negative_embeddings: torch.Tensor | None = None

    # -- features (cached) ----------------------------------------------------------------------

    def text_embedding(self, text: str) -> torch.Tensor:
        """(D,) unit-norm mean of the template embeddings of ``text``."""
        cached = self._text_cache.get(text)
        if cached is None:
            features = self.clip.encode_text([t.format(text) for t in self.templates])
            cached = torch.nn.functional.normalize(features.mean(0), dim=0)
            self._text_cache.put(text, cached)
        return cached

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
        cached = self._image_cache.get(key)
        if cached is None:
            cached = self.clip.encode_image_dense(image)
            self._image_cache.put(key, cached)
        return cached

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
        user_points, user_labels, user_box = _check_user_prompts(points, labels, box)
        height, width = image.shape[:2]

        self.predictor.set_image(image)  # the predictor's own cache keeps repeats cheap
        global_feature, dense = self.image_features(image)
        target = self.text_embedding(text)
        negatives = self.negative_embeddings()

        global_sims = torch.cat([target[None], negatives]) @ global_feature
        global_margin = float(global_sims[0] - global_sims[1:].max())
        global_score = float(torch.softmax(self.clip.logit_scale * global_sims, 0)[0])
        margin_map = (dense @ target - (dense @ negatives.T).max(-1).values).numpy()
        allowed = np.ones_like(margin_map, dtype=bool)
        if user_box is not None:
            allowed = _patches_in_box(margin_map.shape, user_box, (height, width))
        region_margin = float(margin_map[allowed].max()) if allowed.any() else -np.inf
        evidence = Evidence(global_margin, region_margin, global_score)
        common = {
            "text": text,
            "evidence": evidence,
            "similarity": margin_map,
            "truncated": truncated,
        }

        has_user = user_box is not None or (user_labels is not None and (user_labels == 1).any())
        absent = f'not found: "{text}" does not appear in the image'

        def fallback() -> TextResult:
            return self._fallback(image, target, negatives, absent, user, has_user, common)

        user = PromptSet(user_points, user_labels, user_box, "user")
        if evidence.margin <= self.existence_threshold:
            return fallback()

        prompt_sets = self._prompt_sets(
            margin_map, allowed, (height, width), user_points, user_labels, user_box
        )
        scored = self._verified(image, prompt_sets, dense, target, negatives)
        chosen = self._choose(scored)
        if chosen is None and self.proposal_points and user_box is None:
            # no peak prompt passed: segment-everything proposals, best pooled margin first
            proposal_sets = self._proposal_sets(image, dense, target, negatives, user)
            proposals_scored = self._verified(image, proposal_sets, dense, target, negatives)
            scored += proposals_scored
            chosen = self._choose(proposals_scored)
        if chosen is None:
            return fallback()
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

    # -- steps ----------------------------------------------------------------------------------

    def _verified(self, image, prompt_sets, dense, target, negatives) -> list:
        """SAM on each prompt set, candidates CLIP-verified -> [(PromptSet, candidates)] for the
        sets with any candidate."""
        outputs = self._predict(prompt_sets)
        if self.verify_sets is not None and len(outputs) > self.verify_sets:
            # Pre-rank the sets for free by pooling the dense features inside each mask; only
            # the best few are verified on masked crops (each crop is a full CLIP pass).
            pooled = [
                self.pooled_margins(dense, masks, target, negatives) for masks, _, _ in outputs
            ]
            keep = np.argsort([-float(np.max(m)) for m in pooled], kind="stable")
            keep = sorted(keep[: max(1, self.verify_sets)].tolist())
            prompt_sets = [prompt_sets[i] for i in keep]
            outputs = [outputs[i] for i in keep]
        runs = self._candidates(image, outputs, target, negatives) if outputs else []
        return [(p, c) for p, c in zip(prompt_sets, runs) if c]

    def _choose(self, scored: list) -> tuple[PromptSet, list[TextCandidate]] | None:
        return passing_prompt_set(scored, self.iou_weight, self.verify_threshold)

    def proposals(self, image: np.ndarray) -> list[dict]:
        """Object proposals of segment everything on a ``proposal_points`` grid (records of
        :func:`sam.tasks.proposals.generate_proposals`, best first), cached by image content;
        the image embedding is the predictor's."""
        return self._proposals(as_rgb_uint8(image), None)[0]

    def _proposals(
        self, image: np.ndarray, grid: tuple[int, int] | None
    ) -> tuple[list[dict], torch.Tensor | None]:
        """(records, their :func:`patch_cover` on CLIP's ``grid`` (M, h * w)), both cached per
        image, so that a new text on a known image only multiplies the cover by its features."""
        key = content_key(image, "proposals", self.proposal_points, id(self.predictor.model))
        records, covers = self._proposal_cache.get(key) or (None, {})
        if records is None:
            records = generate_proposals(
                self.predictor.model,
                image,
                top_k=PROPOSALS_KEPT,
                points_per_side=self.proposal_points,
                output_mode="binary_mask",
                cache=self.predictor.cache,
            )
        if grid is not None and grid not in covers and records:
            covers[grid] = patch_cover([r["segmentation"] for r in records], grid)
        self._proposal_cache.put(key, (records, covers))
        return records, covers.get(grid)

    def _proposal_sets(self, image, dense, target, negatives, user: PromptSet) -> list[PromptSet]:
        """The ``proposal_sets`` proposals whose pooled dense features match the text best, each
        as its own grid point plus its box (plus the user's clicks)."""
        records, cover = self._proposals(image, tuple(dense.shape[:2]))
        if not records:
            return []
        pooled = cover_margins(cover, dense, target, negatives)
        sets = []
        for i in np.argsort(-pooled, kind="stable")[: self.proposal_sets]:
            if not np.isfinite(pooled[i]):
                continue
            x, y, w, h = records[i]["bbox"]
            coords = [np.asarray(records[i]["point_coords"], np.float32).reshape(1, 2)]
            labels = [np.ones(1, np.int64)]
            if user.point_coords is not None:
                coords.append(user.point_coords)
                labels.append(user.point_labels)
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            sets.append(PromptSet(np.concatenate(coords), np.concatenate(labels), box, "proposal"))
        return sets

    def _fallback(self, image, target, negatives, absent, user, has_user, common) -> TextResult:
        """Text not found: segment from the user's own prompts if there are any, else nothing."""
        if not has_user:
            return TextResult(found=False, message=absent, **common)
        prompts = user
        candidates = self._candidates(image, self._predict([prompts]), target, negatives)[0]
        message = absent + "; showing the segmentation from your clicks only"
        return TextResult(
            found=False, message=message, candidates=candidates, prompts=prompts, **common
        )

    def _prompt_sets(
        self, margin_map, allowed, size, user_points, user_labels, user_box
    ) -> list[PromptSet]:
        h, w = margin_map.shape
        masked = np.where(allowed, margin_map, -np.inf)
        peaks = _peaks(masked, self.point_threshold, self.max_points)
        if not peaks:  # global evidence only: the best patch, still relative to the negatives
            peaks = [np.unravel_index(int(np.argmax(masked)), masked.shape)]
        lows = _peaks(-np.where(allowed, margin_map, np.inf), 0.0, self.background_points)
        lows = [p for p in lows if margin_map[p] < 0 and p not in peaks]
        to_xy = lambda rc: _patch_centre(rc, (h, w), size)  # noqa: E731
        positive = np.array([to_xy(p) for p in peaks], dtype=np.float32)
        negative = np.array([to_xy(p) for p in lows], dtype=np.float32).reshape(-1, 2)

        def make(pos: np.ndarray, box: np.ndarray | None, source: str) -> PromptSet:
            coords = [pos, negative]
            labels = [np.ones(len(pos), np.int64), np.zeros(len(negative), np.int64)]
            if user_points is not None:
                coords.append(user_points)
                labels.append(user_labels)
            if user_box is not None:
                box = user_box
            return PromptSet(
                np.concatenate(coords).astype(np.float32), np.concatenate(labels), box, source
            )

        sets = [make(positive[:1], None, "peak")]
        if len(positive) > 1:
            sets.append(make(positive, None, "peaks"))
        if self.use_box and user_box is None:
            region_box = _region_box(margin_map, allowed, peaks[0], self.point_threshold, size)
            if region_box is not None:
                sets.append(make(positive[:1], region_box, "box"))
        return sets

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
        all_margins, all_scores = self.score_masks(image, all_masks, target, negatives)
        results, start = [], 0
        for masks, ious, low_res in outputs:
            margins = all_margins[start : start + len(masks)]
            scores = all_scores[start : start + len(masks)]
            start += len(masks)
            order = np.argsort(-ious, kind="stable")
            results.append(
                [
                    TextCandidate(
                        mask=masks[i],
                        iou=float(ious[i]),
                        clip_score=float(scores[i]),
                        clip_margin=float(margins[i]),
                        low_res_logits=low_res[i : i + 1],
                        output_index=int(i),
                    )
                    for i in order
                ]
            )
        return results

    @staticmethod
    def pooled_margins(
        dense: torch.Tensor, masks: np.ndarray, target: torch.Tensor, negatives: torch.Tensor
    ) -> np.ndarray:
        """Free pre-score: dense features (h, w, D) averaged inside each mask (area-weighted on
        the patch grid), margin of the text over the best negative; empty masks get -inf."""
        return cover_margins(patch_cover(masks, dense.shape[:2]), dense, target, negatives)

    def score_masks(
        self, image: np.ndarray, masks: np.ndarray, target: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """CLIP on masked crops -> (margins, scores) per mask; empty masks get (-inf, 0)."""
        margins = np.full(len(masks), -np.inf, dtype=np.float32)
        scores = np.zeros(len(masks), dtype=np.float32)
        crops, index, seen = [], [], {}
        for i, mask in enumerate(masks):
            key = content_key(np.packbits(mask), mask.shape)
            if key in seen:  # the same mask from another prompt set: score it once
                seen[key].append(i)
                continue
            crop = masked_crop(image, mask, self.outside, self.context)
            if crop is not None:
                seen[key] = [i]
                crops.append(crop)
                index.append(seen[key])
        if crops:
            features = self.clip.encode_image(crops)
            sims = features @ torch.cat([target[None], negatives]).T  # (M, 1 + K)
            crop_margins = (sims[:, 0] - sims[:, 1:].max(1).values).numpy()
            crop_scores = torch.softmax(self.clip.logit_scale * sims, 1)[:, 0].numpy()
            for j, targets in enumerate(index):
                margins[targets] = crop_margins[j]
                scores[targets] = crop_scores[j]
        return margins, scores


# -- helpers ------------------------------------------------------------------------------------


def patch_cover(masks, grid: tuple[int, int], chunk: int = 8) -> torch.Tensor:
    """Masks (M, H, W) bool (an array or a list of them) -> (M, h * w): the fraction of each
    patch of the (h, w) ``grid`` inside each mask. A few masks at a time, so that full-resolution
    masks are never all converted to float at once."""
    covers = [
        F.adaptive_avg_pool2d(torch.from_numpy(np.stack(masks[i : i + chunk])).float(), grid)
        for i in range(0, len(masks), chunk)
    ]
    return torch.cat(covers).flatten(1)


def cover_margins(
    cover: torch.Tensor, dense: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor
) -> np.ndarray:
    """Dense features (h, w, D) pooled by ``cover`` (M, h * w) of :func:`patch_cover` -> margin
    of the text over the best negative (M,); masks covering nothing get -inf."""
    pooled = F.normalize(cover @ dense.reshape(cover.shape[1], -1), dim=-1)
    margins = pooled @ target - (pooled @ negatives.T).max(1).values
    return torch.where(cover.sum(1) > 0, margins, -torch.inf).numpy()


def best_prompt_set(
    scored: list[tuple[PromptSet, list[TextCandidate]]], iou_weight: float = 0.0
) -> tuple[PromptSet, list[TextCandidate]]:
    """The prompt set whose best candidate scores highest: CLIP margin plus ``iou_weight``
    times SAM's predicted IoU (ties: the higher predicted IoU)."""
    return max(
        scored, key=lambda pc: max((c.clip_margin + iou_weight * c.iou, c.iou) for c in pc[1])
    )


def passing_prompt_set(
    scored: list[tuple[PromptSet, list[TextCandidate]]], iou_weight: float, verify_threshold: float
) -> tuple[PromptSet, list[TextCandidate]] | None:
    """:func:`best_prompt_set`, or None if there is none or its best CLIP margin does not pass
    ``verify_threshold`` (the gate of :meth:`TextPrompter.segment`)."""
    if not scored:
        return None
    prompts, candidates = best_prompt_set(scored, iou_weight)
    if max(c.clip_margin for c in candidates) <= verify_threshold:
        return None
    return prompts, candidates


def _check_user_prompts(points, labels, box):
    if points is None and labels is not None:
        raise ValueError("points must be supplied if labels is supplied")
    if points is not None:
        if labels is None:
            raise ValueError("labels must be supplied if points is supplied")
        check_points(points, labels)
        points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if np.any(labels == -1):
            raise ValueError("labels must be 1 (foreground) or 0 (background)")
        if len(points) == 0:
            points = labels = None
    if box is not None:
        check_boxes(box)
        box = np.asarray(box, dtype=np.float32).reshape(4)
    return points, labels, box


def _patch_centre(rc, grid, size) -> tuple[float, float]:
    (r, c), (h, w), (height, width) = rc, grid, size
    return (c + 0.5) * width / w, (r + 0.5) * height / h


def _patches_in_box(grid, box, size) -> np.ndarray:
    h, w = grid
    height, width = size
    ys = (np.arange(h) + 0.5) * height / h
    xs = (np.arange(w) + 0.5) * width / w
    inside = (ys[:, None] >= box[1]) & (ys[:, None] <= box[3])
    inside = inside & (xs[None, :] >= box[0]) & (xs[None, :] <= box[2])
    if not inside.any():  # a box smaller than a patch: the patch under its centre
        r = min(h - 1, int((box[1] + box[3]) / 2 * h / height))
        c = min(w - 1, int((box[0] + box[2]) / 2 * w / width))
        inside[r, c] = True
    return inside


def _peaks(values: np.ndarray, threshold: float, count: int) -> list[tuple[int, int]]:
    """Local maxima (3x3) above ``threshold``, highest first, at most ``count``."""
    if count <= 0:
        return []
    finite = np.where(np.isfinite(values), values, -np.inf)
    local = finite == ndimage.maximum_filter(finite, size=3, mode="constant", cval=-np.inf)
    rows, cols = np.nonzero(local & (finite > threshold))
    order = np.argsort(-finite[rows, cols], kind="stable")[:count]
    return [(int(rows[i]), int(cols[i])) for i in order]


def _region_box(margin_map, allowed, peak, threshold, size) -> np.ndarray | None:
    """XYXY box (image pixels) around the above-threshold region holding ``peak``."""
    region, _ = ndimage.label((margin_map > threshold) & allowed)
    label = region[peak]
    if label == 0:
        return None
    rows, cols = np.nonzero(region == label)
    h, w = margin_map.shape
    height, width = size
    return np.array(
        [
            cols.min() * width / w,
            rows.min() * height / h,
            (cols.max() + 1) * width / w,
            (rows.max() + 1) * height / h,
        ],
        dtype=np.float32,
    )


def masked_crop(
    image: np.ndarray, mask: np.ndarray, outside: str = "grey", context: float = 0.1
) -> np.ndarray | None:
    """The mask's box (plus ``context``) with every pixel outside the mask greyed or blurred,
    padded to a square with grey; None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    height, width = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    pad_y = max(1, int((y1 - y0) * context + 0.5))
    pad_x = max(1, int((x1 - x0) * context + 0.5))
    y0, y1 = max(0, y0 - pad_y), min(height, y1 + pad_y)
    x0, x1 = max(0, x0 - pad_x), min(width, x1 + pad_x)
    crop = image[y0:y1, x0:x1]
    keep = mask[y0:y1, x0:x1, None]
    if outside == "blur":
        radius = max(2.0, max(crop.shape[:2]) / 10)
        blurred = np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(radius)))
        background = (blurred * 0.5 + np.array(GREY) * 0.5).astype(np.uint8)
    else:
        background = np.broadcast_to(np.array(GREY, dtype=np.uint8), crop.shape)
    crop = np.where(keep, crop, background)
    side = max(crop.shape[:2])
    square = np.empty((side, side, 3), dtype=np.uint8)
    square[:] = GREY
    top, left = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    return square
