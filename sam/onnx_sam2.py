"""SAM 2's prompt encoder and mask decoder as one traceable module, and its image encoder as
another, with the interface of the SAM 2 ONNX exports in common use (the inputs of Meta's SAM
decoder, with the image features split in three):

=================  =======================  ===================================================
input              shape                    meaning
=================  =======================  ===================================================
image_embed        (1, C, G, G)             stride-16 features, "no memory" embedding added
high_res_feats_0   (1, C/8, 4G, 4G)         stride-4 features after the decoder's ``conv_s0``
high_res_feats_1   (1, C/4, 2G, 2G)         stride-8 features after the decoder's ``conv_s1``
point_coords       (B, N, 2)                XY in the encoder's square frame (side img_size)
point_labels       (B, N)                   1 object, 0 background, 2/3 box corners, -1 padding
mask_input         (B, 1, 4G, 4G)           low-res logits of an earlier mask
has_mask_input     (1,)                     1 to use mask_input, 0 to ignore it
orig_im_size       (2,)                     (H, W) of the original image
=================  =======================  ===================================================

The three features are what :meth:`Sam2.encode_image` gives (:class:`Sam2Features`), which is
what :class:`~sam.predictor.SamPredictor` holds after ``set_image`` and what
:class:`Sam2OnnxEncoder` outputs. B, the number of objects, may be more than 1, as for SAM.

Outputs: ``masks`` (B, M, H, W) logits at the original size, ``iou_predictions`` (B, M),
``low_res_masks`` (B, M, 4G, 4G) clamped to +-32 as SAM 2's predictor hands them back, and
``object_score_logits`` (B, 1) (above 0: the object is in the image). M = 4 (the single-mask
output first, then the three multimask outputs), or M = 1 with ``return_single_mask``: SAM 2's
own choice for one mask (``multimask_output=False``), the single-mask output where it is stable,
else the multimask output with the best score.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sam.modeling.sam2 import Sam2, Sam2Features
from sam.modeling.sam2.prompt_encoder import BOX_CORNER_LABELS
from sam.modeling.sam2.transforms import ResizeSquare
from sam.onnx_model import SamOnnxDecoder, prompt_inputs, stability_score

SAM2_DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
SAM2_DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks", "object_score_logits")
SAM2_ENCODER_INPUTS = ("image",)
SAM2_ENCODER_OUTPUTS = ("high_res_feats_0", "high_res_feats_1", "image_embed")


class Sam2OnnxDecoder(nn.Module):
    """Prompt encoder + mask decoder + mask resizing of a plain :class:`Sam2`, without control
    flow on the inputs' values; see the module's docstring."""

    # SAM 2's prompts are embedded as SAM's: both read only ``self.prompt_encoder``
    embed_points = SamOnnxDecoder.embed_points
    embed_masks = SamOnnxDecoder.embed_masks

    def __init__(
        self, model: Sam2, return_single_mask: bool = False, use_stability_score: bool = False
    ) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.mask_threshold = model.mask_threshold
        self.low_res_logit_limit = model.low_res_logit_limit
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns masks (B, M, H, W) logits, iou_predictions (B, M), low_res_masks (B, M, 4G,
        4G), object_score_logits (B, 1); see the module's docstring."""
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_masks(mask_input, has_mask_input)
        low_res_masks, scores, object_scores = self.mask_decoder.predict_masks(
            image_embed,
            self.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            (high_res_feats_0, high_res_feats_1),
        )
        if self.use_stability_score:
            scores = stability_score(low_res_masks, self.mask_threshold)
        if self.return_single_mask:
            low_res_masks, scores = self.mask_decoder._dynamic_multimask_via_stability(
                low_res_masks, scores
            )
        height, width = orig_im_size.to(torch.int64)
        masks = F.interpolate(low_res_masks, (height, width), mode="bilinear", align_corners=False)
        limit = self.low_res_logit_limit
        return masks, scores, low_res_masks.clamp(-limit, limit), object_scores


class Sam2OnnxEncoder(nn.Module):
    """The image encoder and the decoder's projections of its high-resolution features:
    ``image`` (B, 3, S, S), the image stretched to the square frame and normalised
    (:meth:`Sam2.preprocess`) -> high_res_feats_0 (B, C/8, S/4, S/4), high_res_feats_1 (B, C/4,
    S/8, S/8), image_embed (B, C, S/16, S/16), float32: :meth:`Sam2.encode_image`."""

    def __init__(self, model: Sam2) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.model.encode_image(image)
        return *features.high_res_feats, features.image_embed


def sam2_decoder_example_inputs(
    model: Sam2, num_objects: int = 1, num_points: int = 3
) -> dict[str, torch.Tensor]:
    """Random inputs of the decoder's interface: every value is legal, none special."""
    generator = torch.Generator().manual_seed(0)
    channels = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size[0]
    side = model.image_size
    shape = (num_objects, num_points)
    return {
        "image_embed": torch.randn(1, channels, grid, grid, generator=generator),
        "high_res_feats_0": torch.randn(1, channels // 8, 4 * grid, 4 * grid, generator=generator),
        "high_res_feats_1": torch.randn(1, channels // 4, 2 * grid, 2 * grid, generator=generator),
        "point_coords": torch.rand(*shape, 2, generator=generator) * side,
        "point_labels": torch.randint(-1, 4, shape, generator=generator).float(),
        "mask_input": torch.randn(num_objects, 1, 4 * grid, 4 * grid, generator=generator),
        "has_mask_input": torch.ones(1),
        "orig_im_size": torch.tensor([0.75 * side, side]),
    }


def sam2_decoder_inputs(
    features: Sam2Features,
    original_size: tuple[int, int],
    image_size: int,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    box: np.ndarray | None = None,
    mask_input: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One object's prompts as :meth:`SamPredictor.predict` takes them (pixels of the original
    (H, W) image; points (N, 2) with labels (N,), box (4,) XYXY, mask_input (1, 4G, 4G)) and
    one image's features -> the float32 inputs of the exported decoder for an encoder of side
    ``image_size``, ordered as SAM 2's prompt encoder orders them: the box's corners (labels 2
    and 3), the points, then a padding point (label -1), box or not."""
    coords = np.zeros((0, 2)) if point_coords is None else np.asarray(point_coords, float)
    labels = np.zeros(0) if point_labels is None else np.asarray(point_labels, float)
    if box is not None:
        coords = np.concatenate([np.asarray(box, float).reshape(2, 2), coords])
        labels = np.concatenate([BOX_CORNER_LABELS, labels])
    coords, labels = np.concatenate([coords, [[0.0, 0.0]]]), np.append(labels, -1)
    coords = ResizeSquare(image_size).apply_coords(coords, original_size)
    grid = features.image_embed.shape[-1]
    return {
        "image_embed": _numpy(features.image_embed),
        "high_res_feats_0": _numpy(features.high_res_feats[0]),
        "high_res_feats_1": _numpy(features.high_res_feats[1]),
        **prompt_inputs(coords, labels, mask_input, grid, original_size),
    }


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
