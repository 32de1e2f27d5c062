"""AutomaticMaskGenerator against segment_anything.SamAutomaticMaskGenerator on the same weights.

Random weights give noisy masks with small logits that mostly cover the whole image, so those
comparisons use a small stability offset, low thresholds and ``box_nms_thresh=1.0`` so that
many candidates survive. Crops, the crop-edge check, NMS and the default thresholds are compared
on "blob" models too: the same image encoder with a stand-in decoder that draws smooth discs
around each point, like real SAM masks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator
from skimage import data
from torch import nn

from sam import SamPredictor, build_sam
from sam.automatic.generator import LOW_RES_STABILITY_MARGIN, PRESETS, AutomaticMaskGenerator
from sam.automatic.mask_ops import calculate_stability_score, remove_small_regions
from sam.io.masks import rle_to_mask
from tests.reference import build_reference_sam

RELAXED = {
    "points_per_side": 12,
    "pred_iou_thresh": 0.3,
    "stability_score_thresh": 0.2,
    "stability_score_offset": 0.01,
    "box_nms_thresh": 1.0,
    "crop_nms_thresh": 1.0,
}
RECORD_TYPES = {
    "segmentation": np.ndarray,
    "area": int,
    "bbox": list,
    "predicted_iou": float,
    "point_coords": list,
    "stability_score": float,
    "crop_box": list,
}


@pytest.fixture(scope="module")
def models(tiny_sam):
    """Ours and the reference on the same weights, with the IoU head shifted so that predicted
    IoUs straddle the thresholds."""
    state_dict = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    state_dict["mask_decoder.iou_prediction_head.layers.2.bias"] += 0.6
    ours = build_sam(tiny_sam.config)
    ours.load_state_dict(state_dict)
    return ours.eval(), build_reference_sam(tiny_sam.config, state_dict)


class PointPassThrough(nn.Module):
    """Stands in for the prompt encoder: hands the (B, 1, 2) point coordinates to the decoder."""

    def forward(self, points, boxes, masks):
        return points[0].float(), torch.zeros(1)

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1)


class BlobDecoder(nn.Module):
    """Stands in for the mask decoder: three discs of growing radius around each point with
    smooth logits (20 per low-res pixel), and predicted IoUs that vary with position."""

    def __init__(self, image_size: int, radii: tuple[float, ...] = (2.0, 4.0, 7.0)) -> None:
        super().__init__()
        self.image_size = image_size
        self.radii = torch.tensor(radii)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, **_):
        side = image_embeddings.shape[-1] * 4
        points = sparse_prompt_embeddings[:, 0] * side / self.image_size  # (B, 2) low-res px
        grid = torch.arange(side, dtype=torch.float) + 0.5
        dx = grid[None, None, :] - points[:, 0, None, None]
        dy = grid[None, :, None] - points[:, 1, None, None]
        distance = (dx**2 + dy**2).sqrt()[:, None]
        logits = (self.radii[None, :, None, None] - distance) * 20.0
        iou = 0.7 + 0.1 * torch.sin(points[:, :1] + 2 * points[:, 1:]) + 0.05 * torch.arange(3)
        return logits, iou


@pytest.fixture(scope="module")
def blob_models(tiny_sam):
    ours = build_sam(tiny_sam.config)
    ours.load_state_dict(tiny_sam.state_dict())
    reference = build_reference_sam(tiny_sam.config, tiny_sam.state_dict())
    for model in (ours, reference):
        model.prompt_encoder = PointPassThrough()
        model.mask_decoder = BlobDecoder(tiny_sam.config.image_size)
    return ours.eval(), reference


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.array(Image.fromarray(data.astronaut()).resize((192, 160), Image.BILINEAR))


def _rles(records: list[dict]) -> list[dict]:
    return [
        mask_utils.encode(np.asfortranarray(r["segmentation"].astype(np.uint8))) for r in records
    ]


def _matched_fraction(ours: list[dict], theirs: list[dict]) -> float:
    """Fraction of the reference's masks that one of ours matches with IoU >= 0.95."""
    if not ours or not theirs:
        return float(len(ours) == len(theirs))
    ious = mask_utils.iou(_rles(ours), _rles(theirs), [0] * len(theirs))
    return float(np.mean(ious.max(axis=0) >= 0.95))


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_same_masks_as_reference(models, image, crop_n_layers):
    ours, reference = models
    settings = {**RELAXED, "crop_n_layers": crop_n_layers}
    records = AutomaticMaskGenerator(ours, **settings).generate(image)
    expected = SamAutomaticMaskGenerator(reference, **settings).generate(image)
    assert len(expected) > 20
    assert abs(len(records) - len(expected)) <= 0.05 * len(expected)
    assert _matched_fraction(records, expected) >= 0.95
    ours_by_point = {tuple(r["point_coords"][0]) + (r["area"],): r for r in records}
    same = [ours_by_point.get(tuple(r["point_coords"][0]) + (r["area"],)) for r in expected]
    pairs = [(a, b) for a, b in zip(same, expected) if a is not None]
    assert len(pairs) >= 0.9 * len(expected)
    for a, b in pairs:
        assert a["bbox"] == b["bbox"] and a["crop_box"] == b["crop_box"]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=0.02)


