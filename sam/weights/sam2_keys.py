"""SAM 2 checkpoints: Meta's and transformers' key layouts to ours, and the config that goes with
the weights.

Three layouts name the same image-path weights:

- Meta's ``.pt`` files (``sam2.1_hiera_tiny.pt``, state dict under "model"):
  ``image_encoder.trunk.*``, ``sam_prompt_encoder.*``, ``sam_mask_decoder.*``, ``no_mem_embed``;
- transformers' ``model.safetensors`` in the facebook/sam2.1-hiera-* repos (``Sam2VideoModel``):
  ``vision_encoder.backbone.*``, ``prompt_encoder.*``, ``mask_decoder.*``,
  ``no_memory_embedding``;
- ours (:mod:`sam.modeling.sam2`): Meta's names, with ``prompt_encoder``/``mask_decoder`` as in
  SAM, the MLPs as SAM's ``MLPBlock`` (``mlp.lin1``/``mlp.lin2``) and the neck's 1x1
  convolutions unwrapped (``neck.convs.0``).

Both released layouts also hold the video model's memory weights, which are dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from sam.modeling.sam2.config import SAM2_CONFIGS, Sam2Config
from sam.weights.transformers_keys import mask_decoder_config

StateDict = dict[str, torch.Tensor]

# weights of SAM 2's video path (memory attention and encoder, object pointers)
_META_VIDEO_KEYS = re.compile(
    r"^(memory_attention\.|memory_encoder\.|mask_downsample\.|obj_ptr_proj\.|obj_ptr_tpos_proj\."
    r"|maskmem_tpos_enc$|no_mem_pos_enc$|no_obj_ptr$|no_obj_embed_spatial$)"
)
_HF_VIDEO_KEYS = re.compile(  # as transformers' Sam2Model ignores them
    r"^(memory_|mask_downsample\.|object_pointer_proj\.|temporal_positional_encoding_projection"
    r"|no_memory_positional_encoding$|no_object_pointer$|occlusion_spatial_embedding_parameter$)"
)
_META_RENAMES: list[tuple[str, str]] = [  # (Meta's, ours) regex substitutions
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.mlp\.layers\.0\.", ".mlp.lin1."),
    (r"\.mlp\.layers\.1\.", ".mlp.lin2."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"image_encoder.neck.convs.\1."),
]
_HF_RENAMES: list[tuple[str, str]] = [  # (transformers', ours)
    (r"^no_memory_embedding$", "no_mem_embed"),
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.", "image_encoder.neck."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"\.mlp\.proj_in\.", ".mlp.lin1."),
    (r"\.mlp\.proj_out\.", ".mlp.lin2."),
    (r"\.o_proj\.", ".out_proj."),
    (r"\.shared_embedding\.positional_embedding$", ".pe_layer.positional_encoding_gaussian_matrix"),
    # the mask embedding's layer_norm1/2 are norm1/2 by now
    (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."),
    (r"\.mask_embed\.norm1\.", ".mask_downscaling.1."),
    (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."),
    (r"\.mask_embed\.norm2\.", ".mask_downscaling.4."),
    (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"\.upscale_conv1\.", ".output_upscaling.0."),
    (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."),
]
# transformers' decoder MLPs: proj_in, layers.0..{n-3}, proj_out -> ours: layers.0..{n-1}
_HF_HEAD = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))"
    r"\.(proj_in|proj_out|layers\.\d+)\.(weight|bias)$"
)
_HF_SHARED_PE = "shared_image_embedding.positional_embedding"
_HF_POINT_EMBED = "prompt_encoder.point_embed.weight"


def is_sam2_state_dict(state_dict: StateDict) -> bool:
    """Whether the weights are SAM 2's, in any of the three layouts."""
    return any(
        k.startswith(("image_encoder.trunk.", "vision_encoder.backbone.")) for k in state_dict
    )


def sam2_to_ours(state_dict: StateDict) -> StateDict:
    """Meta's or transformers' layout (or ours, returned as is) -> ours, without the video
    model's weights."""
    if any(k.startswith("vision_encoder.backbone.") for k in state_dict):
        return _from_transformers(state_dict)
    if any(k.startswith("sam_mask_decoder.") for k in state_dict):
        return _rename(
            {k: v for k, v in state_dict.items() if not _META_VIDEO_KEYS.match(k)}, _META_RENAMES
        )
    return dict(state_dict)


