"""Train the tiny bundled CLIP (:data:`prompts.clip_model.DEMO_MODEL_NAME`) for the text branch
on generated scenes, and measure the text branch with the bundled demo SAM on held-out scenes.

    python -m sam.train.demo_clip --minutes 6 --device cuda

writes ``assets/demo/clip_demo.safetensors`` (fp16; ``load_clip("demo")`` loads it).

Training pairs come from :mod:`sam.train.scenes`, whose captions are the ground truth:

* whole scenes (what the global existence score sees) labelled with every caption present;
* masked crops of single objects made with :func:`prompts.text_prompter.masked_crop` (what the
  verification step sees), the object with its parts, or its visible pixels only, with the
  mask slightly dilated or eroded at random as SAM's masks are;
* background crops (every object greyed out), positive for no caption.

Losses: (1) open_clip's :class:`~open_clip.ClipLoss`, made label-aware: the text side is every
caption of the generator (one random prompt template each step), an image may contain several
captions and a caption may appear in several images, so each row's target is spread over its
positives (with a one-to-one pairing it is exactly ``ClipLoss``); (2) plain ``ClipLoss`` between
each caption under two different templates, which keeps captions distinct (without it the text
tower learns to ignore the shape word before the image tower can see shapes, and shape is then
never learned); (3) a hinge that calibrates
against the TextPrompter's negative texts ("", "background", ...), averaged over the same
templates as at inference: a present caption must beat the best negative by ``margin`` and an
absent one must stay ``margin`` below it, on the global embedding of every image and on every
MaskCLIP patch feature of the scenes (a patch is positive for the caption of the object covering
at least half of it, negative for captions with no object in it, ignored otherwise). The text
branch decides "found" by exactly these comparisons.
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
from scipy import ndimage
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from prompts.clip_model import (
    DEMO_CLIP_CHECKPOINT,
    DEMO_MODEL_CONFIG,
    DEMO_MODEL_NAME,
    ClipModel,
    forward_dense,
    register_demo_config,
)
from prompts.text_prompter import (
    NEGATIVES,
    TEMPLATES,
    TextPrompter,
    masked_crop,
    passing_prompt_set,
)
from sam.train.scenes import Scene, all_captions, generate_scene, scene_dataset, whole_masks

logger = logging.getLogger(__name__)

CAPTIONS: tuple[str, ...] = tuple(all_captions())
CAPTION_INDEX = {c: i for i, c in enumerate(CAPTIONS)}
HELD_OUT_SEED = 1  # scene_dataset(1, n): the demo SAM's held-out scenes; training never uses them
SCENE_SIZE = 128
KIND_SCENE, KIND_CROP, KIND_BACKGROUND = 0, 1, 2


# -- data ---------------------------------------------------------------------------------------


def to_pixels(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (H, W, 3) -> (3, size, size) float in [0, 1], resized as ClipModel.preprocess does
    (normalisation is left to the training step)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    if tuple(x.shape[2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True).clamp(0.0, 1.0)
    return x[0]


def _jitter(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mask dilated or eroded by 0-2 pixels (never emptied), like an imperfect SAM mask."""
    steps = int(rng.integers(-2, 3))
    if steps > 0:
        return ndimage.binary_dilation(mask, iterations=steps)
    if steps < 0:
        eroded = ndimage.binary_erosion(mask, iterations=-steps)
        if eroded.sum() >= 0.3 * mask.sum():
            return eroded
    return mask


def _dense_target(scene: Scene, wholes: np.ndarray, grid: int) -> torch.Tensor:
    """(grid * grid, C) int8: 1 where the caption's visible pixels cover >= half the patch,
    0 where no object of that caption (with its parts) touches a tenth of it, -1 otherwise."""
    visible = np.stack([o.mask for o in scene.objects]).astype(np.float32)
    cover = F.adaptive_avg_pool2d(torch.from_numpy(np.stack([visible, wholes])), grid)
    visible_cover, whole_cover = cover[0].flatten(1), cover[1].flatten(1)  # (objects, N)
    by_caption = torch.zeros(len(scene.objects), len(CAPTIONS))
    for i, obj in enumerate(scene.objects):
        by_caption[i, CAPTION_INDEX[obj.caption]] = 1.0
    v = visible_cover.T @ by_caption  # (N, C)
    w = whole_cover.T @ by_caption
    target = torch.full(v.shape, -1, dtype=torch.int8)
    target[w < 0.1] = 0
    target[v >= 0.5] = 1
    return target


