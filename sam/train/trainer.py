"""Training and fine-tuning SAM with the paper's recipe (Kirillov et al. 2023, appendix A).

AdamW with linear warmup then step decay, layer-wise learning-rate decay and drop path in the
image encoder, gradient clipping, autocast on GPU, and the interactive simulation: 11 decoder
calls per mask, each fed the previous call's best low-res logits as a mask prompt. A lone first
point asks for three masks (min-over-3 loss); every other prompt for one.

A checkpoint folder holds ``model.safetensors`` (loadable with :func:`sam.load_sam`) and
``train_state.pt`` (optimizer, scheduler, step; read with ``weights_only=True``), and with
``ema_decay`` set ``model_ema.safetensors``.

Not from the paper: ``ema_decay`` keeps an exponential moving average of the weights (off by
default), meant to smooth the noise of small-batch training such as the demo model's one image
per step on the CPU; on a 65-minute CPU fine-tune of it (2026-12-02) the average equalled the
last weights to 0.002 in every figure, since the steps after the lr drop are small.
"""

from __future__ import annotations

import copy
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

from sam.modeling.sam import Sam
from sam.modeling.transforms import ResizeLongestSide
from sam.train.data import Sample
from sam.train.losses import resize_targets, sam_loss
from sam.train.simulation import BOX_NOISE_FRACTION, BOX_NOISE_MAX, simulation_schedule
from sam.weights.checkpoint import read_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

Trainable = Literal["decoder", "decoder+prompt", "all"]
MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
EMA_FILE = "model_ema.safetensors"


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


def lr_factor(step: int, config: TrainConfig, progress: float | None = None) -> float:
    """Linear warmup to 1 over ``warmup_steps``, then x ``decay_factor`` at each decay step and
    at each of ``decay_fractions`` that ``progress`` (fraction of the run done; by default
    ``step / steps``) has reached."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if progress is None:
        progress = step / max(config.steps, 1)
    decays = sum(step >= s for s in config.decay_steps)
    decays += sum(progress >= f for f in config.decay_fractions)
    return config.decay_factor**decays


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
    """Images and some of their masks at model input size: ``pixels`` (N, 3, S, S)
    preprocessed, ``masks`` (B, S, S) bool, zero in the padding, ``image_index`` (B,) long: the
    image of each mask."""

    pixels: torch.Tensor
    masks: torch.Tensor
    image_index: torch.Tensor


def make_batch(
    model: Sam, samples: Sample | list[Sample], rng: np.random.Generator, max_masks: int
) -> Batch:
    """Resize samples to the model's input (long side S), pad, and draw up to ``max_masks`` masks
    of each; one transfer each of pixels and masks to the model's device."""
    if isinstance(samples, Sample):
        samples = [samples]
    side = model.image_encoder.img_size
    resize = ResizeLongestSide(side)
    mean, std = model.pixel_mean.cpu(), model.pixel_std.cpu()
    pixels, masks, index = [], [], []
    for number, sample in enumerate(samples):
        image = torch.as_tensor(resize.apply_image(sample.image)).permute(2, 0, 1).float()
        height, width = image.shape[-2:]
        pixels.append(F.pad((image - mean) / std, (0, side - width, 0, side - height)))
        chosen = rng.permutation(len(sample.masks))[:max_masks]
        chosen_masks = torch.as_tensor(np.stack([sample.masks[i] for i in chosen]))
        if tuple(chosen_masks.shape[-2:]) != (height, width):
            resized = F.interpolate(chosen_masks[:, None].float(), (height, width), mode="nearest")
            chosen_masks = resized[:, 0] > 0.5
        masks.append(F.pad(chosen_masks, (0, side - width, 0, side - height)))
        index += [number] * len(chosen)
    device = model.device
    non_blocking = device.type == "cuda"
    return Batch(
        torch.stack(pixels).to(device, non_blocking=non_blocking),
        torch.cat(masks).to(device, non_blocking=non_blocking),
        torch.as_tensor(index).to(device, non_blocking=non_blocking),
    )


