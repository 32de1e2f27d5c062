"""SAM 2 configurations: Meta's released SAM 2.1 image models plus a small one for tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import JsonConfig


@dataclass(frozen=True)
class Sam2Config(JsonConfig):
    """Every hyper-parameter of the SAM 2 image path (Ravi et al., 2024): a Hiera trunk, an FPN
    neck, and SAM's prompt encoder and a mask decoder with high-resolution skip features.

    Defaults are those of Meta's sam2.1_hiera_t.yaml. What every released size shares is fixed in
    the code rather than here: patch stem (kernel 7, stride 4), 2x query pooling at the first
    three stage changes, width and heads doubling per stage, the neck's top-down path into the
    two lowest resolutions, high-resolution features in the decoder, a sigmoid IoU head and an
    object-score head.
    """

    # Hiera trunk
    embed_dim: int = 96  # width of the first stage
    num_heads: int = 1  # heads of the first stage
    stages: tuple[int, ...] = (1, 2, 7, 2)  # blocks per stage
    global_att_blocks: tuple[int, ...] = (5, 7, 9)  # blocks attending globally
    window_spec: tuple[int, ...] = (8, 4, 14, 7)  # window side per stage
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    # FPN neck, prompt encoder and mask decoder
    hidden_dim: int = 256
    image_size: int = 1024
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    # single-mask output falls back to the best multimask output when its stability is low
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # ImageNet statistics, for pixels in 0..1
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    name: str = field(default="custom", compare=False)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Width of each trunk stage, high resolution first (96, 192, 384, 768 for tiny)."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))

    @property
    def image_embedding_size(self) -> int:
        """Side of the decoder's image embedding grid: the trunk's stride-16 stage."""
        return self.image_size // 16


SAM2_CONFIGS: dict[str, Sam2Config] = {
    # Meta's configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml
    "sam2.1_tiny": Sam2Config(name="sam2.1_tiny"),
    "sam2.1_small": Sam2Config(
        stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13), name="sam2.1_small"
    ),
    "sam2.1_base_plus": Sam2Config(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
        name="sam2.1_base_plus",
    ),
    "sam2.1_large": Sam2Config(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
        name="sam2.1_large",
    ),
    # A test-sized model: 128 px input, so the stride-16 stage is 8x8 and its windows of 14 are
    # padded, as are the last stage's; one global block. The heads keep the sizes Meta's SAM2Base
    # hard-codes, so that the reference can be built at this size too.
    "sam2_test": Sam2Config(
        embed_dim=16,
        stages=(1, 2, 2, 1),
        global_att_blocks=(4,),
        hidden_dim=32,
        image_size=128,
        name="sam2_test",
    ),
}
