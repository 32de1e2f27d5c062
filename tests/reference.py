"""Builders for the two implementations our model is checked against, on the same weights."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from sam.config import SamConfig
from sam.hf_layout import original_to_hf, to_transformers_config


def build_reference_sam(config: SamConfig, state_dict: dict[str, torch.Tensor]) -> Sam:
    """Meta's ``segment_anything`` model for ``config``, loaded strictly with ``state_dict``."""
    grid = config.image_embedding_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=config.encoder_mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes,
            window_size=config.encoder_window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def build_transformers_sam(config: SamConfig, state_dict: dict[str, torch.Tensor]):
    """transformers' ``SamModel`` for ``config``, loaded strictly with ``state_dict`` converted."""
    from transformers import SamModel

    model = SamModel(to_transformers_config(config))
    model.load_state_dict(original_to_hf(state_dict), strict=True)
    return model.eval()