def stack_points(prompts: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask point lists -> (B, N, 2) coords and (B, N) labels, padded with label -1."""
    count = max(p.num_points for p in prompts)
    coords = np.zeros((len(prompts), count, 2), np.float32)
    labels = np.full((len(prompts), count), -1, np.int64)
    for row, prompt in enumerate(prompts):
        coords[row, : prompt.num_points] = prompt.points_xy
        labels[row, : prompt.num_points] = prompt.point_labels
    return torch.as_tensor(coords, device=device), torch.as_tensor(labels, device=device)


def sample_points(
    region: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A pixel uniform in each (H, W) mask of ``region`` (B, H, W) bool: (x, y) coords (B, 2)
    float and (B,) bool, False where the mask is empty (its coords are then meaningless)."""
    batch, _, width = region.shape
    scores = torch.rand(region.shape, generator=generator, device=region.device)
    flat = torch.where(region, scores, -1.0).reshape(batch, -1)
    index = flat.argmax(dim=1)
    coords = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=1)
    return coords.float(), region.reshape(batch, -1).any(dim=1)


def noisy_boxes(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Tight XYXY boxes (B, 4) of non-empty masks (B, H, W), each coordinate shifted by
    N(0, (10% of the box side)^2) capped at 20 px, clipped to the image (as
    :func:`sam.train.simulation.noisy_box`)."""
    height, width = masks.shape[-2:]
    cols, rows = masks.any(dim=1), masks.any(dim=2)  # (B, W), (B, H)

    def extent(line: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = line.float().argmax(dim=1)
        last = line.shape[1] - 1 - line.flip(1).float().argmax(dim=1)
        return first.float(), last.float()

    x0, x1 = extent(cols)
    y0, y1 = extent(rows)
    box = torch.stack([x0, y0, x1, y1], dim=1)
    sides = torch.stack([x1 - x0 + 1, y1 - y0 + 1], dim=1).repeat(1, 2)
    noise = torch.randn(box.shape, generator=generator, device=box.device)
    box = box + (noise * BOX_NOISE_FRACTION * sides).clamp(-BOX_NOISE_MAX, BOX_NOISE_MAX)
    limit = torch.tensor([width - 1, height - 1] * 2, dtype=box.dtype, device=box.device)
    box = torch.minimum(box.clamp(min=0), limit)
    xs, ys = box[:, 0::2], box[:, 1::2]
    return torch.stack([xs.min(1).values, ys.min(1).values, xs.max(1).values, ys.max(1).values], 1)


def simulate(
    model: Sam, batch: Batch, rng: np.random.Generator, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The interactive simulation on one batch, all on the model's device (no host round trip):
    mean loss over the iterations (scalar, with grad) and the mean IoU of the final supervised
    outputs (scalar, detached).

    Iteration 0 prompts every mask with a uniform foreground point or (for the whole batch, with
    ``box_probability``) a noisy box; every later one feeds back the previous best low-res logits
    and, on point iterations, adds a point uniform in the error region (foreground on a false
    negative, background on a false positive; a padding point where the prediction is exact).
    """
    device = model.device
    generator = torch.Generator(device=device)
    generator.manual_seed(int(rng.integers(2**62)))
    encoder_trains = any(p.requires_grad for p in model.image_encoder.parameters())
    with torch.set_grad_enabled(encoder_trains and torch.is_grad_enabled()):
        embedding = model.encode_image(batch.pixels)
    # every mask gets its image's embedding; the decoder's own broadcast serves one image only,
    # so the per-mask embedding travels in the dense prompt (the decoder adds the two)
    per_mask = embedding[batch.image_index]
    zero_embedding = torch.zeros_like(embedding[:1])
    gt = batch.masks
    use_box = bool(rng.random() < config.box_probability)
    schedule = simulation_schedule(rng, config.num_points, config.num_mask_only)
    side = model.image_encoder.img_size
    boxes = noisy_boxes(gt, generator) if use_box else None
    if use_box:
        coords = torch.zeros((len(gt), 0, 2), device=device)
        labels = torch.zeros((len(gt), 0), dtype=torch.long, device=device)
    else:
        first, _ = sample_points(gt, generator)
        coords = first[:, None]
        labels = torch.ones((len(gt), 1), dtype=torch.long, device=device)
    # positional encodings in float32 even under autocast, as at inference (bf16 would blur
    # the point coordinates)
    full_precision = torch.autocast(device.type, enabled=False)
    with full_precision:
        image_pe = model.prompt_encoder.get_dense_pe()
    total = torch.zeros((), device=device)
    mask_input = None
    pred = None
    targets = None
    for iteration in schedule:
        if iteration.adds_point:
            point, has_error = sample_points(pred != gt, generator)
            rows = torch.arange(len(gt), device=device)
            x, y = point[:, 0].long(), point[:, 1].long()
            label = torch.where(has_error, gt[rows, y, x].long(), -1)
            coords = torch.cat([coords, point[:, None]], dim=1)
            labels = torch.cat([labels, label[:, None]], dim=1)
        multimask = not iteration.uses_previous_mask and not use_box
        points = (coords, labels) if labels.shape[1] else None
        with full_precision:
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        logits, iou_pred = model.mask_decoder(
            image_embeddings=zero_embedding,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense + per_mask,
            multimask_output=multimask,
        )
        logits = logits.float()
        if targets is None:
            targets = resize_targets(gt, tuple(logits.shape[-2:]))
        loss = sam_loss(logits, iou_pred.float(), targets, multimask)
        total = total + loss.total
        rows = torch.arange(len(gt), device=device)
        index = iou_pred.argmax(dim=1) if multimask else torch.zeros_like(rows)
        mask_input = logits[rows, index][:, None].detach()  # (B, 1, h, w)
        upscaled = F.interpolate(mask_input, (side, side), mode="bilinear", align_corners=False)
        pred = upscaled[:, 0] > 0
    final_iou = loss.actual_iou.gather(1, loss.best_index[:, None]).mean()
    return total / len(schedule), final_iou


class Trainer:
    """Trains ``model`` on an endless stream of samples; see :class:`TrainConfig`. The model's
    device is the training device; on CUDA the forward passes run under bf16 autocast."""

    def __init__(self, model: Sam, config: TrainConfig) -> None:
        self.model, self.config = model, config
        set_trainable(model, config.trainable)
        self.drop_path_handles = add_drop_path(model.image_encoder, config.drop_path)
        fused = {"fused": True} if model.device.type == "cuda" else {}
        self.optimizer = torch.optim.AdamW(
            parameter_groups(model, config), betas=config.betas, **fused
        )
        self.started: float | None = None  # monotonic time fit() began
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config, self.progress(step))
        )
        self.step = 0
        self.rng = np.random.default_rng(config.seed)
        self.ema: Sam | None = None  # the moving average of the weights, with ema_decay
        if config.ema_decay:
            if not 0.0 < config.ema_decay < 1.0:
                raise ValueError(f"ema_decay must lie in (0, 1), got {config.ema_decay}")
            self.ema = copy.deepcopy(model).eval().requires_grad_(False)
            # aliases of both models' floating tensors (updated in place by the optimizer,
            # resume and update_ema), collected once rather than every step
            self._ema_tensors = [
                [t for t in m.state_dict().values() if t.is_floating_point()]
                for m in (self.ema, model)
            ]

    def progress(self, step: int | None = None) -> float:
        """Fraction of the run done: the larger of step / steps and, in a time-limited run,
        elapsed / max_seconds."""
        step = self.step if step is None else step
        done = step / max(self.config.steps, 1)
        if self.config.max_seconds and self.started is not None:
            done = max(done, (time.monotonic() - self.started) / self.config.max_seconds)
        return done

    def train_step(self, samples: Sample | list[Sample]) -> dict[str, float]:
        """One optimizer step on one image or a list of them (up to ``masks_per_image`` masks
        of each)."""
        self.model.train()
        batch = make_batch(self.model, samples, self.rng, self.config.masks_per_image)
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
        self.update_ema()
        loss_value, miou_value = torch.stack([loss.detach(), miou.float()]).tolist()
        return {
            "loss": loss_value,
            "miou": miou_value,
            "lr": self.scheduler.get_last_lr()[0],
            "masks": len(batch.masks),
        }

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema = d * ema + (1 - d) * weights, for every parameter and floating buffer."""
        if self.ema is None:
            return
        averaged, current = self._ema_tensors
        torch._foreach_lerp_(averaged, current, 1.0 - self.config.ema_decay)

    def fit(self, samples: Iterable[Sample] | Iterable[list[Sample]]) -> list[dict[str, float]]:
        """Train until ``config.steps`` (or ``max_seconds``), cycling through ``samples``: single
        samples (grouped ``images_per_step`` at a time) or ready lists of them, such as
        :func:`sam.train.data.scene_loader` yields. Logs and checkpoints."""
        history = []
        stream = _groups(_cycle(samples), self.config.images_per_step)
        bar = tqdm(total=self.config.steps, initial=self.step, desc="train", mininterval=5)
        self.started = start = time.monotonic()
        last_save = start
        while self.step < self.config.steps:
            if self.config.max_seconds and time.monotonic() - start > self.config.max_seconds:
                logger.warning("stopping at step %d: time budget spent", self.step)
                break
            metrics = self.train_step(next(stream))
            history.append(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", miou=f"{metrics['miou']:.3f}")
            if self.step % self.config.log_every == 0:
                elapsed = time.monotonic() - start
                logger.info(
                    "step %d (%.0f s, %.2f steps/s): %s",
                    self.step,
                    elapsed,
                    len(history) / max(elapsed, 1e-9),
                    {k: round(v, 5) for k, v in metrics.items()},
                )
            every = self.config.checkpoint_every
            seconds = self.config.checkpoint_seconds
            if (every and self.step % every == 0) or (
                seconds and time.monotonic() - last_save > seconds
            ):
                self.save(self.config.output_dir)
                last_save = time.monotonic()
        bar.close()
        self.save(self.config.output_dir)
        self.model.eval()
        return history

    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` and ``train_state.pt`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.model, folder / MODEL_FILE)
        if self.ema is not None:
            save_checkpoint(self.ema, folder / EMA_FILE)
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
        if self.ema is not None:
            self.ema.load_state_dict(read_checkpoint(folder / EMA_FILE)[0])
        state = torch.load(folder / STATE_FILE, map_location=self.model.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.rng = np.random.default_rng((self.config.seed, self.step))


def _cycle(samples: Iterable) -> Iterator:
    while True:
        empty = True
        for sample in samples:
            if isinstance(sample, list) and not sample:
                continue  # a group whose scenes all lacked a valid mask
            empty = False
            yield sample
        if empty:
            raise ValueError("no training samples")


def _groups(stream: Iterator, size: int) -> Iterator[Sample | list[Sample]]:
    """Lists from the stream pass through; single samples are grouped ``size`` at a time
    (passed alone when ``size`` is 1)."""
    pending: list[Sample] = []
    for item in stream:
        if isinstance(item, list) or size <= 1:
            yield item
        else:
            pending.append(item)
            if len(pending) == size:
                yield pending
                pending = []


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False) -> str:
    """Upload a checkpoint folder to a Hugging Face Hub model repo (creating it); returns its
    URL. Needs a token (``huggingface-cli login`` or HF_TOKEN)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), allow_patterns=[MODEL_FILE])
    return f"https://huggingface.co/{repo_id}"
