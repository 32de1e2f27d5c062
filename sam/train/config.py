"""What a training run is told: :class:`TrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trainable = Literal["decoder", "decoder+prompt", "all"]


@dataclass
class TrainConfig:
    """Hyper-parameters; defaults follow the paper where it gives them (lr 8e-4, weight decay
    0.1, 250 warmup steps, x0.1 decay steps, layer decay 0.8, drop path 0.4 for ViT-H)."""

    trainable: Trainable = "all"
    steps: int = 1000
    lr: float = 8e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 250
    decay_steps: tuple[int, ...] = ()
    # decays at these fractions of the run, the run's progress being the larger of
    # step / steps and elapsed / max_seconds (so a time-limited run decays within its budget)
    decay_fractions: tuple[float, ...] = ()
    decay_factor: float = 0.1
    layer_decay: float = 0.8
    drop_path: float = 0.1
    grad_clip: float = 1.0
    masks_per_image: int = 16
    images_per_step: int = 1  # images (each with up to masks_per_image masks) per optimizer step
    num_points: int = 8  # error-region points after the first prompt
    num_mask_only: int = 2  # iterations feeding back only the mask
    box_probability: float = 0.5
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    checkpoint_seconds: float = 0.0  # also save after this much time since the last save
    max_seconds: float = 0.0  # stop early after this much wall-clock time; 0: no limit
    output_dir: str = "runs/sam"
    # weights' moving average, updated after every step: ema = d * ema + (1 - d) * weights; 0: off
    ema_decay: float = 0.0
