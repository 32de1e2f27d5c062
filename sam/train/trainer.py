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
per step on the CPU. After a learning-rate drop the steps are small, so the average then adds
little.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sam.modeling.sam import Sam
from sam.train.batches import make_batch, simulate
from sam.train.config import TrainConfig
from sam.train.data import Sample
from sam.train.optim import add_drop_path, lr_factor, parameter_groups, set_trainable
from sam.weights.checkpoint import read_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.pt"
EMA_FILE = "model_ema.safetensors"


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
