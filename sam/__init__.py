"""Segment Anything (Kirillov et al., 2023): the model, Meta's checkpoints and a predictor."""

from sam.cache import EmbeddingCache
from sam.modeling.config import MODEL_CONFIGS, SamConfig
from sam.modeling.sam import Sam, build_sam
from sam.predictor import Candidate, ImageNotSetError, SamPredictor
from sam.weights.checkpoint import CheckpointError, load_sam, save_checkpoint

__all__ = [
    "MODEL_CONFIGS",
    "AutomaticMaskGenerator",
    "Candidate",
    "CheckpointError",
    "EmbeddingCache",
    "ImageNotSetError",
    "Sam",
    "SamConfig",
    "SamPredictor",
    "build_sam",
    "load_sam",
    "save_checkpoint",
]


def __getattr__(name: str):
    # Imported on first use: the generator needs pycocotools, the model and predictor do not.
    if name == "AutomaticMaskGenerator":
        from sam.automatic.generator import AutomaticMaskGenerator

        return AutomaticMaskGenerator
    raise AttributeError(f"module 'sam' has no attribute {name!r}")
