"""Train the tiny bundled CLIP (:data:`prompts.clip_model.DEMO_MODEL_NAME`) for the text branch
on generated scenes (:mod:`prompts.clip_training_data`, with the losses of
:mod:`prompts.clip_losses`), and measure the text branch with the bundled demo SAM on held-out
scenes (:mod:`prompts.text_evaluation`).

    python -m prompts.train_clip --minutes 6 --device cuda

writes ``assets/demo/clip_demo.safetensors`` (fp16; ``load_clip("demo")`` loads it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from prompts.clip_losses import hinge, label_aware_clip_loss
from prompts.clip_model import (
    DEMO_CLIP_CHECKPOINT,
    DEMO_MODEL_CONFIG,
    DEMO_MODEL_NAME,
    forward_dense,
    register_demo_config,
)
from prompts.clip_training_data import CAPTIONS, PairStream, worker_init
from prompts.text_evaluation import evaluate_bundle
from prompts.text_prompter import NEGATIVES, TEMPLATES

logger = logging.getLogger(__name__)


# -- model and trainer --------------------------------------------------------------------------


def create_demo_clip(seed: int = 0, init: Path | None = None) -> torch.nn.Module:
    """The demo CLIP, fp32: random (``seed``), or the weights of the checkpoint ``init`` (to
    fine-tune, e.g. the bundled one)."""
    import open_clip

    register_demo_config()
    torch.manual_seed(seed)
    pretrained = str(init) if init is not None else None
    return open_clip.create_model(DEMO_MODEL_NAME, pretrained=pretrained).float()


@dataclass
class TrainConfig:
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    margin: float = 0.1
    calibration_weight: float = 4.0
    dense_weight: float = 4.0
    text_weight: float = 1.0
    text_columns: int | None = None  # captions on the text side per step (None: all)


class DemoClipTrainer:
    """One optimisation step at a time on collated items (see
    :func:`prompts.clip_training_data.scene_items`)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: str = "cpu") -> None:
        import open_clip

        self.model = model.to(device).train()
        self.config = config
        self.device = torch.device(device)
        self.loss_fn = label_aware_clip_loss()
        tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
        # (templates, captions, context) and (negatives * templates, context) token ids.
        self.caption_tokens = torch.stack(
            [tokenizer([t.format(c) for c in CAPTIONS]) for t in TEMPLATES]
        ).to(self.device)
        self.negative_tokens = tokenizer([t.format(n) for n in NEGATIVES for t in TEMPLATES]).to(
            self.device
        )
        cfg = model.visual.preprocess_cfg
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        other = [
            p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)
        ]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": other, "weight_decay": 0.0},
            ],
            lr=config.lr,
            betas=(0.9, 0.98),
            eps=1e-6,
        )
        self.step = 0
        self.generator = torch.Generator().manual_seed(0)

    def set_lr(self, progress: float) -> float:
        """Linear warm-up, then cosine decay over ``progress`` (0..1 of the budget)."""
        warm = min(1.0, (self.step + 1) / max(1, self.config.warmup_steps))
        lr = self.config.lr * warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def columns(self, labels: torch.Tensor) -> torch.Tensor:
        """Caption indices on the text side: every caption of the batch, then random others up
        to ``text_columns`` (all captions when it is None)."""
        count = len(CAPTIONS)
        limit = self.config.text_columns
        if limit is None or limit >= count:
            return torch.arange(count, device=self.device)
        present = labels.any(0).cpu()
        others = torch.nonzero(~present).flatten()
        others = others[torch.randperm(len(others), generator=self.generator)]
        extra = others[: max(0, limit - int(present.sum()))]
        return torch.cat([torch.nonzero(present).flatten(), extra]).sort().values.to(self.device)

    def losses(self, batch: dict) -> dict[str, torch.Tensor]:
        device = self.device
        pixels = (batch["pixels"].to(device, non_blocking=True).float() - self.mean) / self.std
        labels = batch["labels"].to(device, non_blocking=True)
        dense_target = batch["dense"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            pooled, dense = forward_dense(self.model, pixels)
            columns = self.columns(labels)
            which = torch.randint(len(TEMPLATES), (len(columns),), generator=self.generator)
            other = (
                which + torch.randint(1, len(TEMPLATES), which.shape, generator=self.generator)
            ) % len(TEMPLATES)
            tokens = self.caption_tokens[which.to(device), columns]
            tokens2 = self.caption_tokens[other.to(device), columns]
            text = self.model.encode_text(torch.cat([tokens, tokens2, self.negative_tokens]))
        labels, dense_target = labels[:, columns], dense_target[..., columns]
        image = F.normalize(pooled.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        count = len(columns)
        captions, captions2 = text[:count], text[count : 2 * count]
        negatives = text[2 * count :]
        negatives = negatives.view(len(NEGATIVES), len(TEMPLATES), -1).mean(1)
        negatives = F.normalize(negatives, dim=-1)  # as TextPrompter.negative_embeddings
        scale = self.model.logit_scale.exp()
        contrastive = self.loss_fn(image, captions, scale, labels)
        # Text against text (each caption under two templates, plain ClipLoss): captions stay
        # distinct. Without it the text tower collapses the words the image tower cannot yet
        # see (shape), and then nothing ever teaches the image tower to see them.
        text_contrastive = self.loss_fn(captions, captions2, scale)

        margins = image @ captions.T - (image @ negatives.T).max(1, keepdim=True).values
        calibration = hinge(margins, labels.to(torch.int8), self.config.margin)

        scenes = (dense_target >= 0).flatten(1).any(1)
        if scenes.any():
            patches = F.normalize(dense[scenes].float(), dim=-1)  # (S, N, D)
            patch_margins = (
                patches @ captions.T - (patches @ negatives.T).max(-1, keepdim=True).values
            )
            dense_loss = hinge(patch_margins, dense_target[scenes], self.config.margin)
        else:
            dense_loss = contrastive * 0.0
        total = (
            contrastive
            + self.config.text_weight * text_contrastive
            + self.config.calibration_weight * calibration
            + self.config.dense_weight * dense_loss
        )
        return {
            "loss": total,
            "contrastive": contrastive,
            "text_contrastive": text_contrastive,
            "calibration": calibration,
            "dense": dense_loss,
        }

    def train_step(self, batch: dict, progress: float = 0.0) -> dict[str, float]:
        self.model.train()
        lr = self.set_lr(progress)
        losses = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))
        self.step += 1
        return {"lr": lr, **{k: float(v.detach()) for k, v in losses.items()}}


