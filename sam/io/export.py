"""Writing automatic-mask records: SA-1B per-image JSON, COCO results JSON, PNG masks, overlays.

Records are those of :meth:`sam.automatic.AutomaticMaskGenerator.generate`, in any output mode.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.io.masks import coco_encode_rle, masks_to_rle, rle_to_mask

Record = dict[str, Any]


def record_rle(record: Record) -> dict[str, Any]:
    """A record's segmentation (binary mask or either RLE) as a JSON-ready COCO RLE."""
    segmentation = record["segmentation"]
    if isinstance(segmentation, np.ndarray):
        segmentation = masks_to_rle(segmentation[None].astype(bool))[0]
    return coco_encode_rle(segmentation)


def record_mask(record: Record) -> np.ndarray:
    """A record's segmentation as an (H, W) bool mask."""
    segmentation = record["segmentation"]
    if isinstance(segmentation, np.ndarray):
        return segmentation.astype(bool)
    return rle_to_mask(segmentation)


def to_sa1b(
    records: list[Record], image_id: int, file_name: str, height: int, width: int
) -> dict[str, Any]:
    """One image's annotations as in the SA-1B release: {"image": ..., "annotations": [...]}."""
    return {
        "image": {"image_id": image_id, "width": width, "height": height, "file_name": file_name},
        "annotations": [
            {
                "id": index,
                "segmentation": record_rle(record),
                "bbox": [float(v) for v in record["bbox"]],
                "area": int(record["area"]),
                "predicted_iou": float(record["predicted_iou"]),
                "stability_score": float(record["stability_score"]),
                "crop_box": [float(v) for v in record["crop_box"]],
                "point_coords": [[float(x), float(y)] for x, y in record["point_coords"]],
            }
            for index, record in enumerate(records)
        ],
    }


def to_coco_results(
    records: list[Record], image_id: int, category_id: int = 1, score_key: str = "predicted_iou"
) -> list[dict[str, Any]]:
    """COCO detection results (``segm`` and ``bbox``), loadable with ``COCO.loadRes``."""
    return [
        {
            "image_id": image_id,
            "category_id": category_id,
            "segmentation": record_rle(record),
            "bbox": [float(v) for v in record["bbox"]],
            "score": float(record[score_key]),
        }
        for record in records
    ]


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON, atomically (a half-written file never has the final name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload))
    partial.replace(path)
    return path


def save_mask_pngs(records: list[Record], folder: str | os.PathLike) -> list[Path]:
    """One 8-bit PNG per mask (255 inside, 0 outside), named ``{index}.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, record in enumerate(records):
        path = folder / f"{index}.png"
        Image.fromarray(record_mask(record).astype(np.uint8) * 255).save(path)
        paths.append(path)
    return paths


def mask_colors(count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) uint8 random bright colours, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(64, 256, size=(count, 3), dtype=np.uint8)


def overlay(
    image: np.ndarray, records: list[Record], alpha: float = 0.5, seed: int = 0
) -> np.ndarray:
    """(H, W, 3) uint8 image with each mask blended in its own colour, largest drawn first so
    that small masks stay visible."""
    canvas = image[..., :3].astype(np.float32)
    order = sorted(range(len(records)), key=lambda i: -int(records[i]["area"]))
    colors = mask_colors(len(records), seed)
    for i in order:
        mask = record_mask(records[i])
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * colors[i]
    return canvas.round().clip(0, 255).astype(np.uint8)


def save_overlay(
    path: str | os.PathLike, image: np.ndarray, records: list[Record], alpha: float = 0.5
) -> Path:
    """Write :func:`overlay` as an image file (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, records, alpha)).save(path)
    return path