def _rename(state_dict: StateDict, renames: list[tuple[str, str]]) -> StateDict:
    converted = {}
    for key, value in state_dict.items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        converted[key] = value
    return converted


def _from_transformers(state_dict: StateDict) -> StateDict:
    state_dict = {k: v for k, v in state_dict.items() if not _HF_VIDEO_KEYS.match(k)}
    # transformers keeps two copies of the random Fourier matrix; Meta's model has one
    shared = state_dict.pop(_HF_SHARED_PE, None)
    points = state_dict["prompt_encoder.shared_embedding.positional_embedding"]
    if shared is not None and not torch.equal(shared, points):
        raise ValueError(
            f"{_HF_SHARED_PE} differs from the prompt encoder's copy; SAM 2 has one matrix"
        )
    for index, row in enumerate(state_dict.pop(_HF_POINT_EMBED)):  # one (4, C) table -> 4 x (1, C)
        state_dict[f"prompt_encoder.point_embeddings.{index}.weight"] = row[None].clone()
    hidden_layers: dict[str, int] = {}
    for key in state_dict:
        match = _HF_HEAD.match(key)
        if match and match.group(2).startswith("layers."):
            count = int(match.group(2).split(".")[1]) + 1
            hidden_layers[match.group(1)] = max(hidden_layers.get(match.group(1), 0), count)
    converted = {}
    for key, value in _rename(state_dict, _HF_RENAMES).items():
        match = _HF_HEAD.match(key)
        if match:
            head, part, kind = match.groups()
            last = hidden_layers.get(head, 0) + 1
            index = 0 if part == "proj_in" else last if part == "proj_out" else int(part[7:]) + 1
            key = f"{head}.layers.{index}.{kind}"
        converted[key] = value
    return converted


# -- configs ------------------------------------------------------------------------------------


def sam2_config_for(state_dict: StateDict, config_file: Path | None = None) -> Sam2Config:
    """The config of SAM 2 weights (our layout): from transformers' config.json beside them if
    there is one, else the released size whose shapes they have."""
    if config_file is not None and config_file.is_file():
        try:
            values = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError):
            values = {}
        if "backbone_config" in values.get("vision_config", {}):
            return config_from_transformers(values)
    shapes = _shape_signature(state_dict)
    for config in SAM2_CONFIGS.values():
        if _config_signature(config) == shapes:
            return config
    known = ", ".join(SAM2_CONFIGS)
    raise ValueError(
        f"SAM 2 weights of an unknown size (trunk width, blocks per stage {shapes[:2]}): "
        f"known sizes are {known}; put transformers' config.json beside the weights"
    )


def _shape_signature(state_dict: StateDict) -> tuple:
    """What the shapes tell of the architecture: trunk width, blocks per stage, both position
    embeddings' sizes, and the decoder's width."""
    prefix = "image_encoder.trunk."
    blocks = {int(k.split(".")[3]) for k in state_dict if k.startswith(f"{prefix}blocks.")}
    stage_starts = sorted(
        {0} | {i for i in blocks if f"{prefix}blocks.{i}.proj.weight" in state_dict}
    )
    stages = tuple(b - a for a, b in zip(stage_starts, [*stage_starts[1:], len(blocks)]))
    return (
        state_dict[f"{prefix}patch_embed.proj.weight"].shape[0],
        stages,
        tuple(state_dict[f"{prefix}pos_embed"].shape[2:]),
        state_dict[f"{prefix}pos_embed_window"].shape[-1],
        state_dict["mask_decoder.iou_token.weight"].shape[-1],
    )


def _config_signature(config: Sam2Config) -> tuple:
    return (
        config.embed_dim,
        tuple(config.stages),
        tuple(config.window_pos_embed_bkg_spatial_size),
        config.window_spec[0],
        config.hidden_dim,
    )


