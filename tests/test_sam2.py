"""Parity of our SAM 2 image model with transformers' Sam2Model and Meta's sam2 on the same random
weights: every feature level of the image embedding, masks, IoU and object scores."""

from __future__ import annotations

import json

import pytest
import torch

from sam import optimize
from sam.modeling.sam2 import SAM2_CONFIGS, Sam2Config, build_sam2
from tests.reference_sam2 import (
    build_meta_sam2,
    build_transformers_sam2,
    meta_decode,
    meta_features,
    ours_from,
)

ATOL = 1e-4


def _pixels(config, seed: int = 2) -> torch.Tensor:
    side = config.image_size
    return torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(seed))


def _prompt_cases(config, batch: int = 3, seed: int = 1) -> list[dict]:
    """Points (B, 2, 2) with labels, boxes (B, 4), both, and a point with a mask prompt."""
    generator = torch.Generator().manual_seed(seed)
    side = config.image_size
    points = torch.rand(batch, 2, 2, generator=generator) * side
    labels = torch.randint(0, 2, (batch, 2), generator=generator, dtype=torch.int32)
    corners = torch.rand(batch, 2, 2, generator=generator) * side
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    grid = 4 * config.image_embedding_size
    masks = torch.randn(1, 1, grid, grid, generator=generator) * 4
    return [
        dict(points=points, labels=labels),
        dict(boxes=boxes),
        dict(points=points, labels=labels, boxes=boxes),
        dict(points=points[:1], labels=labels[:1], masks=masks),
    ]


def _decode(model, features, points=None, labels=None, boxes=None, masks=None, multimask=True):
    """Our masks, IoU and object score logits for one set of prompts."""
    sparse, dense = model.prompt_encoder(
        points=(points, labels) if points is not None else None, boxes=boxes, masks=masks
    )
    return model.mask_decoder(
        image_embeddings=features.image_embed,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        high_res_features=features.high_res_feats,
    )


def _to_transformers(points=None, labels=None, boxes=None, masks=None) -> dict:
    """The same prompts as Sam2Model takes them: one image, B prompts in its point batch."""
    hf = {}
    if points is not None:
        hf.update(input_points=points[None], input_labels=labels[None])
    if boxes is not None:
        hf.update(input_boxes=boxes[None])
    if masks is not None:
        hf.update(input_masks=masks)
    return hf


def _assert_close(ours, theirs, what: str) -> None:
    torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0, msg=lambda m: f"{what}: {m}")


def _check_against_transformers(model, hf_model) -> None:
    with torch.no_grad():
        pixels = _pixels(model.config)
        features = model.encode_image(pixels)
        hf_embeddings = hf_model.get_image_embeddings(pixels)
        levels = [*features.high_res_feats, features.image_embed]
        assert len(levels) == len(hf_embeddings) == 3
        for level, (ours, theirs) in enumerate(zip(levels, hf_embeddings)):
            _assert_close(ours, theirs, f"embedding level {level}")
        for case in _prompt_cases(model.config):
            for multimask in (True, False):
                masks, iou, objects = _decode(model, features, **case, multimask=multimask)
                out = hf_model(
                    image_embeddings=hf_embeddings,
                    multimask_output=multimask,
                    **_to_transformers(**case),
                )
                what = f"{sorted(case)} multimask={multimask}"
                _assert_close(masks, out.pred_masks[0], f"{what} masks")
                _assert_close(iou, out.iou_scores[0], f"{what} iou")
                _assert_close(objects, out.object_score_logits[0], f"{what} object score")


def _check_against_meta(model, meta) -> None:
    with torch.no_grad():
        pixels = _pixels(model.config, seed=4)
        features = model.encode_image(pixels)
        meta_levels = meta_features(meta, pixels)
        for level, (ours, theirs) in enumerate(
            zip([*features.high_res_feats, features.image_embed], meta_levels)
        ):
            _assert_close(ours, theirs, f"embedding level {level}")
        for case in _prompt_cases(model.config, seed=5):
            for multimask in (True, False):
                ours = _decode(model, features, **case, multimask=multimask)
                args = {k: case.get(k) for k in ("points", "labels", "boxes", "masks")}
                theirs = meta_decode(meta, meta_levels, **args, multimask=multimask)
                for name, a, b in zip(("masks", "iou", "object score"), ours, theirs):
                    _assert_close(a, b, f"{sorted(case)} multimask={multimask} {name}")


