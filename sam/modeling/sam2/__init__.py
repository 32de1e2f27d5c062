"""SAM 2's image model in plain PyTorch: Hiera trunk, FPN neck, prompt encoder, mask decoder."""

from .config import SAM2_CONFIGS, Sam2Config
from .sam2 import Sam2, Sam2Features, build_sam2

__all__ = ["SAM2_CONFIGS", "Sam2", "Sam2Config", "Sam2Features", "build_sam2"]
