"""Builders for the two implementations our model is checked against, on the same weights."""

from __future__ import annotations

import torch

from sam import build_sam
from sam.modeling.config import SamConfig
from sam.weights.transformers_keys import original_to_hf, to_transformers_config


def build_reference_sam(config: SamConfig, state_dict: dict[str, torch.Tensor]):
    """Meta's ``segment_anything`` model for ``config``, loaded strictly with ``state_dict``."""
    import segment_anything.modeling

    model = build_sam(config, modules=segment_anything.modeling)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def build_transformers_sam(config: SamConfig, state_dict: dict[str, torch.Tensor]):
    """transformers' ``SamModel`` for ``config``, loaded strictly with ``state_dict`` converted."""
    from transformers import SamModel

    model = SamModel(to_transformers_config(config))
    model.load_state_dict(original_to_hf(state_dict), strict=True)
    return model.eval()
