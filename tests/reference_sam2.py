"""Builders for the two SAM 2 implementations our SAM 2 is checked against: Meta's ``sam2``
package and transformers' ``Sam2Model``, each with random weights, and ours loaded with the same
weights through the loader's own key conversion (:mod:`sam.weights.sam2_keys`)."""

from __future__ import annotations

import torch

from sam.modeling.sam2 import Sam2, Sam2Config, build_sam2
from sam.weights.random_weights import randomize_weights
from sam.weights.sam2_keys import sam2_to_ours, to_transformers_config

META_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def build_meta_sam2(config: Sam2Config, seed: int = 0):
    """Meta's ``SAM2Base`` (its tiny config, resized by hydra overrides to ``config``) with every
    weight random."""
    from sam2.build_sam import build_sam2 as build_meta

    trunk, neck = "++model.image_encoder.trunk", "++model.image_encoder.neck"
    overrides = [
        f"++model.image_size={config.image_size}",
        f"{trunk}.embed_dim={config.embed_dim}",
        f"{trunk}.num_heads={config.num_heads}",
        f"{trunk}.stages={list(config.stages)}",
        f"{trunk}.global_att_blocks={list(config.global_att_blocks)}",
        f"{trunk}.window_spec={list(config.window_spec)}",
        f"{trunk}.window_pos_embed_bkg_spatial_size={list(config.window_pos_embed_bkg_spatial_size)}",
        f"{neck}.d_model={config.hidden_dim}",
        f"{neck}.backbone_channel_list={list(config.stage_dims[::-1])}",
        f"{neck}.position_encoding.num_pos_feats={config.hidden_dim}",
    ]
    model = build_meta(META_CONFIG, device="cpu", hydra_overrides_extra=overrides)
    return randomize_weights(model, seed=seed).eval()


def build_transformers_sam2(config: Sam2Config, seed: int = 0):
    """transformers' ``Sam2Model`` for ``config`` with every weight random (its two copies of the
    prompt encoder's Fourier matrix equal, as in the released checkpoints)."""
    from transformers import Sam2Model

    model = randomize_weights(Sam2Model(to_transformers_config(config)), seed=seed).eval()
    with torch.no_grad():
        model.shared_image_embedding.positional_embedding.copy_(
            model.prompt_encoder.shared_embedding.positional_embedding
        )
    return model


def ours_from(reference, config: Sam2Config) -> Sam2:
    """Our plain SAM 2 with ``reference``'s weights (Meta's or transformers'), loaded strictly."""
    model = build_sam2(config)
    model.load_state_dict(sam2_to_ours(reference.state_dict()), strict=True)
    return model


def meta_features(meta, pixels: torch.Tensor) -> list[torch.Tensor]:
    """What Meta's SAM2ImagePredictor.set_image keeps of normalised ``pixels``: the stride-4 and
    stride-8 features (through conv_s0 and conv_s1) and the stride-16 embedding plus the "no
    memory" embedding, each (B, C, h, w)."""
    _, features, _, sizes = meta._prepare_backbone_features(meta.forward_image(pixels))
    features[-1] = features[-1] + meta.no_mem_embed
    batch = pixels.shape[0]
    return [f.permute(1, 2, 0).reshape(batch, -1, *size) for f, size in zip(features, sizes)]


def meta_decode(meta, features, points, labels, boxes, masks, multimask: bool):
    """Meta's SAM2ImagePredictor._predict on prompts in the frame: box corners become points
    labelled 2 and 3 ahead of the clicks. -> masks, iou, object score logits."""
    if boxes is not None:
        corners = boxes.reshape(-1, 2, 2)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int).repeat(len(corners), 1)
        if points is None:
            points, labels = corners, corner_labels
        else:
            points, labels = torch.cat([corners, points], 1), torch.cat([corner_labels, labels], 1)
    sparse, dense = meta.sam_prompt_encoder(
        points=(points, labels) if points is not None else None, boxes=None, masks=masks
    )
    low_res, iou, _, objects = meta.sam_mask_decoder(
        image_embeddings=features[-1],
        image_pe=meta.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=points is not None and len(points) > 1,
        high_res_features=features[:-1],
    )
    return low_res, iou, objects