@pytest.fixture(scope="module")
def test_size_transformers():
    return build_transformers_sam2(SAM2_CONFIGS["sam2_test"], seed=1)


@pytest.fixture(scope="module")
def test_size_meta():
    return build_meta_sam2(SAM2_CONFIGS["sam2_test"], seed=2)


@pytest.mark.parametrize("fast", [False, True])
def test_test_size_matches_transformers(test_size_transformers, fast):
    model = ours_from(test_size_transformers, SAM2_CONFIGS["sam2_test"])
    _check_against_transformers(optimize(model) if fast else model, test_size_transformers)


@pytest.mark.parametrize("fast", [False, True])
def test_test_size_matches_meta(test_size_meta, fast):
    model = ours_from(test_size_meta, SAM2_CONFIGS["sam2_test"])
    _check_against_meta(optimize(model) if fast else model, test_size_meta)


@pytest.mark.slow
def test_tiny_matches_transformers_and_meta():
    config = SAM2_CONFIGS["sam2.1_tiny"]
    hf_model = build_transformers_sam2(config, seed=3)
    _check_against_transformers(optimize(ours_from(hf_model, config)), hf_model)
    del hf_model
    meta = build_meta_sam2(config, seed=4)
    _check_against_meta(optimize(ours_from(meta, config)), meta)


@pytest.mark.slow
def test_small_matches_transformers():
    config = SAM2_CONFIGS["sam2.1_small"]
    hf_model = build_transformers_sam2(config, seed=6)
    _check_against_transformers(ours_from(hf_model, config), hf_model)


def test_single_mask_falls_back_to_the_best_multimask_output_when_unstable():
    decoder = build_sam2("sam2_test").mask_decoder
    logits = torch.zeros(2, 4, 8, 8)
    logits[0, 0] = 5.0  # prompt 0: a stable single mask (all far from the threshold)
    logits[1, 0] = 0.01  # prompt 1: unstable, every pixel within the +-0.05 band
    logits[:, 1:] = torch.arange(3.0)[:, None, None]
    iou = torch.tensor([[0.1, 0.5, 0.9, 0.2], [0.1, 0.5, 0.9, 0.2]])
    masks, scores = decoder._dynamic_multimask_via_stability(logits, iou)
    assert masks.shape == (2, 1, 8, 8) and scores.shape == (2, 1)
    assert torch.equal(masks[0, 0], logits[0, 0]) and scores[0, 0] == 0.1
    assert torch.equal(masks[1, 0], logits[1, 2]) and scores[1, 0] == 0.9  # best IoU: output 2


def test_preprocess_and_postprocess():
    model = build_sam2("sam2_test")
    pixels = torch.full((1, 3, 128, 128), 255.0)
    expected = (1.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(model.preprocess(pixels)[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="128x128"):
        model.preprocess(torch.zeros(1, 3, 128, 96))
    low_res = torch.randn(2, 3, 32, 32)
    masks = model.postprocess_masks(low_res, (128, 128), (50, 70))
    assert masks.shape == (2, 3, 50, 70)


def test_build_sam2_rejects_unknown_name():
    with pytest.raises(ValueError, match=r"unknown SAM 2 model name 'sam2\.1_huge'"):
        build_sam2("sam2.1_huge")


def test_released_sizes_have_meta_widths():
    widths = {name: SAM2_CONFIGS[name].stage_dims for name in SAM2_CONFIGS}
    assert widths["sam2.1_tiny"] == widths["sam2.1_small"] == (96, 192, 384, 768)
    assert widths["sam2.1_base_plus"] == (112, 224, 448, 896)
    assert widths["sam2.1_large"] == (144, 288, 576, 1152)
    trunk = build_sam2("sam2.1_tiny").image_encoder.trunk
    assert [b.window_size for b in trunk.blocks] == [8, 8, 4, 4, 14, 0, 14, 0, 14, 0, 14, 7]


def test_config_round_trips_through_json():
    for config in SAM2_CONFIGS.values():
        assert Sam2Config.from_dict(json.loads(config.to_json())) == config
    with pytest.raises(ValueError, match="unknown Sam2Config fields"):
        Sam2Config.from_dict({"depth": 3})
