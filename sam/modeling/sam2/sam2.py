"""SAM 2's image model (Ravi et al., 2024): encoder, prompt encoder and decoder, plus pre- and
post-processing, behind the interface SAM shares (:class:`sam.modeling.promptable.PromptableModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..promptable import PromptableModel
from ..transformer import TwoWayTransformer
from .config import SAM2_CONFIGS, Sam2Config
from .hiera import Hiera
from .image_encoder import FpnNeck, ImageEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transforms import ResizeSquare


@dataclass(frozen=True)
class Sam2Features:
    """What SAM 2's decoder needs of an image, float32: the stride-16 embedding (with the
    "no memory" embedding added) and the stride-4 and stride-8 features already projected by
    the decoder's ``conv_s0`` and ``conv_s1``."""

    image_embed: torch.Tensor  # (B, C, S/16, S/16)
    high_res_feats: tuple[torch.Tensor, torch.Tensor]  # (B, C/8, S/4, S/4), (B, C/4, S/8, S/8)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.image_embed, *self.high_res_feats))


class Sam2(PromptableModel):
    """The image path of SAM 2.

    Images are stretched to the square frame (no padding) and normalised with ImageNet
    statistics; masks come back from the decoder's low-res logits by one bilinear resize. The
    image encoder may run in a lower precision (``encoder_dtype``) while the prompt encoder and
    decoder stay in float32; :meth:`encode_image` hides the casts.
    """

    # SAM 2's predictor hands back low-res logits clamped to this, for use as mask prompts
    low_res_logit_limit: float | None = 32.0

    def __init__(
        self,
        image_encoder: ImageEncoder,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, ...] = (0.485, 0.456, 0.406),  # for pixels in 0..1
        pixel_std: tuple[float, ...] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        # Added to the stride-16 features of a frame with no memory of earlier frames, which
        # every single image is (Meta's ``directly_add_no_mem_embed``).
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, mask_decoder.transformer_dim))
        self.config: Sam2Config | None = None  # set by build_sam2

    @property
    def image_size(self) -> int:
        """Side of the encoder's square input frame."""
        return self.prompt_encoder.input_image_size[0]

    def input_transform(self) -> ResizeSquare:
        """Stretch the image to the frame, whatever its aspect ratio."""
        return ResizeSquare(self.image_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) pixels in 0..255, already resized to the frame -> normalised."""
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"SAM 2 takes images resized to {self.image_size}x{self.image_size} "
                f"(see input_transform()), got {tuple(x.shape[-2:])}"
            )
        return (x / 255.0 - self.pixel_mean) / self.pixel_std

    def encode_image(self, pixels: torch.Tensor) -> Sam2Features:
        """Preprocessed (B, 3, S, S) pixels -> the features the decoder needs, float32."""
        feat_s0, feat_s1, image_embed = self.image_encoder(pixels.to(self.encoder_dtype))
        return Sam2Features(
            image_embed=image_embed.float() + self.no_mem_embed.view(1, -1, 1, 1),
            high_res_feats=(
                self.mask_decoder.conv_s0(feat_s0.float()),
                self.mask_decoder.conv_s1(feat_s1.float()),
            ),
        )

    def decode_masks(
        self,
        features: Sam2Features,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (B, T, C) and (B, C, h, w) on one image's features -> low-res
        logits (B, 3 or 1, 4h, 4w) and predicted IoU (B, 3 or 1)."""
        masks, iou_pred, _ = self.mask_decoder(
            image_embeddings=features.image_embed,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_res_features=features.high_res_feats,
        )
        return masks, iou_pred

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits (B, C, 4h, 4w) -> logits (B, C, *original_size), one bilinear resize.
        ``input_size`` is the whole frame for SAM 2 (no padding to crop); it is kept for the
        interface that :class:`sam.modeling.sam.Sam` shares."""
        original_size = (int(original_size[0]), int(original_size[1]))
        return F.interpolate(masks.float(), original_size, mode="bilinear", align_corners=False)


def build_sam2(config: Sam2Config | str = "sam2.1_tiny") -> Sam2:
    """A randomly initialised SAM 2 for a named size ("sam2.1_tiny", "sam2.1_small",
    "sam2.1_base_plus", "sam2.1_large", "sam2_test") or a config."""
    if isinstance(config, str):
        if config not in SAM2_CONFIGS:
            raise ValueError(f"unknown SAM 2 model name {config!r}; known: {sorted(SAM2_CONFIGS)}")
        config = SAM2_CONFIGS[config]
    trunk = Hiera(
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        stages=config.stages,
        global_att_blocks=config.global_att_blocks,
        window_spec=config.window_spec,
        window_pos_embed_bkg_spatial_size=config.window_pos_embed_bkg_spatial_size,
    )
    neck = FpnNeck(config.hidden_dim, backbone_channel_list=list(config.stage_dims[::-1]))
    grid = config.image_embedding_size
    prompt_encoder = PromptEncoder(
        embed_dim=config.hidden_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = MaskDecoder(
        transformer_dim=config.hidden_dim,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.hidden_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
        dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
    )
    model = Sam2(
        ImageEncoder(trunk, neck, scalp=1),
        prompt_encoder,
        mask_decoder,
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
    )
    model.config = config
    return model.eval()
