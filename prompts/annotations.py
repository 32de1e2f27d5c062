"""Accepted masks with their labels, exported as SA-1B JSON (one file per image), COCO JSON (RLE
segmentations) and PNG masks through the project's one writer, :mod:`sam.io.export`."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from sam.io.export import coco_dataset, mask_png, sa1b_annotation, sa1b_image
from sam.io.masks import (
    area_from_rle,
    bbox_from_rle,
    coco_encode_rle,
    masks_to_rle,
    rle_to_mask,
    to_compressed_rle,
)


@dataclass(frozen=True)
class AnnotatedImage:
    """An image annotations refer to; ``image_id`` starts at 1 as in COCO."""

    image_id: int
    file_name: str
    height: int
    width: int


@dataclass(frozen=True)
class Annotation:
    """One accepted mask, stored compactly as COCO RLE. ``score`` is SAM's predicted IoU;
    ``stability_score`` is known for masks from segment everything (None for hand-made ones);
    ``point_coords`` are the prompt points ([[x, y], ...]); ``source`` is "manual" or
    "automatic"."""

    annotation_id: int
    image_id: int
    label: str
    rle: dict  # {"size": [H, W], "counts": str}
    score: float
    stability_score: float | None = None
    point_coords: tuple[tuple[float, float], ...] = ()
    source: str = "manual"

    @classmethod
    def from_mask(
        cls,
        annotation_id: int,
        image_id: int,
        label: str,
        mask: np.ndarray,
        score: float,
        point_coords: tuple[tuple[float, float], ...] = (),
    ) -> Annotation:
        rle = coco_encode_rle(masks_to_rle(mask[None].astype(bool))[0])
        return cls(annotation_id, image_id, label, rle, float(score), None, point_coords)

    @classmethod
    def from_record(cls, annotation_id: int, image_id: int, label: str, record: dict) -> Annotation:
        """From an automatic-mask record whose segmentation is a COCO RLE with str counts."""
        rle = {
            "size": list(record["segmentation"]["size"]),
            "counts": record["segmentation"]["counts"],
        }
        points = tuple((float(x), float(y)) for x, y in record.get("point_coords", ()))
        return cls(
            annotation_id,
            image_id,
            label,
            rle,
            float(record["predicted_iou"]),
            float(record["stability_score"]),
            points,
            "automatic",
        )

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool."""
        return rle_to_mask(self.rle)

    @property
    def area(self) -> int:
        return area_from_rle(self.rle)

    @property
    def bbox(self) -> list[float]:
        """COCO XYWH."""
        return bbox_from_rle(self.rle)

    def pycoco_rle(self) -> dict:
        """The RLE in pycocotools' own form (bytes counts)."""
        return to_compressed_rle(self.rle)


def coco_json(images: list[AnnotatedImage], annotations: list[Annotation]) -> dict:
    """A COCO-style dict: images, annotations (RLE, area, XYWH bbox, score), categories by
    label in order of first use."""
    labels = list(dict.fromkeys(a.label for a in annotations))
    used = {a.image_id for a in annotations}
    return coco_dataset(
        [
            {"id": i.image_id, "file_name": i.file_name, "height": i.height, "width": i.width}
            for i in images
            if i.image_id in used
        ],
        [
            {
                "id": a.annotation_id,
                "image_id": a.image_id,
                "category_id": labels.index(a.label) + 1,
                "segmentation": a.rle,
                "area": a.area,
                "bbox": a.bbox,
                "iscrowd": 0,
                "score": a.score,
            }
            for a in annotations
        ],
        labels,
    )


def sa1b_json(image: AnnotatedImage, annotations: list[Annotation]) -> dict:
    """One image's annotations in the SA-1B layout, with crop_box the whole image (null
    stability_score for hand-made masks), plus each mask's label and source."""
    crop_box = [0.0, 0.0, float(image.width), float(image.height)]
    return sa1b_image(
        image.image_id,
        image.file_name,
        image.height,
        image.width,
        [
            sa1b_annotation(
                a.annotation_id,
                a.rle,
                a.bbox,
                a.area,
                a.score,
                a.stability_score,
                a.point_coords,
                crop_box,
                label=a.label,
                source=a.source,
            )
            for a in annotations
            if a.image_id == image.image_id
        ],
    )


def sa1b_files(images: list[AnnotatedImage], annotations: list[Annotation]) -> dict[str, bytes]:
    """{file name: SA-1B JSON} for every image with annotations ('sa1b_image1.json', ...)."""
    used = {a.image_id for a in annotations}
    return {
        f"sa1b_image{i.image_id}.json": json.dumps(sa1b_json(i, annotations)).encode()
        for i in images
        if i.image_id in used
    }


def coco_json_bytes(images: list[AnnotatedImage], annotations: list[Annotation]) -> bytes:
    return json.dumps(coco_json(images, annotations), indent=1).encode()


def masks_zip_bytes(annotations: list[Annotation]) -> bytes:
    """A zip of one black-and-white PNG per annotation, named '0001_label.png'."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for a in annotations:
            archive.writestr(f"{a.annotation_id:04d}_{safe_name(a.label)}.png", mask_png(a.mask))
    return buffer.getvalue()


def safe_name(label: str) -> str:
    """A label as a file-name fragment."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_")[:60] or "object"