def _summary(records: list[dict]) -> list[tuple]:
    return sorted(
        (
            r["area"],
            r["bbox"],
            r["crop_box"],
            r["point_coords"],
            round(r["predicted_iou"], 4),
            round(r["stability_score"], 4),
        )
        for r in records
    )


@pytest.mark.parametrize(
    ("crop_n_layers", "stability_score_thresh"),
    [(0, 0.95), (1, 0.95), (1, 0.8), pytest.param(2, 0.9, marks=pytest.mark.slow)],
)
def test_same_masks_as_reference_on_smooth_masks(
    blob_models, image, crop_n_layers, stability_score_thresh
):
    """Default NMS and offset, with crops: the very same masks, boxes and scores."""
    ours, reference = blob_models
    settings = {
        "points_per_side": 16,
        "pred_iou_thresh": 0.75,
        "stability_score_thresh": stability_score_thresh,
        "crop_n_layers": crop_n_layers,
        "crop_n_points_downscale_factor": 2 if crop_n_layers == 2 else 1,
    }
    records = AutomaticMaskGenerator(ours, **settings).generate(image)
    expected = SamAutomaticMaskGenerator(reference, **settings).generate(image)
    assert len(expected) > 100
    if crop_n_layers:
        assert sum(r["crop_box"] != [0, 0, 192, 160] for r in expected) > 50
    assert _summary(records) == _summary(expected)
    assert _matched_fraction(records, expected) == 1.0


def test_records_have_reference_keys_and_types(models, image):
    ours, reference = models
    settings = {**RELAXED, "points_per_side": 4}
    record = AutomaticMaskGenerator(ours, **settings).generate(image)[0]
    expected = SamAutomaticMaskGenerator(reference, **settings).generate(image)[0]
    assert record.keys() == expected.keys() == RECORD_TYPES.keys()
    for key, kind in RECORD_TYPES.items():
        assert isinstance(record[key], kind), key
        assert type(record[key]) is type(expected[key]), key
    assert record["segmentation"].shape == image.shape[:2]
    assert record["segmentation"].dtype == bool
    assert all(isinstance(v, int) for v in record["bbox"] + record["crop_box"])
    assert len(record["point_coords"]) == 1 and len(record["point_coords"][0]) == 2


def test_output_modes_round_trip(models, image):
    ours, reference = models
    settings = {**RELAXED, "points_per_side": 4}
    binary = AutomaticMaskGenerator(ours, **settings).generate(image)
    uncompressed = AutomaticMaskGenerator(
        ours, output_mode="uncompressed_rle", **settings
    ).generate(image)
    coco = AutomaticMaskGenerator(ours, output_mode="coco_rle", **settings).generate(image)
    expected = SamAutomaticMaskGenerator(
        reference, output_mode="uncompressed_rle", **settings
    ).generate(image)
    assert len(binary) == len(uncompressed) == len(coco) > 0
    json.dumps([r["segmentation"] for r in coco + uncompressed])
    for b, u, c in zip(binary, uncompressed, coco):
        np.testing.assert_array_equal(rle_to_mask(u["segmentation"]), b["segmentation"])
        np.testing.assert_array_equal(rle_to_mask(c["segmentation"]), b["segmentation"])
        assert isinstance(c["segmentation"]["counts"], str)
        assert u["segmentation"]["size"] == list(image.shape[:2])
        assert isinstance(u["segmentation"]["counts"], list)
        assert b["area"] == u["area"] == c["area"] == int(b["segmentation"].sum())
    assert {tuple(e["segmentation"]["counts"]) for e in expected} >= {
        tuple(u["segmentation"]["counts"]) for u in uncompressed[:1]
    }


def test_small_regions_are_removed(models, image):
    ours, _ = models
    settings = {**RELAXED, "points_per_side": 4}
    records = AutomaticMaskGenerator(ours, min_mask_region_area=30, **settings).generate(image)
    assert records
    for record in records:
        mask = record["segmentation"]
        assert not remove_small_regions(mask, 30, "holes")[1]
        x, y, w, h = record["bbox"]
        assert mask[y : y + h + 1, x : x + w + 1].sum() == mask.sum() == record["area"]


