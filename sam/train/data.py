"""Training and evaluation data: (image, instance masks) samples from SA-1B style folders, COCO
instance files and the synthetic scene generator.

Every dataset yields :class:`Sample` records: ``image`` (H, W, 3) uint8 RGB and ``masks``, a list
of (H, W) bool arrays. Bad data (a missing or unreadable image, an annotation that does not
decode, an empty mask, a mask covering the whole image) is reported with a logging warning that
names the file or annotation, and skipped; the run goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sam.io.images import IMAGE_SUFFIXES, read_image
from sam.io.masks import pycocotools_mask
from sam.train.scenes import generate_scene, scene_dataset, whole_masks

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """``image`` (H, W, 3) uint8 RGB; ``masks`` list of (H, W) bool; ``source`` names the file."""

    image: np.ndarray
    masks: list[np.ndarray]
    source: str = ""


def _read_or_skip(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB, or None (with a warning) if the file is missing or unreadable."""
    try:
        return read_image(path)
    except ValueError as error:
        logger.warning("skipping image %s: %s", path, error)
        return None


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygon list, uncompressed or compressed RLE) -> (H, W) bool."""
    mask_utils = pycocotools_mask()
    if isinstance(segmentation, list):  # polygons
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"mask is {mask.shape}, image is {(height, width)}")
    return mask


def valid_mask(mask: np.ndarray, where: str) -> bool:
    """False (with a warning naming ``where``) for an empty mask or one covering the image."""
    area = int(mask.sum())
    if area == 0:
        logger.warning("skipping empty mask: %s", where)
        return False
    if area == mask.size:
        logger.warning("skipping mask covering the whole image: %s", where)
        return False
    return True


def decode_annotations(
    annotations: list[dict], height: int, width: int, source: str
) -> list[np.ndarray]:
    """Valid (H, W) bool masks of COCO-style ``annotations``; bad ones are warned about and
    skipped."""
    pycocotools_mask()  # a missing pycocotools is an error, not a bad annotation
    masks = []
    for index, annotation in enumerate(annotations):
        where = f"{source} annotation {annotation.get('id', index)}"
        try:
            mask = decode_segmentation(annotation["segmentation"], height, width)
        except Exception as error:  # pycocotools raises many kinds on corrupt RLE
            logger.warning("skipping undecodable mask: %s (%s)", where, error)
            continue
        if valid_mask(mask, where):
            masks.append(mask)
    return masks


class SA1BDataset:
    """An SA-1B style folder: ``name.jpg`` next to ``name.json`` holding
    {"image": {"file_name", "height", "width"}, "annotations": [{"segmentation": RLE}, ...]}."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.annotation_files = sorted(self.root.glob("*.json"))

    def __len__(self) -> int:
        return len(self.annotation_files)

    def __iter__(self) -> Iterator[Sample]:
        for path in self.annotation_files:
            sample = self.load(path)
            if sample is not None:
                yield sample

    def load(self, annotation_path: Path) -> Sample | None:
        """The sample of one annotation file, or None (warned) if unusable."""
        try:
            record = json.loads(annotation_path.read_text())
            info = record.get("image", {})
            annotations = record["annotations"]
        except (OSError, ValueError, KeyError, AttributeError) as error:
            logger.warning("skipping annotation file %s: %s", annotation_path, error)
            return None
        image_path = self._image_path(annotation_path, info)
        image = _read_or_skip(image_path)
        if image is None:
            return None
        height, width = image.shape[:2]
        masks = decode_annotations(annotations, height, width, str(annotation_path))
        if not masks:
            logger.warning("skipping %s: no valid masks", annotation_path)
            return None
        return Sample(image, masks, str(image_path))

    def _image_path(self, annotation_path: Path, info: dict) -> Path:
        if "file_name" in info:
            return self.root / info["file_name"]
        for suffix in IMAGE_SUFFIXES:
            candidate = annotation_path.with_suffix(suffix)
            if candidate.exists():
                return candidate
        return annotation_path.with_suffix(".jpg")


class CocoDataset:
    """A COCO instance file (polygons or RLE) with its image folder; crowd annotations are
    skipped."""

    def __init__(self, annotation_file: str | Path, image_dir: str | Path) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        data = json.loads(self.annotation_file.read_text())
        self.images: list[dict] = data["images"]
        self.annotations: dict[int, list[dict]] = {}
        for annotation in data.get("annotations", []):
            if not annotation.get("iscrowd", 0):
                self.annotations.setdefault(annotation["image_id"], []).append(annotation)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Sample]:
        for info in self.images:
            sample = self.load(info)
            if sample is not None:
                yield sample

    def load(self, info: dict) -> Sample | None:
        """The sample of one COCO image record, or None (warned) if unusable."""
        image_path = self.image_dir / info["file_name"]
        image = _read_or_skip(image_path)
        if image is None:
            return None
        height, width = image.shape[:2]
        source = f"{self.annotation_file} image {info['id']}"
        masks = decode_annotations(self.annotations.get(info["id"], []), height, width, source)
        if not masks:
            logger.warning("skipping %s: no valid masks", source)
            return None
        return Sample(image, masks, str(image_path))


class SceneDataset:
    """``count`` generated scenes (see :mod:`sam.train.scenes`); the masks are every object with
    its parts (:func:`whole_masks`), so parts and their wholes both appear."""

    def __init__(self, seed: int, count: int, size: int = 128) -> None:
        self.seed, self.count, self.size = seed, count, size

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Sample]:
        for index, scene in enumerate(scene_dataset(self.seed, self.count, self.size)):
            where = f"scene ({self.seed}, {index})"
            masks = [m for m in whole_masks(scene) if valid_mask(m, where)]
            if masks:
                yield Sample(scene.image, masks, where)


class SceneIndex(torch.utils.data.Dataset):
    """Map-style view of :class:`SceneDataset`: item ``i`` is the sample of scene ``(seed, i)``,
    or None when it has no valid mask, so a DataLoader's workers can generate scenes in
    parallel while the order stays that of ``SceneDataset``."""

    def __init__(self, seed: int, count: int, size: int = 128) -> None:
        self.seed, self.count, self.size = seed, count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample | None:
        if not 0 <= index < self.count:
            raise IndexError(index)
        scene = generate_scene(np.random.default_rng((self.seed, index)), self.size)
        where = f"scene ({self.seed}, {index})"
        masks = [m for m in whole_masks(scene) if valid_mask(m, where)]
        return Sample(scene.image, masks, where) if masks else None


def _collate_samples(items: list[Sample | None]) -> list[Sample]:
    return [item for item in items if item is not None]


def scene_loader(
    seed: int,
    count: int,
    images_per_step: int = 1,
    num_workers: int = 0,
    size: int = 128,
    prefetch_factor: int = 4,
) -> torch.utils.data.DataLoader:
    """Groups of up to ``images_per_step`` scene samples (lists of :class:`Sample`, in scene
    order; scenes without a valid mask are left out), generated by ``num_workers`` worker
    processes (0: in this process). The same seed and count give the same groups whatever the
    number of workers."""
    return torch.utils.data.DataLoader(
        SceneIndex(seed, count, size),
        batch_size=images_per_step,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_samples,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
