"""The optimizer's side of training: parameter groups with layer-wise learning-rate decay, the
warmup and step schedule, what is trained, and drop path in the image encoder."""

from __future__ import annotations

import torch
from torch import nn

from sam.modeling.sam import Sam
from sam.train.config import Trainable, TrainConfig


def encoder_layer_id(name: str, depth: int) -> int:
    """Layer index of an image-encoder parameter: 0 for the patch and position embeddings,
    i + 1 for block i, depth + 1 for the neck."""
    if name.startswith(("patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def parameter_groups(model: Sam, config: TrainConfig) -> list[dict]:
    """AdamW groups of the trainable parameters: encoder lr scaled by layer_decay ** (distance
    from the top); no weight decay on biases, norms and embeddings (1-D or fewer dims)."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    depth = len(model.image_encoder.blocks)
    for module_name in ("image_encoder", "prompt_encoder", "mask_decoder"):
        for name, param in getattr(model, module_name).named_parameters():
            if not param.requires_grad:
                continue
            scale = 1.0
            if module_name == "image_encoder":
                scale = config.layer_decay ** (depth + 1 - encoder_layer_id(name, depth))
            decay = param.ndim > 1 and "pos_embed" not in name
            groups.setdefault((scale, decay), []).append(param)
    return [
        {
            "params": params,
            "lr": config.lr * scale,
            "lr_scale": scale,
            "weight_decay": config.weight_decay if decay else 0.0,
        }
        for (scale, decay), params in groups.items()
    ]


def lr_factor(step: int, config: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then x ``decay_factor`` at each decay step and
    at each of ``decay_fractions`` that ``progress`` (fraction of the run done; by default
    ``step / steps``) has reached."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if progress is None:
        progress = step / max(config.steps, 1)
    decays = sum(step >= s for s in config.decay_steps)
    decays += sum(progress >= f for f in config.decay_fractions)
    return config.decay_factor**decays


def set_trainable(model: Sam, trainable: Trainable) -> None:
    """Freeze everything but the decoder ('decoder'), decoder and prompt encoder, or nothing."""
    parts = {
        "decoder": ("mask_decoder",),
        "decoder+prompt": ("mask_decoder", "prompt_encoder"),
        "all": ("mask_decoder", "prompt_encoder", "image_encoder"),
    }
    if trainable not in parts:
        raise ValueError(f"trainable must be one of {sorted(parts)}, got {trainable!r}")
    for name in ("image_encoder", "prompt_encoder", "mask_decoder"):
        getattr(model, name).requires_grad_(name in parts[trainable])


def add_drop_path(encoder: nn.Module, rate: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Stochastic depth on the encoder blocks, by forward hooks (the weights' names do not
    change): in training, block i's residual update is dropped per sample with probability
    ``rate * i / (depth - 1)`` and rescaled otherwise. Returns the hook handles."""
    blocks = list(encoder.blocks)
    handles = []
    for index, block in enumerate(blocks):
        p = rate * index / max(len(blocks) - 1, 1)
        if p <= 0:
            continue

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, p: float = p):
            if not module.training:
                return output
            x = inputs[0]
            keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device) >= p
            return x + (output - x) * keep.to(x.dtype) / (1 - p)

        handles.append(block.register_forward_hook(hook))
    return handles
