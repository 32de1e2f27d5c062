"""The prompt encoder and mask decoder as one traceable module with Meta's ONNX interface.

:class:`SamOnnxDecoder` wraps the plain model's own modules (nothing is copied) behind the inputs
of Meta's ``segment_anything.utils.onnx.SamOnnxModel``, so tools written for Meta's exported
decoder (its web demo, onnxruntime scripts) run ours unchanged:

=================  =======================  ===================================================
input              shape                    meaning
=================  =======================  ===================================================
image_embeddings   (1, C, G, G)             the image encoder's output
point_coords       (B, N, 2)                XY in the encoder's frame (long side = img_size)
point_labels       (B, N)                   1 object, 0 background, 2/3 box corners, -1 padding
mask_input         (B, 1, 4G, 4G)           low-res logits of an earlier mask
has_mask_input     (1,)                     1 to use mask_input, 0 to ignore it
orig_im_size       (2,)                     (H, W) of the original image
=================  =======================  ===================================================

B, the number of objects, goes beyond Meta's export (which fixes it at 1): each object has its
own points (padded to the same N with label -1) and mask, and all share the one embedding.

Outputs: ``masks`` (B, M, H, W) logits at the original size, ``iou_predictions`` (B, M) and
``low_res_masks`` (B, M, 4G, 4G), with M = 4 (the single-mask output first, then the three
multimask outputs), or M = 1 with ``return_single_mask``: the multimask output with the best
score for one click (N <= 2 with its padding point), the single-mask output for more points.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sam.modeling.sam import Sam
from sam.modeling.transforms import ResizeLongestSide

# Stability is measured at the mask threshold +- this offset, as Meta's export does.
STABILITY_SCORE_OFFSET = 1.0


class SamOnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask resizing of a plain :class:`Sam`, without control
    flow on the inputs' values so that one exported graph serves every prompt and image size."""

    def __init__(
        self, model: Sam, return_single_mask: bool = False, use_stability_score: bool = False
    ) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.img_size = model.image_encoder.img_size
        self.mask_threshold = model.mask_threshold
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) coordinates and (B, N) labels -> (B, N, C) sparse embeddings: the prompt
        encoder's points and box corners, told apart by their label instead of by argument."""
        encoder = self.prompt_encoder
        positions = encoder.pe_layer.forward_with_coords(
            point_coords + 0.5, encoder.input_image_size
        )
        labels = point_labels.unsqueeze(-1)
        embedding = torch.where(labels == -1, encoder.not_a_point_embed.weight, positions)
        for label, label_embedding in enumerate(encoder.point_embeddings):
            embedding = embedding + label_embedding.weight * (labels == label)
        return embedding

    def embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4G, 4G) logits -> (B, C, G, G): the mask's embedding, or ``no_mask_embed``
        where ``has_mask_input`` is 0."""
        encoder = self.prompt_encoder
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        mask_embedding = encoder.mask_downscaling(mask_input)
        return has_mask_input * mask_embedding + (1 - has_mask_input) * no_mask

    def select_single_mask(
        self, masks: torch.Tensor, scores: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 4, h, w), (B, 4) -> (B, 1, h, w), (B, 1): for N <= 2 points (one click and its
        padding) the best multimask output, else the single-mask output; a score offset stands
        in for the ``if`` so that N stays an input of the graph."""
        use_single = torch.tensor([1000.0] + [0.0] * (scores.shape[1] - 1))
        best = torch.argmax(scores + (num_points - 2.5) * use_single, dim=1, keepdim=True)
        best_masks = torch.gather(masks, 1, best[:, :, None, None].expand(-1, -1, *masks.shape[2:]))
        return best_masks, torch.gather(scores, 1, best)

    def resize_masks(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-res (B, M, 4G, 4G) -> (B, M, H, W) for orig_im_size (H, W): as
        :meth:`Sam.postprocess_masks`, with the resized image's size computed in the graph."""
        masks = F.interpolate(
            masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False
        )
        scale = self.img_size / orig_im_size.max()
        resized = torch.floor(orig_im_size * scale + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        height, width = orig_im_size.to(torch.int64)
        return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns masks (B, M, H, W) logits, iou_predictions (B, M), low_res_masks (B, M, 4G,
        4G); see the module's docstring."""
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_masks(mask_input, has_mask_input)
        low_res_masks, scores = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        if self.use_stability_score:
            scores = stability_score(low_res_masks, self.mask_threshold)
        if self.return_single_mask:
            low_res_masks, scores = self.select_single_mask(
                low_res_masks, scores, point_coords.shape[1]
            )
        return self.resize_masks(low_res_masks, orig_im_size), scores, low_res_masks


def stability_score(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """(..., h, w) logits -> (...) IoU of the masks at ``threshold`` +- the offset, as
    :func:`sam.automatic.mask_ops.calculate_stability_score` computes it, with float sums
    (exact below 2**24 pixels) because ONNX's ReduceSum takes no int16."""
    high = (logits > threshold + STABILITY_SCORE_OFFSET).float().sum((-2, -1))
    low = (logits > threshold - STABILITY_SCORE_OFFSET).float().sum((-2, -1))
    return high / low


class SamOnnxEncoder(nn.Module):
    """The image encoder with Meta's exported interface: ``x`` (B, 3, S, S), the image resized
    to the long side S, normalised and zero-padded (:meth:`Sam.preprocess`) -> image_embeddings
    (B, C, S/16, S/16) float32."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(x)


def decoder_inputs(
    image_embedding: np.ndarray | torch.Tensor,
    original_size: tuple[int, int],
    image_size: int,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One object's prompts as :meth:`SamPredictor.predict` takes them (pixels of the original
    (H, W) image; points (N, 2) with labels (N,), box (4,) XYXY, mask_input (1, 4G, 4G)) ->
    the float32 inputs of the exported decoder for an encoder of side ``image_size``: the box
    as two corner points labelled 2 and 3, else a padding point labelled -1, as the prompt
    encoder does."""
    coords = np.zeros((0, 2)) if point_coords is None else np.asarray(point_coords, float)
    labels = np.zeros(0) if point_labels is None else np.asarray(point_labels, float)
    if box is None:
        coords, labels = np.concatenate([coords, [[0.0, 0.0]]]), np.append(labels, -1)
    else:
        coords = np.concatenate([coords, np.asarray(box, float).reshape(2, 2)])
        labels = np.append(labels, [2, 3])
    coords = ResizeLongestSide(image_size).apply_coords(coords, original_size)
    embedding = np.asarray(image_embedding, np.float32)
    return {
        "image_embeddings": embedding,
        **prompt_inputs(coords, labels, mask_input, embedding.shape[-1], original_size),
    }


def prompt_inputs(
    coords: np.ndarray,
    labels: np.ndarray,
    mask_input: np.ndarray | None,
    grid: int,
    original_size: tuple[int, int],
) -> dict[str, np.ndarray]:
    """The exported decoders' prompt inputs for one object: coords (N, 2) in the encoder's
    frame with labels (N,), mask_input (1, 4G, 4G) or None, for a G x G embedding of an image
    of ``original_size`` (H, W)."""
    has_mask = mask_input is not None
    masks = mask_input if has_mask else np.zeros((1, 4 * grid, 4 * grid))
    return {
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": np.asarray(masks, np.float32)[None],
        "has_mask_input": np.array([float(has_mask)], np.float32),
        "orig_im_size": np.array(original_size, np.float32),
    }