# -- saving -------------------------------------------------------------------------------------


def save_demo_clip(model: torch.nn.Module, path: Path = DEMO_CLIP_CHECKPOINT) -> Path:
    """fp16 safetensors of the open_clip state dict (loads with open_clip.create_model(
    DEMO_MODEL_NAME, pretrained=path) and ``load_clip("demo")``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()
    }
    metadata = {"model_name": DEMO_MODEL_NAME, "config": json.dumps(DEMO_MODEL_CONFIG)}
    save_file(state, str(path), metadata=metadata)
    return path


# -- training loop ------------------------------------------------------------------------------


def default_workers() -> int:
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def train_demo_clip(
    minutes: float,
    device: str = "cpu",
    output: Path = DEMO_CLIP_CHECKPOINT,
    seed: int = 0,
    batch_size: int | None = None,
    num_workers: int | None = None,
    lr: float = 1e-3,
    max_steps: int | None = None,
    eval_scenes: int = 50,
    log_every: int = 50,
    text_columns: int | None = -1,
    calibration_weight: float = 4.0,
    dense_weight: float = 4.0,
    init: Path | None = None,
) -> dict:
    """Train for ``minutes`` (or ``max_steps``), from random weights or the checkpoint ``init``,
    save fp16 safetensors at ``output``, evaluate on ``eval_scenes`` held-out scenes with the
    demo SAM (0: skip) and return a summary."""
    device = str(device)
    cuda = device.startswith("cuda")
    if batch_size is None:
        batch_size = 256 if cuda else 48
    if text_columns == -1:  # default: every caption on a GPU, a sample of them on a CPU
        text_columns = None if cuda else 80
    if num_workers is None:
        num_workers = default_workers()
    model = create_demo_clip(seed, init)
    config = TrainConfig(
        batch_size=batch_size,
        lr=lr,
        text_columns=text_columns,
        warmup_steps=200 if cuda else 50,
        calibration_weight=calibration_weight,
        dense_weight=dense_weight,
    )
    trainer = DemoClipTrainer(model, config, device)
    visual = model.visual
    stream = PairStream(seed, int(visual.image_size[0]), int(visual.grid_size[0]))
    loader = DataLoader(
        stream,
        batch_size=batch_size,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers else None,
        pin_memory=cuda,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers else None,
    )
    budget = minutes * 60.0
    logger.info(
        "training %s on %s: batch %d, %d data workers, %.1f min",
        DEMO_MODEL_NAME,
        device,
        batch_size,
        num_workers,
        minutes,
    )
    start = time.perf_counter()
    history: list[dict] = []
    for batch in loader:
        elapsed = time.perf_counter() - start
        if elapsed >= budget or (max_steps is not None and trainer.step >= max_steps):
            break
        progress = elapsed / budget if max_steps is None else trainer.step / max_steps
        history.append(trainer.train_step(batch, progress))
        if trainer.step % log_every == 0:
            tail = history[-log_every:]
            logger.info(
                "step %d  %.0fs  %.2f steps/s  loss %.3f (clip %.3f, calib %.3f, dense %.3f)  "
                "lr %.2e  scale %.1f",
                trainer.step,
                elapsed,
                trainer.step / max(elapsed, 1e-9),
                *(float(np.mean([h[k] for h in tail])) for k in ("loss", "contrastive")),
                *(float(np.mean([h[k] for h in tail])) for k in ("calibration", "dense")),
                history[-1]["lr"],
                float(model.logit_scale.exp()),
            )
    seconds = time.perf_counter() - start
    del loader
    save_demo_clip(model.eval(), output)
    tail = history[-50:]
    summary = {
        "steps": trainer.step,
        "batch_size": batch_size,
        "seconds": round(seconds, 1),
        "steps_per_second": round(trainer.step / max(seconds, 1e-9), 3),
        "final_loss": float(np.mean([h["loss"] for h in tail])) if tail else float("nan"),
        "final_contrastive": float(np.mean([h["contrastive"] for h in tail]))
        if tail
        else float("nan"),
        "output": str(output),
        "bytes": Path(output).stat().st_size,
    }
    if eval_scenes:
        summary["eval"] = evaluate_bundle(Path(output), eval_scenes)
    logger.info("summary: %s", json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="training time budget")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, ...")
    parser.add_argument("--output", type=Path, default=DEMO_CLIP_CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 cuda, 48 cpu")
    parser.add_argument(
        "--text-columns",
        type=int,
        default=-1,
        help="captions per step (default: all on cuda, 80 on cpu; 0: all)",
    )
    parser.add_argument("--num-workers", type=int, default=None, help="default: min(8, cpus-1)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--eval-scenes", type=int, default=50, help="held-out scenes; 0: skip")
    parser.add_argument("--calibration-weight", type=float, default=4.0)
    parser.add_argument("--dense-weight", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this checkpoint (fine-tune)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    return train_demo_clip(
        args.minutes,
        device=args.device,
        output=args.output,
        seed=args.seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        lr=args.lr,
        max_steps=args.max_steps,
        eval_scenes=args.eval_scenes,
        text_columns=args.text_columns or None,
        calibration_weight=args.calibration_weight,
        dense_weight=args.dense_weight,
        init=args.init,
    )


if __name__ == "__main__":
    main()
