"""Training and fine-tuning SAM with the paper's recipe (Kirillov et al. 2023, appendix A).

AdamW with linear warmup then step decay, layer-wise learning-rate decay and drop path in the
image encoder, gradient clipping, autocast on GPU, and the interactive simulation: 11 decoder
calls per mask, each fed the previous call's best low-res logits as a mask prompt. A lone first
point asks for three masks (min-over-3 loss); every other prompt for one.

A checkpoint folder holds ``model.safetensors`` (loadable with :func:`sam.load_sam`) and
``train_state.pt`` (optimizer, scheduler, step; read with ``weights_only=True``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..checkpoint import read_checkpoint, save_checkpoint
from ..model import Sam
from ..transforms import ResizeLongestSide
from .data import Sample
from .losses import sam_loss
from .simulation import first_prompt, next_prompt, simulation_schedule

logger = logging.getLogger(__name__)

Trainable = Literal["decoder", "decoder+prompt", "all"]
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"


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
    decay_factor: float = 0.1
    layer_decay: float = 0.8
    drop_path: float = 0.1
    grad_clip: float = 1.0
    masks_per_image: int = 16
    num_points: int = 8  # error-region points after the first prompt
    num_mask_only: int = 2  # iterations feeding back only the mask
    box_probability: float = 0.5
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    max_seconds: float = 0.0  # stop early after this much wall-clock time; 0: no limit
    output_dir: str = "runs/sam"


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


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then x ``decay_factor`` at each decay step."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    return config.decay_factor ** sum(step >= s for s in config.decay_steps)


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


@dataclass
class Batch:
    """One image and some of its masks at model input size: ``pixels`` (1, 3, S, S)
    preprocessed, ``masks`` (B, S, S) bool, zero in the padding."""

    pixels: torch.Tensor
    masks: torch.Tensor


def make_batch(model: Sam, sample: Sample, rng: np.random.Generator, max_masks: int) -> Batch:
    """Resize a sample to the model's input (long side S), pad, and draw up to ``max_masks``."""
    side = model.image_encoder.img_size
    resize = ResizeLongestSide(side)
    image = torch.as_tensor(resize.apply_image(sample.image)).permute(2, 0, 1).float()
    height, width = image.shape[-2:]
    chosen = rng.permutation(len(sample.masks))[:max_masks]
    masks = torch.as_tensor(np.stack([sample.masks[i] for i in chosen]))[:, None].float()
    masks = F.interpolate(masks, (height, width), mode="nearest")[:, 0] > 0.5
    masks = F.pad(masks, (0, side - width, 0, side - height))
    pixels = model.preprocess(image.to(model.device))[None]
    return Batch(pixels, masks.to(model.device))


