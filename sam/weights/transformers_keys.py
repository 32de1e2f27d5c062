"""Convert state dicts between Meta's original layout and transformers' ``SamModel`` layout.

Meta's checkpoints name things as the reference code does (``image_encoder.blocks.0.norm1``);
the Hub repos facebook/sam-vit-* hold transformers' names (``vision_encoder.layers.0.layer_norm1``).
The mapping is a list of substring renames plus the 3-layer MLPs, whose ``layers.{0,1,2}`` become
``proj_in``, ``layers.0``, ``proj_out``.
"""

from __future__ import annotations

import re

import torch

from sam.modeling.config import SamConfig
from sam.modeling.sam2.config import Sam2Config

StateDict = dict[str, torch.Tensor]

# (original, transformers) substring pairs, applied in this order in both directions: specific
# renames come before the generic ones that would otherwise swallow them.
_RENAMES: list[tuple[str, str]] = [
    ("image_encoder.blocks.", "vision_encoder.layers."),
    ("image_encoder.", "vision_encoder."),
    ("patch_embed.proj.", "patch_embed.projection."),
    ("neck.0.", "neck.conv1."),
    ("neck.1.", "neck.layer_norm1."),
    ("neck.2.", "neck.conv2."),
    ("neck.3.", "neck.layer_norm2."),
    ("mask_downscaling.0.", "mask_embed.conv1."),
    ("mask_downscaling.1.", "mask_embed.layer_norm1."),
    ("mask_downscaling.3.", "mask_embed.conv2."),
    ("mask_downscaling.4.", "mask_embed.layer_norm2."),
    ("mask_downscaling.6.", "mask_embed.conv3."),
    ("prompt_encoder.point_embeddings.", "prompt_encoder.point_embed."),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("output_upscaling.0.", "upscale_conv1."),
    ("output_upscaling.1.", "upscale_layer_norm."),
    ("output_upscaling.3.", "upscale_conv2."),
    (".norm_final_attn.", ".layer_norm_final_attn."),
    (".norm1.", ".layer_norm1."),
    (".norm2.", ".layer_norm2."),
    (".norm3.", ".layer_norm3."),
    (".norm4.", ".layer_norm4."),
]
_MLP = re.compile(r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.")
_HF_MLP = re.compile(
    r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.(proj_in|proj_out|layers\.\d+)\."
)
_SHARED_PE = "shared_image_embedding.positional_embedding"
_PROMPT_PE_HF = "prompt_encoder.shared_embedding.positional_embedding"


def is_hf_layout(state_dict: StateDict) -> bool:
    """True for transformers' names (``vision_encoder.*``), False for Meta's
    (``image_encoder.*``)."""
    has_hf = any(k.startswith("vision_encoder.") for k in state_dict)
    has_original = any(k.startswith("image_encoder.") for k in state_dict)
    if has_hf == has_original:
        raise ValueError(
            "checkpoint is neither in Meta's layout (image_encoder.*) nor in transformers' "
            "layout (vision_encoder.*)"
        )
    return has_hf


def _mlp_depths(keys: list[str], pattern: re.Pattern) -> dict[str, int]:
    """Number of linear layers of each decoder MLP, from its original-layout keys."""
    depths: dict[str, int] = {}
    for key in keys:
        match = pattern.search(key)
        if match:
            depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)
    return depths


def original_to_hf(state_dict: StateDict) -> StateDict:
    """Meta's layout -> transformers' ``SamModel`` layout (both positional-encoding copies)."""
    depths = _mlp_depths(list(state_dict), _MLP)
    converted: StateDict = {}
    for key, value in state_dict.items():
        if key in ("pixel_mean", "pixel_std"):
            continue
        new = key
        match = _MLP.search(new)
        if match:
            index, last = int(match.group(2)), depths[match.group(1)] - 1
            name = (
                "proj_in" if index == 0 else "proj_out" if index == last else f"layers.{index - 1}"
            )
            new = new[: match.start()] + f"{match.group(1)}.{name}." + new[match.end() :]
        for old, hf in _RENAMES:
            new = new.replace(old, hf)
        converted[new] = value
    converted[_SHARED_PE] = converted[_PROMPT_PE_HF].clone()  # tied in SamModel; own storage here
    return converted


def hf_to_original(state_dict: StateDict) -> StateDict:
    """transformers' ``SamModel`` layout -> Meta's layout."""
    state_dict = dict(state_dict)
    shared = state_dict.pop(_SHARED_PE, None)
    if _PROMPT_PE_HF not in state_dict:
        if shared is None:
            raise ValueError(f"checkpoint has no {_SHARED_PE}")
        state_dict[_PROMPT_PE_HF] = shared
    hidden_layers: dict[str, int] = {}
    for key in state_dict:
        match = _HF_MLP.search(key)
        if match and match.group(2).startswith("layers."):
            count = int(match.group(2).split(".")[1]) + 1
            hidden_layers[match.group(1)] = max(hidden_layers.get(match.group(1), 0), count)
    converted: StateDict = {}
    for key, value in state_dict.items():
        new = key
        for old, hf in _RENAMES:
            new = new.replace(hf, old)
        match = _HF_MLP.search(key)
        if match:
            part = match.group(2)
            last = hidden_layers.get(match.group(1), 0) + 1
            index = 0 if part == "proj_in" else last if part == "proj_out" else int(part[7:]) + 1
            prefix = new[: new.index(match.group(1))]
            suffix = key[match.end() :]
            new = f"{prefix}{match.group(1)}.layers.{index}.{suffix}"
        converted[new] = value
    return converted


def to_transformers_config(config: SamConfig):  # -> transformers.SamConfig
    """The transformers ``SamConfig`` describing the same architecture as ``config``."""
    from transformers import SamConfig as HFSamConfig

    grid = config.image_embedding_size
    return HFSamConfig(
        vision_config=dict(
            hidden_size=config.encoder_embed_dim,
            num_hidden_layers=config.encoder_depth,
            num_attention_heads=config.encoder_num_heads,
            global_attn_indexes=list(config.encoder_global_attn_indexes),
            window_size=config.encoder_window_size,
            image_size=config.image_size,
            patch_size=config.patch_size,
            mlp_ratio=config.encoder_mlp_ratio,
            mlp_dim=int(config.encoder_embed_dim * config.encoder_mlp_ratio),
            output_channels=config.prompt_embed_dim,
            num_pos_feats=config.prompt_embed_dim // 2,
        ),
        prompt_encoder_config=dict(
            hidden_size=config.prompt_embed_dim,
            image_size=config.image_size,
            patch_size=config.patch_size,
            image_embedding_size=grid,
            mask_input_channels=config.mask_in_chans,
        ),
        mask_decoder_config=mask_decoder_config(config, config.prompt_embed_dim),
    )


def mask_decoder_config(config: SamConfig | Sam2Config, hidden_size: int) -> dict:
    """transformers' ``mask_decoder_config`` for our config's decoder fields, which SAM and
    SAM 2 share."""
    return dict(
        hidden_size=hidden_size,
        num_hidden_layers=config.decoder_depth,
        num_attention_heads=config.decoder_num_heads,
        mlp_dim=config.decoder_mlp_dim,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
        num_multimask_outputs=config.num_multimask_outputs,
    )
