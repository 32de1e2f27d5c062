"""Model configurations: Meta's released sizes plus small ones for tests and the demo."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import TypeVar

ConfigT = TypeVar("ConfigT", bound="JsonConfig")


class JsonConfig:
    """A frozen dataclass of hyper-parameters to and from JSON (its tuples come back as lists,
    and are read back as tuples)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls: type[ConfigT], values: dict) -> ConfigT:
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class SamConfig(JsonConfig):
    """Every hyper-parameter needed to build a :class:`sam.model.Sam`.

    Defaults are those of Meta's released ViT-B model; the other released sizes only change the
    image encoder (width, depth, heads and which blocks use global attention).
    """

    # image encoder (MAE-style ViT)
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    encoder_window_size: int = 14
    encoder_mlp_ratio: float = 4.0
    image_size: int = 1024
    patch_size: int = 16
    # prompt encoder and mask decoder
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    name: str = field(default="custom", compare=False)

    @property
    def image_embedding_size(self) -> int:
        """Side of the square image embedding grid (64 for 1024 px and 16 px patches)."""
        return self.image_size // self.patch_size


MODEL_CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(name="vit_b"),
    "vit_l": SamConfig(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
        name="vit_l",
    ),
    "vit_h": SamConfig(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
        name="vit_h",
    ),
    # A few-kilobyte model for unit tests: 128 px input, 8x8 embedding, windows of 3 (so padding
    # and window partitioning are exercised) and one global block.
    "vit_test": SamConfig(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        encoder_window_size=3,
        image_size=128,
        prompt_embed_dim=32,
        mask_in_chans=8,
        decoder_num_heads=2,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
        name="vit_test",
    ),
}