def stack_points(prompts: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask point lists -> (B, N, 2) coords and (B, N) labels, padded with label -1."""
    count = max(p.num_points for p in prompts)
    coords = np.zeros((len(prompts), count, 2), np.float32)
    labels = np.full((len(prompts), count), -1, np.int64)
    for row, prompt in enumerate(prompts):
        coords[row, : prompt.num_points] = prompt.points_xy
        labels[row, : prompt.num_points] = prompt.point_labels
    return torch.as_tensor(coords, device=device), torch.as_tensor(labels, device=device)


def simulate(
    model: Sam, batch: Batch, rng: np.random.Generator, config: TrainConfig
) -> tuple[torch.Tensor, float]:
    """The interactive simulation on one batch: mean loss over the iterations (scalar, with
    grad) and the mean IoU of the final supervised outputs."""
    encoder_trains = any(p.requires_grad for p in model.image_encoder.parameters())
    with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
        embedding = model.encode_image(batch.pixels)
    gt_masks = batch.masks.cpu().numpy()
    use_box = rng.random() < config.box_probability
    prompts = [first_prompt(rng, m, box_probability=float(use_box)) for m in gt_masks]
    schedule = simulation_schedule(rng, config.num_points, config.num_mask_only)
    side = model.image_encoder.img_size
    total = torch.zeros((), device=model.device)
    pred_masks: np.ndarray = np.zeros_like(gt_masks)  # set by each iteration for the next
    fed_back: list[torch.Tensor] = []
    for iteration in schedule:
        if iteration.uses_previous_mask:
            prompts = [
                next_prompt(rng, p, iteration, pred, gt, logit)
                for p, pred, gt, logit in zip(prompts, pred_masks, gt_masks, fed_back)
            ]
        multimask = prompts[0].is_ambiguous
        points = stack_points(prompts, model.device) if any(p.num_points for p in prompts) else None
        boxes = torch.as_tensor(np.stack([p.box for p in prompts])) if use_box else None
        masks = None
        if prompts[0].mask_logits is not None:
            masks = torch.stack([p.mask_logits for p in prompts])
        sparse, dense = model.prompt_encoder(
            points=points, boxes=None if boxes is None else boxes.to(model.device), masks=masks
        )
        logits, iou_pred = model.mask_decoder(
            image_embeddings=embedding,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        loss = sam_loss(logits.float(), iou_pred.float(), batch.masks, multimask)
        total = total + loss.total
        rows = torch.arange(len(prompts), device=logits.device)
        index = iou_pred.argmax(dim=1) if multimask else torch.zeros_like(rows)
        chosen = logits[rows, index][:, None].detach().float()  # (B, 1, h, w)
        fed_back = list(chosen)
        upscaled = F.interpolate(chosen, (side, side), mode="bilinear", align_corners=False)
        pred_masks = (upscaled[:, 0] > 0).cpu().numpy()
    final_iou = loss.actual_iou.gather(1, loss.best_index[:, None]).mean().item()
    return total / len(schedule), final_iou


class Trainer:
    """Trains ``model`` on an endless stream of samples; see :class:`TrainConfig`."""

    def __init__(self, model: Sam, config: TrainConfig) -> None:
        self.model, self.config = model, config
        set_trainable(model, config.trainable)
        self.drop_path_handles = add_drop_path(model.image_encoder, config.drop_path)
        self.optimizer = torch.optim.AdamW(parameter_groups(model, config), betas=config.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config)
        )
        self.step = 0
        self.rng = np.random.default_rng(config.seed)

    def train_step(self, sample: Sample) -> dict[str, float]:
        """One optimizer step on one image (up to ``masks_per_image`` masks)."""
        self.model.train()
        batch = make_batch(self.model, sample, self.rng, self.config.masks_per_image)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=batch.pixels.is_cuda)
        with autocast:
            loss, miou = simulate(self.model, batch, self.rng, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {"loss": loss.item(), "miou": miou, "lr": self.scheduler.get_last_lr()[0]}

    def fit(self, samples: Iterable[Sample]) -> list[dict[str, float]]:
        """Train until ``config.steps``, cycling through ``samples``; logs and checkpoints."""
        history = []
        stream = _cycle(samples)
        bar = tqdm(total=self.config.steps, initial=self.step, desc="train")
        start = time.monotonic()
        while self.step < self.config.steps:
            if self.config.max_seconds and time.monotonic() - start > self.config.max_seconds:
                logger.warning("stopping at step %d: time budget spent", self.step)
                break
            metrics = self.train_step(next(stream))
            history.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", miou=f"{metrics['miou']:.3f}")
            if self.step % self.config.log_every == 0:
                logger.info("step %d: %s", self.step, metrics)
            every = self.config.checkpoint_every
            if every and self.step % every == 0:
                self.save(self.config.output_dir)
        bar.close()
        self.save(self.config.output_dir)
        self.model.eval()
        return history

    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` and ``train_state.pt`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.model, folder / MODEL_FILE)
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
        }
        torch.save(state, folder / STATE_FILE)
        return folder

    def resume(self, folder: str | Path) -> None:
        """Restore weights, optimizer, scheduler and step from a :meth:`save` folder."""
        folder = Path(folder)
        state_dict, _ = read_checkpoint(folder / MODEL_FILE)
        self.model.load_state_dict(state_dict)
        state = torch.load(folder / STATE_FILE, map_location=self.model.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.rng = np.random.default_rng((self.config.seed, self.step))


def _cycle(samples: Iterable[Sample]) -> Iterator[Sample]:
    while True:
        empty = True
        for sample in samples:
            empty = False
            yield sample
        if empty:
            raise ValueError("no training samples")


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a checkpoint folder to a Hugging Face Hub model repo (creating it); returns its
    URL. Needs a token (``huggingface-cli login`` or HF_TOKEN)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=[MODEL_FILE])
    return f"https://huggingface.co/{repo_id}"
