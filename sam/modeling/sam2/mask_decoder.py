"""SAM 2's mask decoder: SAM's, plus high-resolution skip features and an object score."""

from __future__ import annotations

import torch
from torch import nn

from ..mask_decoder import MLP
from ..mask_decoder import MaskDecoder as SamMaskDecoder
from ..transformer import TwoWayTransformer


class MaskDecoder(SamMaskDecoder):
    """SAM's decoder (same modules and names), extended as SAM 2.1 has it.

    An object-score token joins the IoU and mask tokens, and an MLP turns it into an object score;
    the IoU head ends in a sigmoid; the encoder's stride-8 and stride-4 features (projected by
    ``conv_s1`` and ``conv_s0`` when the image is encoded) are added to the two upscaling steps;
    and a single mask output falls back to the best of the multimask outputs when its own is
    unstable (outside training).
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            activation=nn.GELU,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.iou_prediction_head.sigmoid_output = True
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.pred_obj_score_head = MLP(transformer_dim, transformer_dim, 1, 3)
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image_embeddings (1 or B, C, h, w), image_pe (1, C, h, w), sparse (B, T, C), dense
        (B, C, h, w), high_res_features ((1 or B, C/8, 4h, 4w), (1 or B, C/4, 2h, 2w)) -> masks
        (B, 3 or 1, 4h, 4w) logits, iou_pred (B, 3 or 1), object_score_logits (B, 1)."""
        masks, iou_pred, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            high_res_features,
        )
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:], object_score_logits
        if not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
            return masks, iou_pred, object_score_logits
        return masks[:, 0:1], iou_pred[:, 0:1], object_score_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All 3+1 outputs: masks (B, 4, 4h, 4w), iou_pred (B, 4), object_score_logits (B, 1)."""
        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0
        )
        hs, src = self.run_transformer(
            output_tokens,
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )
        mask_tokens_out = hs[:, 2 : (2 + self.num_mask_tokens), :]
        upscale_1, norm, act_1, upscale_2, act_2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act_1(norm(upscale_1(src) + feat_s1))
        upscaled = act_2(upscale_2(upscaled) + feat_s0)
        masks = self.masks_from_tokens(mask_tokens_out, upscaled)
        iou_pred = self.iou_prediction_head(hs[:, 1, :])
        return masks, iou_pred, self.pred_obj_score_head(hs[:, 0, :])

    def _get_stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) logits -> (B, 1): the IoU of the masks thresholded at +-delta."""
        mask_logits = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        area_i = torch.sum(mask_logits > delta, dim=-1).float()
        area_u = torch.sum(mask_logits > -delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The single-mask output (token 0) where it is stable, else the multimask output with
        the highest predicted IoU: (B, 4, h, w), (B, 4) -> (B, 1, h, w), (B, 1)."""
        multimask_logits = all_mask_logits[:, 1:]
        multimask_iou_scores = all_iou_scores[:, 1:]
        best = torch.argmax(multimask_iou_scores, dim=-1)
        rows = torch.arange(multimask_iou_scores.shape[0], device=all_iou_scores.device)
        best_multimask_logits = multimask_logits[rows, best].unsqueeze(1)
        best_multimask_iou_scores = multimask_iou_scores[rows, best].unsqueeze(1)

        singlemask_logits = all_mask_logits[:, 0:1]
        singlemask_iou_scores = all_iou_scores[:, 0:1]
        stability = self._get_stability_scores(singlemask_logits)
        is_stable = stability >= self.dynamic_multimask_stability_thresh
        mask_logits = torch.where(
            is_stable[..., None, None].expand_as(singlemask_logits),
            singlemask_logits,
            best_multimask_logits,
        )
        iou_scores = torch.where(is_stable, singlemask_iou_scores, best_multimask_iou_scores)
        return mask_logits, iou_scores
