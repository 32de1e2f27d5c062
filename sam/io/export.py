"""Writing masks: ONE writer of SA-1B per-image JSON, COCO JSON and PNG masks.

Two kinds of masks are written: the automatic generator's records (dicts, see
:meth:`sam.automatic.AutomaticMaskGenerator.generate`, in any output mode) and the page's
accepted annotations; both become the same SA-1B and COCO layouts through :func:`sa1b_image`,
:func:`sa1b_annotation` and :func:`coco_dataset`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam.io.masks import coco_encode_rle, masks_to_rle, rle_to_mask
from sam.io.overlay import overlay_masks

Record = dict[str, Any]


# -- the layouts -------------------------------------------------------------------------------


def sa1b_image(
    image_id: int, file_name: str, height: int, width: int, annotations: list[dict[str, Any]]
) -> dict[str, Any]:
    """One image's file as in the SA-1B release: {"image": {...}, "annotations": [...]}."""
    return {
        "image": {"image_id": image_id, "width": width, "height": height, "file_name": file_name},
        "annotations": annotations,
    }


def sa1b_annotation(
    annotation_id: int,
    rle: dict[str, Any],
    bbox: list[float],
    area: int,
    predicted_iou: float,
    stability_score: float | None,
    point_coords: list[list[float]],
    crop_box: list[float],
    **extra: Any,
) -> dict[str, Any]:
    """One SA-1B annotation: a JSON-ready COCO RLE, XYWH ``bbox``, ``area`` in pixels, SAM's
    predicted IoU and stability score (None where unknown), the prompt's points, the crop it was
    found in, and any ``extra`` fields (a label, say)."""
    return {
        "id": annotation_id,
        "segmentation": rle,
        "bbox": [float(v) for v in bbox],
        "area": int(area),
        "predicted_iou": float(predicted_iou),
        "stability_score": None if stability_score is None else float(stability_score),
        "crop_box": [float(v) for v in crop_box],
        "point_coords": [[float(x), float(y)] for x, y in point_coords],
        **extra,
    }


def coco_dataset(
    images: list[dict[str, Any]], annotations: list[dict[str, Any]], labels: list[str]
) -> dict[str, Any]:
    """A COCO instance file: ``images`` ({"id", "file_name", "height", "width"}),
    ``annotations`` (with "category_id" numbered from 1 in the order of ``labels``)."""
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in enumerate(labels, start=1)],
    }


# -- automatic-mask records --------------------------------------------------------------------


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
    """One image's records as an SA-1B file."""
    annotations = [
        sa1b_annotation(
            index,
            record_rle(record),
            record["bbox"],
            record["area"],
            record["predicted_iou"],
            record["stability_score"],
            record["point_coords"],
            record["crop_box"],
        )
        for index, record in enumerate(records)
    ]
    return sa1b_image(image_id, file_name, height, width, annotations)


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


# -- files -------------------------------------------------------------------------------------


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as JSON, atomically (a half-written file never has the final name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload))
    partial.replace(path)
    return path


def mask_png(mask: np.ndarray) -> bytes:
    """An (H, W) bool mask as an 8-bit PNG: 255 inside, 0 outside."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()


def save_mask_pngs(records: list[Record], folder: str | os.PathLike) -> list[Path]:
    """One PNG per record's mask (:func:`mask_png`), named ``{index}.png``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, record in enumerate(records):
        path = folder / f"{index}.png"
        path.write_bytes(mask_png(record_mask(record)))
        paths.append(path)
    return paths


def overlay(image: np.ndarray, records: list[Record]) -> np.ndarray:
    """(H, W, 3) uint8 image with each record's mask in its own colour, largest drawn first so
    that small masks stay visible."""
    order = sorted(range(len(records)), key=lambda i: -int(records[i]["area"]))
    return overlay_masks(image, [record_mask(records[i]) for i in order])


def save_overlay(path: str | os.PathLike, image: np.ndarray, records: list[Record]) -> Path:
    """Write :func:`overlay` as an image file (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay(image, records)).save(path)
    return path
