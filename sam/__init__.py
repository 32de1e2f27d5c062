"""Segment Anything (Kirillov et al., 2023): the model, Meta's checkpoints and a predictor."""

from .checkpoint import CheckpointError, load_sam, save_checkpoint
from .config import MODEL_CONFIGS, SamConfig
from .embedding_cache import EmbeddingCache
from .model import Sam, build_sam
from .predictor import Candidate, ImageNotSetError, SamPredictor

__all__ = [
    "MODEL_CONFIGS",
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