def scene_items(scene: Scene, rng: np.random.Generator, size: int, grid: int) -> list[dict]:
    """Training items of one scene: the scene, a masked crop per object (with its parts), some
    visible-only crops and sometimes a background crop."""
    wholes = whole_masks(scene)
    descendants: list[set[int]] = [{i} for i in range(len(scene.objects))]
    for i in range(len(scene.objects) - 1, -1, -1):
        parent = scene.objects[i].parent
        if parent is not None:
            descendants[parent] |= descendants[i]
    ignore_dense = torch.full((grid * grid, len(CAPTIONS)), -1, dtype=torch.int8)

    def item(pixels, positives, kind, dense=ignore_dense) -> dict:
        labels = torch.zeros(len(CAPTIONS), dtype=torch.bool)
        for caption in positives:
            labels[CAPTION_INDEX[caption]] = True
        return {"pixels": pixels.half(), "labels": labels, "dense": dense, "kind": kind}

    items = [
        item(
            to_pixels(scene.image, size),
            {o.caption for o in scene.objects},
            KIND_SCENE,
            _dense_target(scene, wholes, grid),
        )
    ]
    for i, obj in enumerate(scene.objects):
        crop = masked_crop(scene.image, _jitter(wholes[i], rng))
        if crop is not None:
            captions = {scene.objects[j].caption for j in descendants[i]}
            items.append(item(to_pixels(crop, size), captions, KIND_CROP))
        if len(descendants[i]) > 1 and rng.random() < 0.5:
            crop = masked_crop(scene.image, _jitter(obj.mask, rng))
            if crop is not None:
                items.append(item(to_pixels(crop, size), {obj.caption}, KIND_CROP))
    if rng.random() < 0.3:
        background = ~wholes.any(0)
        h, w = background.shape
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        box = np.zeros_like(background)
        box[y0 : y0 + int(rng.integers(h // 4, h)), x0 : x0 + int(rng.integers(w // 4, w))] = True
        crop = masked_crop(scene.image, background & box) if (background & box).sum() > 16 else None
        if crop is not None:
            items.append(item(to_pixels(crop, size), set(), KIND_BACKGROUND))
    return items


class PairStream(IterableDataset):
    """An endless stream of training items; each DataLoader worker draws its own scenes from
    ``default_rng((seed, 1000 + worker, index))`` (never the held-out ``(HELD_OUT_SEED, i)``)."""

    def __init__(self, seed: int, image_size: int, grid: int) -> None:
        self.seed, self.image_size, self.grid = seed, image_size, grid

    def __iter__(self):
        info = get_worker_info()
        worker = 0 if info is None else info.id
        index = 0
        while True:
            rng = np.random.default_rng((self.seed, 1000 + worker, index))
            index += 1
            scene = generate_scene(rng, SCENE_SIZE)
            if scene.objects:
                yield from scene_items(scene, rng, self.image_size, self.grid)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def fixed_batch(seed: int, scenes: int, image_size: int = 96, grid: int = 12) -> dict:
    """The items of ``scenes`` generated scenes, collated (tests, quick checks)."""
    items = []
    for index in range(scenes):
        rng = np.random.default_rng((seed, 2000, index))
        items += scene_items(generate_scene(rng, SCENE_SIZE), rng, image_size, grid)
    return torch.utils.data.default_collate(items)


# -- model and loss -----------------------------------------------------------------------------


def create_demo_clip(seed: int = 0, init: Path | None = None) -> torch.nn.Module:
    """The demo CLIP, fp32: random (``seed``), or the weights of the checkpoint ``init`` (to
    fine-tune, e.g. the bundled one)."""
    import open_clip

    register_demo_config()
    torch.manual_seed(seed)
    pretrained = str(init) if init is not None else None
    return open_clip.create_model(DEMO_MODEL_NAME, pretrained=pretrained).float()


def _clip_loss_class():
    from open_clip import ClipLoss

    class LabelAwareClipLoss(ClipLoss):
        """open_clip's ClipLoss with a (images, texts) bool label matrix: each row's target (and
        each column's, for text -> image) is spread evenly over its positives; rows without a
        positive are left out. With a one-to-one pairing it equals ClipLoss."""

        def forward(self, image_features, text_features, logit_scale, labels=None):
            if labels is None:
                return super().forward(image_features, text_features, logit_scale)
            per_image, per_text = self.get_logits(image_features, text_features, logit_scale)
            positives = labels.float()
            return (_soft_ce(per_image, positives) + _soft_ce(per_text, positives.T)) / 2

    return LabelAwareClipLoss


def _soft_ce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    rows = positives.sum(1) > 0
    if not rows.any():
        return logits.sum() * 0.0
    target = positives[rows] / positives[rows].sum(1, keepdim=True)
    return F.cross_entropy(logits[rows], target)


def _hinge(margins: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Positives (target 1) must reach +delta, negatives (0) stay under -delta; -1 ignored.
    Each side is averaged over the pairs that still violate, so the few hard negatives (a red
    square for "red circle") are not drowned by the many easy ones."""
    losses = []
    for value, sign in ((1, 1.0), (0, -1.0)):
        violation = F.relu(delta - sign * margins[target == value])
        if violation.numel():
            losses.append(violation.sum() / (violation > 0).sum().clamp(min=1))
    return sum(losses) if losses else margins.sum() * 0.0


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
    """One optimisation step at a time on collated items (see :func:`scene_items`)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, device: str = "cpu") -> None:
        import open_clip

        self.model = model.to(device).train()
        self.config = config
        self.device = torch.device(device)
        self.loss_fn = _clip_loss_class()()
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
        calibration = _hinge(margins, labels.to(torch.int8), self.config.margin)

        scenes = (dense_target >= 0).flatten(1).any(1)
        if scenes.any():
            patches = F.normalize(dense[scenes].float(), dim=-1)  # (S, N, D)
            patch_margins = (
                patches @ captions.T - (patches @ negatives.T).max(-1, keepdim=True).values
            )
            dense_loss = _hinge(patch_margins, dense_target[scenes], self.config.margin)
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


# -- evaluation ---------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def evaluate_text_branch(
    clip: ClipModel,
    predictor,
    scenes,
    absent_per_scene: int = 2,
    seed: int = 0,
    **prompter_options,
) -> dict:
    """The text branch (a real :class:`TextPrompter`) on generated scenes.

    Every object whose caption is unique in its scene is asked for by its caption; its true mask
    is the object with its parts. ``absent_per_scene`` captions no object of the scene has are
    asked for too. Returns fractions: ``present_iou70`` (found, and the best returned mask has
    IoU >= 0.7), ``present_iou30`` (found, IoU >= 0.3: the right object, whatever SAM's mask
    quality), ``present_found``, ``present_any_iou70`` (one of the three masks >= 0.7),
    ``absent_not_found``, with the counts and the mean seconds per query.
    """
    prompter = TextPrompter(clip, predictor, **prompter_options)
    rng = np.random.default_rng(seed)
    ious, any_ious, found, absent_ok = [], [], [], []
    start, queries = time.perf_counter(), 0
    for scene in scenes:
        wholes = whole_masks(scene)
        names = [o.caption for o in scene.objects]
        for i, name in enumerate(names):
            if names.count(name) != 1:
                continue
            result = prompter.segment(scene.image, name)
            queries += 1
            found.append(result.found)
            ious.append(_iou(result.best.mask, wholes[i]) if result.found else 0.0)
            any_ious.append(
                max((_iou(c.mask, wholes[i]) for c in result.candidates), default=0.0)
                if result.found
                else 0.0
            )
        missing = [c for c in CAPTIONS if c not in set(names)]
        for index in rng.choice(len(missing), size=absent_per_scene, replace=False):
            absent_ok.append(not prompter.segment(scene.image, missing[index]).found)
            queries += 1
    ious_a, any_a = np.array(ious), np.array(any_ious)
    return {
        "present": len(ious),
        "present_iou70": float((ious_a >= 0.7).mean()) if ious else float("nan"),
        "present_iou30": float((ious_a >= 0.3).mean()) if ious else float("nan"),
        "present_found": float(np.mean(found)) if found else float("nan"),
        "present_any_iou70": float((any_a >= 0.7).mean()) if ious else float("nan"),
        "present_mean_iou": float(ious_a.mean()) if ious else float("nan"),
        "absent": len(absent_ok),
        "absent_not_found": float(np.mean(absent_ok)) if absent_ok else float("nan"),
        "seconds_per_query": (time.perf_counter() - start) / max(1, queries),
    }


def choose_text_options(
    clip: ClipModel,
    predictor,
    scenes,
    thresholds: tuple[float, ...] = (0.0, 0.05, 0.1, 0.12, 0.15, 0.17, 0.2),
    iou_weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
    seed: int = 0,
    **prompter_options,
) -> tuple[dict, list[dict]]:
    """TextPrompter's ``verify_threshold`` and ``iou_weight`` that maximise the text issue's two
    figures, named object picked (best mask IoU >= 0.7) plus absent object not found, on
    ``scenes`` (use validation scenes, not the held-out ones). Runs every query once with the
    gates open, keeps every verified prompt set, and then chooses the set and applies the gates
    exactly as :meth:`TextPrompter.segment` does without its proposal fallback
    (``proposal_points=None``; whether the fallback helps is measured on its own);
    ``prompter_options`` go to the TextPrompter (e.g. ``refine_rounds``); returns (best
    options, table)."""
    prompter = TextPrompter(
        clip,
        predictor,
        **{
            **prompter_options,
            "existence_threshold": -np.inf,
            "verify_threshold": -np.inf,
            "proposal_points": None,
        },
    )
    rng = np.random.default_rng(seed)
    present, absent = [], []  # (evidence margin, alternatives, {id(candidate): true IoU})
    for scene in scenes:
        wholes = whole_masks(scene)
        names = [o.caption for o in scene.objects]
        for i, name in enumerate(names):
            if names.count(name) == 1:
                result = prompter.segment(scene.image, name)
                truth = {
                    id(c): _iou(c.mask, wholes[i]) for _, cs in result.alternatives for c in cs
                }
                present.append((result.evidence.margin, result.alternatives, truth))
        missing = [c for c in CAPTIONS if c not in set(names)]
        for index in rng.choice(len(missing), size=2, replace=False):
            result = prompter.segment(scene.image, missing[index])
            absent.append((result.evidence.margin, result.alternatives, {}))

    def shown(query, threshold: float, weight: float):
        """The candidate segment() would return first, or None for "not found"."""
        evidence, alternatives, _ = query
        chosen = passing_prompt_set(alternatives, weight, threshold) if evidence > 0 else None
        return chosen[1][0] if chosen is not None else None

    table = []
    for threshold in thresholds:
        for weight in iou_weights:
            ious = []
            for query in present:
                best = shown(query, threshold, weight)
                ious.append(query[2][id(best)] if best is not None else 0.0)
            ious = np.array(ious)
            rejected = [shown(query, threshold, weight) is None for query in absent]
            table.append(
                {
                    "verify_threshold": threshold,
                    "iou_weight": weight,
                    "present_iou70": float((ious >= 0.7).mean()),
                    "present_iou30": float((ious >= 0.3).mean()),
                    "absent_not_found": float(np.mean(rejected)),
                }
            )
    best = max(table, key=lambda r: r["present_iou70"] + r["absent_not_found"])
    return {"verify_threshold": best["verify_threshold"], "iou_weight": best["iou_weight"]}, table


def evaluate_bundle(
    clip_path: Path = DEMO_CLIP_CHECKPOINT, scenes: int = 50, **prompter_options
) -> dict:
    """Held-out figures of the saved CLIP with the bundled demo SAM (CPU)."""
    from prompts.clip_model import load_clip
    from sam import SamPredictor, load_sam

    clip = load_clip(DEMO_MODEL_NAME, pretrained=str(clip_path))
    predictor = SamPredictor(load_sam("demo", device="cpu"))
    held_out = scene_dataset(HELD_OUT_SEED, scenes, SCENE_SIZE)
    return evaluate_text_branch(clip, predictor, held_out, **prompter_options)


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
        worker_init_fn=_worker_init if num_workers else None,
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
