"""``SamPredictor``: a drop-in for ``segment_anything.SamPredictor`` with an embedding cache.

Encode an image once with :meth:`SamPredictor.set_image`, then prompt it as often as you like;
prompting an image seen before (by content) reuses its cached embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sam.cache import CachedEmbedding, EmbeddingCache, content_key
from sam.fast.shared_decoding import ImageDecoding, SharingMaskDecoder
from sam.io.images import as_rgb_uint8
from sam.modeling.sam import Sam
from sam.modeling.transforms import ResizeLongestSide
from sam.validation import check_boxes, check_mask_input, check_points


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
    """Same methods, arguments, shapes and semantics as the reference predictor."""

    def __init__(self, sam_model: Sam, cache: EmbeddingCache | None = None) -> None:
        self.model = sam_model
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
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
        side = self.model.image_encoder.img_size
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
                    self.model.mask_decoder(
                        image_embeddings=self.features,
                        image_pe=self.model.prompt_encoder.get_dense_pe(),
                        sparse_prompt_embeddings=sparse[part],
                        dense_prompt_embeddings=dense[part],
                        multimask_output=multimask_output,
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

    # -- state ----------------------------------------------------------------------------------

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding: (1, C, H/16, W/16)."""
        self._require_image()
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
        self.features: torch.Tensor | None = None
        self._decoding: ImageDecoding | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
