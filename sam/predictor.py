"""``SamPredictor``: a drop-in for ``segment_anything.SamPredictor`` with an embedding cache.

Encode an image once with :meth:`SamPredictor.set_image`, then prompt it as often as you like;
prompting an image seen before (by content) reuses its cached embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sam.cache import CachedEmbedding, EmbeddingCache, content_key
from sam.fast.shared_decoding import ImageDecoding, SharingMaskDecoder
from sam.io.images import as_rgb_uint8
from sam.modeling.promptable import PromptableModel
from sam.modeling.sam2 import Sam2Features
from sam.validation import check_boxes, check_mask_input, check_points

# Objects of predict_batch decoded at once: bounds its (chunk, 3, H, W) full-size masks.
BATCH_CHUNK = 16


class ImageNotSetError(RuntimeError, ValueError):
    """Prediction was asked for before an image was set (a RuntimeError, as in the reference)."""


@dataclass(frozen=True)
class Candidate:
    """One candidate mask, as the UI shows it."""

    mask: np.ndarray  # (H, W) bool
    score: float  # predicted IoU
    low_res_logits: np.ndarray  # (1, 256, 256) float32, usable as the next mask_input
    output_index: int  # which decoder output it came from


class SamPredictor:
    """Same methods, arguments, shapes and semantics as the reference predictor, for SAM and for
    SAM 2 (whose own predictor it then matches), through the interface both models share
    (:class:`sam.modeling.promptable.PromptableModel`)."""

    def __init__(self, sam_model: PromptableModel, cache: EmbeddingCache | None = None) -> None:
        self.model = sam_model
        self.transform = sam_model.input_transform()
        self.cache = cache if cache is not None else EmbeddingCache()
        self.reset_image()

    # -- images ---------------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an (H, W, 3) uint8 image ((H, W) grayscale and RGBA are accepted too)."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = as_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        key = content_key(image, "image", *self._model_key())
        if self._use_cached(key):
            return
        input_image = self.transform.apply_image(np.ascontiguousarray(image))
        input_image_torch = torch.as_tensor(input_image, device=self.device)
        input_image_torch = input_image_torch.permute(2, 0, 1).contiguous()[None, :, :, :]
        self._encode(input_image_torch, image.shape[:2], key)

    def set_torch_image(
        self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]
    ) -> None:
        """Encode a (1, 3, h, w) image already resized so that max(h, w) is the model's size."""
        side = self.model.image_size
        if (
            not isinstance(transformed_image, torch.Tensor)
            or transformed_image.ndim != 4
            or transformed_image.shape[1] != 3
            or max(*transformed_image.shape[2:]) != side
        ):
            shape = getattr(transformed_image, "shape", None)
            raise ValueError(
                f"transformed_image must be a (B, 3, h, w) tensor with max(h, w) == {side}, "
                f"got {tuple(shape) if shape is not None else type(transformed_image).__name__}"
            )
        original = tuple(int(v) for v in original_image_size)
        key = content_key(transformed_image, "torch", original, *self._model_key())
        if not self._use_cached(key):
            self._encode(transformed_image, original, key)

    @torch.no_grad()
    def _encode(
        self, transformed_image: torch.Tensor, original_size: tuple[int, ...], key: str
    ) -> None:
        self.reset_image()
        pixels = self.model.preprocess(transformed_image.to(self.device).float())
        entry = CachedEmbedding(
            image_embedding=self.model.encode_image(pixels),
            input_size=tuple(transformed_image.shape[-2:]),
            original_size=tuple(int(v) for v in original_size),
        )
        self.cache.put(key, entry)
        self._load(entry)

    def _use_cached(self, key: str) -> bool:
        entry = self.cache.get(key)
        if entry is not None:
            self._load(entry)
        return entry is not None

    def _load(self, entry: CachedEmbedding) -> None:
        self.features = entry.image_embedding
        self._decoding: ImageDecoding | None = None
        self.input_size = entry.input_size
        self.original_size = entry.original_size
        self.is_image_set = True

    def _model_key(self) -> tuple[object, ...]:
        return (id(self.model), str(self.model.encoder_dtype), str(self.device))

    # -- prompts --------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prompts in original-image pixels -> masks (C, H, W), iou_predictions (C,),
        low_res_masks (C, 256, 256); C is 3 with ``multimask_output`` else 1."""
        self._require_image()
        coords_torch = labels_torch = box_torch = mask_input_torch = None
        if point_coords is not None:
            check_points(point_coords, point_labels)
            coords = self.transform.apply_coords(np.asarray(point_coords), self.original_size)
            coords_torch = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_torch = torch.as_tensor(
                np.asarray(point_labels), dtype=torch.int, device=self.device
            )[None]
        elif point_labels is not None:
            raise ValueError("point_coords must be supplied if point_labels is supplied")
        if box is not None:
            check_boxes(box)
            box = self.transform.apply_boxes(np.asarray(box), self.original_size)
            box_torch = torch.as_tensor(box, dtype=torch.float, device=self.device)
        if mask_input is not None:
            check_mask_input(mask_input, self.model.prompt_encoder.mask_input_size)
            mask_input_torch = torch.as_tensor(
                np.asarray(mask_input), dtype=torch.float, device=self.device
            )[None]
        masks, iou_predictions, low_res_masks = self._predict_torch(
            coords_torch, labels_torch, box_torch, mask_input_torch, multimask_output, return_logits
        )
        return (
            masks[0].detach().cpu().numpy(),
            iou_predictions[0].detach().cpu().numpy(),
            low_res_masks[0].detach().cpu().numpy(),
        )

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts already in the resized frame (see ``self.transform``):
        point_coords (B, N, 2), point_labels (B, N), boxes (B, 4), mask_input (B, 1, 256, 256)
        -> masks (B, C, H, W), iou_predictions (B, C), low_res_masks (B, C, 256, 256)."""
        self._require_image()
        batch = None
        if point_coords is not None:
            check_points(point_coords, point_labels, batched=True)
            batch = point_coords.shape[0]
        if boxes is not None:
            check_boxes(boxes, name="boxes", batched=True)
            if batch is not None and boxes.shape[0] != batch:
                raise ValueError(f"boxes has batch {boxes.shape[0]} but point_coords has {batch}")
            batch = boxes.shape[0]
        if mask_input is not None:
            size = self.model.prompt_encoder.mask_input_size
            check_mask_input(mask_input, size, batch=batch if batch else mask_input.shape[0])
        return self._predict_torch(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits
        )

    @torch.no_grad()
    def _predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res_masks, iou_predictions = self.decode(
            sparse, dense, multimask_output, mask_prompt=mask_input is not None
        )
        masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        limit = self.model.low_res_logit_limit
        if limit is not None:  # SAM 2's predictor bounds the logits it hands back
            low_res_masks = low_res_masks.clamp(-limit, limit)
        return masks, iou_predictions, low_res_masks

    @torch.no_grad()
    def decode(
        self,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
        mask_prompt: bool = False,
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (B, T, C) and (B, C, h, w) -> low-res logits (B, 3 or 1, 4h, 4w)
        and predicted IoU (B, 3 or 1) on the current image, ``chunk`` prompts at a time (all at
        once by default). Without a mask prompt, and with the decoder of an optimized model
        (:func:`sam.fast.optimize`), the image-side work is shared between prompts
        (:mod:`sam.fast.shared_decoding`); otherwise the decoder runs as is.
        """
        self._require_image()
        outputs = slice(1, None) if multimask_output else slice(0, 1)
        shared = isinstance(self.model.mask_decoder, SharingMaskDecoder) and not mask_prompt
        if shared and self._decoding is None:
            self._decoding = self.model.mask_decoder.image_decoding(
                self.features,
                self.model.prompt_encoder.get_dense_pe(),
                self.model.prompt_encoder.get_no_mask_dense(),
            )
        chunk = chunk or max(len(sparse), 1)
        results = []
        for start in range(0, max(len(sparse), 1), chunk):  # an empty batch goes through once
            part = slice(start, start + chunk)
            if shared:
                masks, iou = self._decoding.predict_masks(sparse[part])
                results.append((masks[:, outputs], iou[:, outputs]))
            else:
                results.append(
                    self.model.decode_masks(
                        self.features, sparse[part], dense[part], multimask_output
                    )
                )
        if len(results) == 1:
            return results[0]
        return torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results])

    def predict_ranked(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
    ) -> list[Candidate]:
        """The three multimask candidates, best predicted IoU first."""
        masks, scores, low_res = self.predict(
            point_coords, point_labels, box, mask_input, multimask_output=True
        )
        order = np.argsort(-scores, kind="stable")
        return [Candidate(masks[i], float(scores[i]), low_res[i : i + 1], int(i)) for i in order]

    def predict_batch(
        self,
        boxes: np.ndarray | None = None,
        point_coords: Sequence[np.ndarray] | None = None,
        point_labels: Sequence[np.ndarray] | None = None,
        chunk: int = BATCH_CHUNK,
    ) -> list[list[Candidate]]:
        """Several objects on the current image in one call: boxes (B, 4) XYXY, or B point sets
        (point_coords[b] (N_b, 2) in pixels, point_labels[b] (N_b,)), or both (object b is box b
        with point set b) -> for each object its three candidates, best predicted IoU first.

        Prompts go through :meth:`predict_torch` together, point sets of equal length in one
        batch (``chunk`` prompts at a time, which bounds the full-size masks in memory), so each
        object's candidates are those :meth:`predict_ranked` gives for it alone."""
        self._require_image()
        count = None
        if boxes is not None:
            check_boxes(boxes, name="boxes", batched=True)
            count = len(boxes)
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        if point_coords is not None:
            if len(point_coords) != len(point_labels):
                raise ValueError(
                    f"{len(point_coords)} point sets but {len(point_labels)} label sets"
                )
            if count is not None and len(point_coords) != count:
                raise ValueError(f"{count} boxes but {len(point_coords)} point sets")
            for coords, labels in zip(point_coords, point_labels):
                check_points(coords, labels)
            count = len(point_coords)
        if not count:
            raise ValueError("predict_batch needs at least one box or point set")
        lengths = [0] * count if point_coords is None else [len(c) for c in point_coords]
        if boxes is None and 0 in lengths:
            raise ValueError(f"point set {lengths.index(0)} is empty and there is no box for it")
        results: list[list[Candidate]] = [[] for _ in range(count)]
        for length in sorted(set(lengths)):
            group = [b for b in range(count) if lengths[b] == length]
            for start in range(0, len(group), chunk):
                part = group[start : start + chunk]
                for b, ranked in zip(
                    part, self._predict_group(part, boxes, point_coords, point_labels)
                ):
                    results[b] = ranked
        return results

    def _predict_group(
        self,
        indices: list[int],
        boxes: np.ndarray | None,
        point_coords: Sequence[np.ndarray] | None,
        point_labels: Sequence[np.ndarray] | None,
    ) -> list[list[Candidate]]:
        """Objects ``indices`` (point sets of one length) through one predict_torch call."""
        coords_torch = labels_torch = boxes_torch = None
        if point_coords is not None and len(point_coords[indices[0]]):
            coords = np.stack(
                [
                    self.transform.apply_coords(
                        np.asarray(point_coords[b], float), self.original_size
                    )
                    for b in indices
                ]
            )
            coords_torch = torch.as_tensor(coords, dtype=torch.float, device=self.device)
            labels = np.stack([np.asarray(point_labels[b]) for b in indices])
            labels_torch = torch.as_tensor(labels, dtype=torch.int, device=self.device)
        if boxes is not None:
            chosen = np.asarray(boxes, dtype=float)[indices]
            chosen = self.transform.apply_boxes(chosen, self.original_size)
            boxes_torch = torch.as_tensor(chosen, dtype=torch.float, device=self.device)
        masks, scores, low_res = self.predict_torch(coords_torch, labels_torch, boxes_torch)
        masks, scores, low_res = masks.cpu().numpy(), scores.cpu().numpy(), low_res.cpu().numpy()
        ranked = []
        for row in range(len(indices)):
            order = np.argsort(-scores[row], kind="stable")
            ranked.append(
                [
                    Candidate(masks[row, i], float(scores[row, i]), low_res[row, i : i + 1], int(i))
                    for i in order
                ]
            )
        return ranked

    # -- state ----------------------------------------------------------------------------------

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding: (1, C, H/16, W/16)."""
        self._require_image()
        if isinstance(self.features, Sam2Features):
            return self.features.image_embed
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise ImageNotSetError(
                "An image must be set with .set_image(...) before mask prediction."
            )

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image (its embedding stays in the cache)."""
        self.is_image_set = False
        self.features: torch.Tensor | Sam2Features | None = None
        self._decoding: ImageDecoding | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
