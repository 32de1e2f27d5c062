"""Training data for the tiny demo CLIP (:mod:`prompts.train_clip`): items drawn from the
generated scenes of :mod:`sam.train.scenes`, whose captions are the ground truth:

* whole scenes (what the global existence score sees) labelled with every caption present, with
  a per-patch target for the dense features;
* masked crops of single objects made with :func:`prompts.text_verification.masked_crop` (what
  the verification step sees), the object with its parts, or its visible pixels only, with the
  mask slightly dilated or eroded at random as SAM's masks are;
* background crops (every object greyed out), positive for no caption.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import IterableDataset, get_worker_info

from prompts.text_verification import masked_crop
from sam.train.scenes import Scene, all_captions, generate_scene, whole_masks

CAPTIONS: tuple[str, ...] = tuple(all_captions())
CAPTION_INDEX = {c: i for i, c in enumerate(CAPTIONS)}
HELD_OUT_SEED = 1  # scene_dataset(1, n): the demo SAM's held-out scenes; training never uses them
SCENE_SIZE = 128
KIND_SCENE, KIND_CROP, KIND_BACKGROUND = 0, 1, 2


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


def worker_init(_: int) -> None:
    torch.set_num_threads(1)


def fixed_batch(seed: int, scenes: int, image_size: int = 96, grid: int = 12) -> dict:
    """The items of ``scenes`` generated scenes, collated (tests, quick checks)."""
    items = []
    for index in range(scenes):
        rng = np.random.default_rng((seed, 2000, index))
        items += scene_items(generate_scene(rng, SCENE_SIZE), rng, image_size, grid)
    return torch.utils.data.default_collate(items)
