"""Segment Anything (Kirillov et al., 2023): the model, Meta's checkpoints and a predictor.

Layers, imports pointing down only: :mod:`sam.modeling` (the plain model), :mod:`sam.fast`
(speed-ups behind :func:`optimize`), :mod:`sam.weights` and :mod:`sam.io`, then the pipelines
(predictor, cache, automatic, tasks, evaluate, train, cli). See docs/architecture.md.
"""

from sam.cache import EmbeddingCache
from sam.fast import optimize
from sam.modeling.config import MODEL_CONFIGS, SamConfig
from sam.modeling.sam import Sam, build_sam
from sam.modeling.sam2 import SAM2_CONFIGS, Sam2, Sam2Config, build_sam2
from sam.predictor import Candidate, ImageNotSetError, SamPredictor
from sam.weights.checkpoint import (
    CheckpointError,
    load_sam,
    sam_model_registry,
    save_checkpoint,
    suggested_model,
)

__all__ = [
    "MODEL_CONFIGS",
    "SAM2_CONFIGS",
    "AutomaticMaskGenerator",
    "Candidate",
    "CheckpointError",
    "EmbeddingCache",
    "ImageNotSetError",
    "Sam",
    "Sam2",
    "Sam2Config",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "build_sam",
    "build_sam2",
    "load_sam",
    "optimize",
    "sam_model_registry",
    "save_checkpoint",
    "suggested_model",
]


def __getattr__(name: str):
    # Imported on first use: the generator needs pycocotools, the model and predictor do not.
    if name in ("AutomaticMaskGenerator", "SamAutomaticMaskGenerator"):
        from sam.automatic.generator import AutomaticMaskGenerator

        return AutomaticMaskGenerator
    raise AttributeError(f"module 'sam' has no attribute {name!r}")
