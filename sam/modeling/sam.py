"""The Segment Anything model: encoder, prompt encoder and decoder, plus pre/post-processing."""

from __future__ import annotations

from functools import partial
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .config import MODEL_CONFIGS, SamConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .promptable import PromptableModel
from .transformer import TwoWayTransformer
from .transforms import ResizeLongestSide


class Sam(PromptableModel):
    """SAM as released by Meta; ``forward`` keeps the reference's batched-input interface.

    The image encoder may run in a lower precision (``encoder_dtype``) while the prompt encoder
    and decoder stay in float32; :meth:`encode_image` hides the casts.
    """

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, ...] = (123.675, 116.28, 103.53),
        pixel_std: tuple[float, ...] = (58.395, 57.12, 57.375),
    ) -> None:
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        self.config: SamConfig | None = None  # set by build_sam

    @property
    def image_size(self) -> int:
        """Side of the encoder's square input frame."""
        return self.image_encoder.img_size

    def input_transform(self) -> ResizeLongestSide:
        """Resize the long side to the frame (the rest is padded by :meth:`preprocess`)."""
        return ResizeLongestSide(self.image_encoder.img_size)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed (B, 3, S, S) pixels -> float32 image embedding (B, C, S/16, S/16)."""
        embedding = self.image_encoder(pixels.to(self.encoder_dtype))
        return embedding.float()

    def decode_masks(
        self,
        image_embedding: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (B, T, C) and (B, C, H, W) on one image's embedding (1, C, H, W)
        -> low-res logits (B, 3 or 1, 4H, 4W) and predicted IoU (B, 3 or 1)."""
        return self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """Reference interface: each record has 'image' (3, H, W) already resized to the long side,
        'original_size', and optionally 'point_coords', 'point_labels', 'boxes', 'mask_inputs'."""
        input_images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        image_embeddings = self.encode_image(input_images)
        outputs = []
        for record, embedding in zip(batched_input, image_embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res_masks, iou_predictions = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res_masks,
                input_size=record["image"].shape[-2:],
                original_size=record["original_size"],
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> torch.Tensor:
        """Low-res logits (B, C, 4H, 4W) -> logits (B, C, *original_size): upscale to the
        encoder's frame, crop the padding, resize to the original image."""
        side = self.image_encoder.img_size
        masks = F.interpolate(masks, (side, side), mode="bilinear", align_corners=False)
        masks = masks[..., : int(input_size[0]), : int(input_size[1])]
        original_size = (int(original_size[0]), int(original_size[1]))
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(3, h, w) pixels in 0..255 -> normalised and zero-padded to (3, S, S)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        side = self.image_encoder.img_size
        return F.pad(x, (0, side - w, 0, side - h))


def build_sam(
    config: SamConfig | str = "vit_b", modules: ModuleType | SimpleNamespace | None = None
) -> Sam:
    """A randomly initialised SAM for a named size ("vit_b", "vit_l", "vit_h", ...) or config.

    ``modules`` builds the same architecture from another implementation whose classes keep the
    reference constructors (``segment_anything.modeling``): the parity tests use it.
    """
    if isinstance(config, str):
        if config not in MODEL_CONFIGS:
            raise ValueError(f"unknown model name {config!r}; known: {sorted(MODEL_CONFIGS)}")
        config = MODEL_CONFIGS[config]
    m = modules or SimpleNamespace(
        ImageEncoderViT=ImageEncoderViT,
        PromptEncoder=PromptEncoder,
        MaskDecoder=MaskDecoder,
        TwoWayTransformer=TwoWayTransformer,
        Sam=Sam,
    )
    grid = config.image_embedding_size
    image_encoder = m.ImageEncoderViT(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth,
        num_heads=config.encoder_num_heads,
        mlp_ratio=config.encoder_mlp_ratio,
        out_chans=config.prompt_embed_dim,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=config.encoder_window_size,
        global_attn_indexes=config.encoder_global_attn_indexes,
    )
    prompt_encoder = m.PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    mask_decoder = m.MaskDecoder(
        num_multimask_outputs=config.num_multimask_outputs,
        transformer=m.TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        transformer_dim=config.prompt_embed_dim,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    sam = m.Sam(
        image_encoder,
        prompt_encoder,
        mask_decoder,
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    sam.config = config
    return sam.eval()
