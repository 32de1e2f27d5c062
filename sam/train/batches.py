"""Batches of samples at the model's input size, and the paper's interactive simulation run on
a batch on the model's device: points from the error region, noisy boxes, the previous logits
fed back as mask prompts, and the loss over every iteration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sam.modeling.sam import Sam
from sam.modeling.transforms import ResizeLongestSide
from sam.train.config import TrainConfig
from sam.train.data import Sample
from sam.train.losses import resize_targets, sam_loss
from sam.train.simulation import BOX_NOISE_FRACTION, BOX_NOISE_MAX, simulation_schedule


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