def test_grayscale_image_and_nothing_found(models, image):
    ours, _ = models
    gray = image.mean(axis=2).astype(np.uint8)
    assert AutomaticMaskGenerator(ours, **{**RELAXED, "points_per_side": 4}).generate(gray)
    strict = AutomaticMaskGenerator(ours, points_per_side=4, pred_iou_thresh=0.999)
    assert strict.generate(image) == []
    crops = AutomaticMaskGenerator(ours, points_per_side=4, pred_iou_thresh=0.999, crop_n_layers=1)
    assert crops.generate(image) == []


def test_defaults_and_preset(models):
    ours, reference = models
    generator = AutomaticMaskGenerator(ours)
    expected = SamAutomaticMaskGenerator(reference)
    for name in (
        "points_per_batch",
        "pred_iou_thresh",
        "stability_score_thresh",
        "stability_score_offset",
        "box_nms_thresh",
        "crop_n_layers",
        "crop_nms_thresh",
        "crop_overlap_ratio",
        "crop_n_points_downscale_factor",
        "min_mask_region_area",
        "output_mode",
    ):
        assert getattr(generator, name) == getattr(expected, name), name
    preset = AutomaticMaskGenerator.from_preset(ours, "sa1b")
    assert [len(g) for g in preset.point_grids] == [1024, 256, 64]
    assert preset.crop_n_layers == 2 and preset.min_mask_region_area == 100
    assert (preset.pred_iou_thresh, preset.stability_score_thresh) == (0.88, 0.95)
    assert AutomaticMaskGenerator.from_preset(ours, "sa1b", output_mode="coco_rle").output_mode
    assert set(PRESETS) >= {"sa1b"}
    with pytest.raises(ValueError, match="unknown preset"):
        AutomaticMaskGenerator.from_preset(ours, "nope")


def test_sa1b_preset_runs_crops_and_small_region_removal(blob_models, image):
    ours, _ = blob_models
    generator = AutomaticMaskGenerator.from_preset(ours, "sa1b", points_per_side=8)
    records = generator.generate(image)
    assert records
    assert {tuple(r["crop_box"]) for r in records} > {(0, 0, 192, 160)}
    assert all(r["area"] >= 100 for r in records)


def test_bad_arguments(models):
    ours, _ = models
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(ours, points_per_side=None)
    with pytest.raises(ValueError, match="exactly one"):
        AutomaticMaskGenerator(ours, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match="output_mode"):
        AutomaticMaskGenerator(ours, output_mode="png")
    with pytest.raises(ValueError, match="one grid per layer"):
        AutomaticMaskGenerator(
            ours, points_per_side=None, point_grids=[np.zeros((1, 2))], crop_n_layers=1
        )


def test_low_res_stability_is_close_for_smooth_masks():
    """The low-resolution prefilter assumes SAM's masks are smooth at the 256x256 scale; on
    smooth logits (blobs with the slope of real SAM logits) the two scores agree well within
    the margin, so no mask the reference keeps is dropped."""
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    centres = torch.rand(32, 2, generator=generator) * torch.tensor([200.0, 140.0]) + 28
    radii = torch.rand(32, 1, 1, generator=generator) * 60 + 4
    dx, dy = xs - centres[:, 0, None, None], ys - centres[:, 1, None, None]
    distance = (dx**2 + dy**2).sqrt()
    low_res = (radii - distance) * 2.0  # logits rise ~2 per low-res pixel, as SAM's do
    full = F.interpolate(low_res[:, None], (1024, 1024), mode="bilinear", align_corners=False)
    full = F.interpolate(full[..., :768, :], (480, 640), mode="bilinear", align_corners=False)
    rough = calculate_stability_score(low_res[:, :193, :], 0.0, 1.0)
    exact = calculate_stability_score(full[:, 0], 0.0, 1.0)
    assert (rough - exact).abs().max() < LOW_RES_STABILITY_MARGIN / 2


def test_exported_from_the_package_like_the_reference():
    import sam

    assert sam.AutomaticMaskGenerator is AutomaticMaskGenerator


def test_shared_cache_reuses_another_predictors_embedding(models, image):
    ours, _ = models
    predictor = SamPredictor(ours)
    predictor.set_image(image)
    runs = []
    hook = ours.image_encoder.register_forward_hook(lambda m, i, o: runs.append(1))
    try:
        shared = AutomaticMaskGenerator(ours, points_per_side=4, cache=predictor.cache)
        shared_records = shared.generate(image)
        assert runs == []  # the embedding came from the predictor's cache
        own = AutomaticMaskGenerator(ours, points_per_side=4).generate(image)
        assert runs == [1]  # without it, the image is encoded again
    finally:
        hook.remove()
    assert [r["bbox"] for r in shared_records] == [r["bbox"] for r in own]
