"""Accepted masks with their labels, exported as SA-1B JSON (one file per image), COCO JSON (RLE
segmentations) and PNG masks."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils


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
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
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
        rle = {"size": self.rle["size"], "counts": self.rle["counts"].encode("ascii")}
        return mask_utils.decode(rle).astype(bool)

    @property
    def area(self) -> int:
        return int(mask_utils.area(self.pycoco_rle()))

    @property
    def bbox(self) -> list[float]:
        """COCO XYWH."""
        return [float(v) for v in mask_utils.toBbox(self.pycoco_rle())]

    def pycoco_rle(self) -> dict:
        """The RLE in pycocotools' own form (bytes counts)."""
        return {"size": self.rle["size"], "counts": self.rle["counts"].encode("ascii")}


def coco_json(images: list[AnnotatedImage], annotations: list[Annotation]) -> dict:
    """A COCO-style dict: images, annotations (RLE, area, XYWH bbox, score), categories by
    label in order of first use."""
    categories: dict[str, int] = {}
    for annotation in annotations:
        categories.setdefault(annotation.label, len(categories) + 1)
    used = {a.image_id for a in annotations}
    return {
        "images": [
            {"id": i.image_id, "file_name": i.file_name, "height": i.height, "width": i.width}
            for i in images
            if i.image_id in used
        ],
        "annotations": [
            {
                "id": a.annotation_id,
                "image_id": a.image_id,
                "category_id": categories[a.label],
                "segmentation": a.rle,
                "area": a.area,
                "bbox": a.bbox,
                "iscrowd": 0,
                "score": a.score,
            }
            for a in annotations
        ],
        "categories": [{"id": i, "name": name} for name, i in categories.items()],
    }


def sa1b_json(image: AnnotatedImage, annotations: list[Annotation]) -> dict:
    """One image's annotations in the SA-1B layout: {"image": {...}, "annotations": [...]}
    with RLE segmentation, XYWH bbox, area, predicted_iou, stability_score (null for
    hand-made masks), point_coords and crop_box (the whole image), plus the label."""
    crop_box = [0.0, 0.0, float(image.width), float(image.height)]
    return {
        "image": {
            "image_id": image.image_id,
            "width": image.width,
            "height": image.height,
            "file_name": image.file_name,
        },
        "annotations": [
            {
                "id": a.annotation_id,
                "segmentation": a.rle,
                "bbox": a.bbox,
                "area": a.area,
                "predicted_iou": a.score,
                "stability_score": a.stability_score,
                "point_coords": [list(p) for p in a.point_coords],
                "crop_box": crop_box,
                "label": a.label,
                "source": a.source,
            }
            for a in annotations
            if a.image_id == image.image_id
        ],
    }


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
            png = io.BytesIO()
            Image.fromarray(a.mask.astype(np.uint8) * 255).save(png, format="PNG")
            archive.writestr(f"{a.annotation_id:04d}_{safe_name(a.label)}.png", png.getvalue())
    return buffer.getvalue()


def safe_name(label: str) -> str:
    """A label as a file-name fragment."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_")[:60] or "object"
