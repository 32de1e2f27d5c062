"""Every speed-up of the model, behind one seam: :func:`optimize`.

The plain model (:mod:`sam.modeling`) is Meta's, readable top to bottom. ``optimize`` swaps
some of its modules for subclasses that hold the same parameters under the same names (so
checkpoints, ``state_dict`` and training are unchanged) and compute the same numbers faster:

- the encoder's attention a chunk of queries at a time (:mod:`sam.fast.attention`);
- the encoder's MLP through oneDNN's fused linear + GELU on CPU (:mod:`sam.fast.mlp`);
- SAM 2's Hiera blocks a band of windows at a time, for a smaller peak, with oneDNN's linear
  layers (:mod:`sam.fast.hiera`);
- the decoder shares the image-side work between prompts (:mod:`sam.fast.shared_decoding`);
- low-res masks resized to the image in one composed step (:mod:`sam.fast.mask_resize`).

Each one's tests compare it with the plain module. :func:`sam.load_sam` applies ``optimize``;
:func:`sam.build_sam` returns the plain model.
"""

from __future__ import annotations

from torch import nn

from sam.fast.attention import ChunkedAttention
from sam.fast.hiera import ChunkedHiera, ChunkedMultiScaleBlock, FusedMultiScaleAttention
from sam.fast.mask_resize import ResizingSam
from sam.fast.mlp import FusedMLPBlock
from sam.fast.shared_decoding import SharingMaskDecoder
from sam.modeling.common import MLPBlock
from sam.modeling.image_encoder import Attention
from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.sam import Sam
from sam.modeling.sam2.hiera import Hiera, MultiScaleAttention, MultiScaleBlock

# plain class -> its faster twin; only exact classes are swapped, never other subclasses
FASTER = {
    Attention: ChunkedAttention,
    MLPBlock: FusedMLPBlock,
    MaskDecoder: SharingMaskDecoder,
    Sam: ResizingSam,
    Hiera: ChunkedHiera,
    MultiScaleBlock: ChunkedMultiScaleBlock,
    MultiScaleAttention: FusedMultiScaleAttention,
}


def optimize(model: nn.Module) -> nn.Module:
    """Swap, in place, every plain module of ``model`` (itself included) for its faster twin;
    returns ``model``. Idempotent. Each twin adds no parameters or buffers, only a faster
    ``forward`` (or method), so changing the module's class keeps its weights and hooks."""
    for module in model.modules():
        faster = FASTER.get(type(module))
        if faster is not None:
            module.__class__ = faster
    return model


def is_optimized(model: nn.Module) -> bool:
    """Whether no module of ``model`` has a faster twin left to swap in."""
    return not any(type(module) in FASTER for module in model.modules())


__all__ = ["FASTER", "is_optimized", "optimize"]