def config_from_transformers(values: dict) -> Sam2Config:
    """Our config from a transformers ``Sam2Config``/``Sam2VideoConfig`` as a dict (its
    config.json); raises ValueError for architectures this model does not build."""
    vision, prompts = values["vision_config"], values.get("prompt_encoder_config", {})
    backbone, decoder = vision["backbone_config"], values.get("mask_decoder_config", {})
    dims = list(backbone.get("embed_dim_per_stage", [96, 192, 384, 768]))
    heads = list(backbone.get("num_attention_heads_per_stage", [1, 2, 4, 8]))
    fixed = {  # what every released size shares, and sam.modeling.sam2 builds
        "patch_kernel_size": [7, 7],
        "patch_stride": [4, 4],
        "patch_padding": [3, 3],
        "query_stride": [2, 2],
        "num_query_pool_stages": 3,
        "mlp_ratio": 4.0,
        "fpn_top_down_levels": [2, 3],
        "num_feature_levels": 3,
    }
    given = {**vision, **backbone}
    unsupported = [
        f"{key}={given[key]}"
        for key, value in fixed.items()
        if key in given and given[key] != value and [given[key]] * 2 != value
    ]
    if dims != [dims[0] * 2**i for i in range(len(dims))]:
        unsupported.append(f"embed_dim_per_stage={dims} (not doubling)")
    if heads != [heads[0] * 2**i for i in range(len(heads))]:
        unsupported.append(f"num_attention_heads_per_stage={heads} (not doubling)")
    if unsupported:
        raise ValueError(f"SAM 2 config with settings this model does not build: {unsupported}")
    return Sam2Config(
        embed_dim=dims[0],
        num_heads=heads[0],
        stages=tuple(backbone.get("blocks_per_stage", (1, 2, 7, 2))),
        global_att_blocks=tuple(backbone.get("global_attention_blocks", (5, 7, 9))),
        window_spec=tuple(backbone.get("window_size_per_stage", (8, 4, 14, 7))),
        window_pos_embed_bkg_spatial_size=tuple(
            backbone.get("window_positional_embedding_background_size", (7, 7))
        ),
        hidden_dim=vision.get("fpn_hidden_size", 256),
        image_size=prompts.get("image_size", 1024),
        mask_in_chans=prompts.get("mask_input_channels", 16),
        decoder_depth=decoder.get("num_hidden_layers", 2),
        decoder_num_heads=decoder.get("num_attention_heads", 8),
        decoder_mlp_dim=decoder.get("mlp_dim", 2048),
        iou_head_depth=decoder.get("iou_head_depth", 3),
        iou_head_hidden_dim=decoder.get("iou_head_hidden_dim", 256),
        num_multimask_outputs=decoder.get("num_multimask_outputs", 3),
        dynamic_multimask_stability_delta=decoder.get("dynamic_multimask_stability_delta", 0.05),
        dynamic_multimask_stability_thresh=decoder.get("dynamic_multimask_stability_thresh", 0.98),
    )


def to_transformers_config(config: Sam2Config):  # -> transformers.Sam2Config
    """The transformers ``Sam2Config`` describing the same architecture as ``config``."""
    from transformers import Sam2Config as HFSam2Config

    side = config.image_size
    return HFSam2Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=config.embed_dim,
                num_attention_heads=config.num_heads,
                image_size=[side, side],
                blocks_per_stage=list(config.stages),
                embed_dim_per_stage=list(config.stage_dims),
                num_attention_heads_per_stage=[
                    config.num_heads * 2**i for i in range(len(config.stages))
                ],
                window_size_per_stage=list(config.window_spec),
                global_attention_blocks=list(config.global_att_blocks),
                window_positional_embedding_background_size=list(
                    config.window_pos_embed_bkg_spatial_size
                ),
            ),
            backbone_channel_list=list(config.stage_dims[::-1]),
            backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
            fpn_hidden_size=config.hidden_dim,
        ),
        prompt_encoder_config=dict(
            hidden_size=config.hidden_dim,
            image_size=side,
            patch_size=16,
            mask_input_channels=config.mask_in_chans,
        ),
        mask_decoder_config=dict(
            **mask_decoder_config(config, config.hidden_dim),
            dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
        ),
    )
