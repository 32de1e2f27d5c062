"""Parity of the whole model with Meta's reference and with transformers' SamModel."""

from __future__ import annotations

import pytest
import torch

from sam import build_sam, optimize
from sam.weights.random_weights import randomize_weights
from tests.reference import build_reference_sam, build_transformers_sam

ATOL = 1e-4


def _prompts(config, batch: int = 3, seed: int = 1):
    """Random points (B, 2, 2), labels (B, 2), boxes (B, 4) and mask logits (B, 1, 4g, 4g)."""
    generator = torch.Generator().manual_seed(seed)
    side = config.image_size
    points = torch.rand(batch, 2, 2, generator=generator) * side
    labels = torch.randint(0, 2, (batch, 2), generator=generator)
    corners = torch.rand(batch, 2, 2, generator=generator) * side
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    grid = 4 * config.image_embedding_size
    masks = torch.randn(batch, 1, grid, grid, generator=generator) * 4
    return points, labels, boxes, masks


def _decode(model, embedding, points=None, labels=None, boxes=None, masks=None, multimask=True):
    sparse, dense = model.prompt_encoder(
        points=(points, labels) if points is not None else None, boxes=boxes, masks=masks
    )
    return model.mask_decoder(
        image_embeddings=embedding,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )


def _check_against_reference(model, reference):
    config = model.config
    pixels = torch.randn(
        1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(2)
    )
    points, labels, boxes, masks = _prompts(config)
    with torch.no_grad():
        ours_embedding = model.image_encoder(pixels)
        ref_embedding = reference.image_encoder(pixels)
        torch.testing.assert_close(ours_embedding, ref_embedding, atol=ATOL, rtol=0)
        cases = [
            dict(points=points, labels=labels),
            dict(boxes=boxes),
            dict(points=points, labels=labels, boxes=boxes),
            dict(points=points, labels=labels, masks=masks),
            dict(boxes=boxes, masks=masks, multimask=False),
        ]
        for case in cases:
            ours = _decode(model, ours_embedding, **case)
            ref = _decode(reference, ref_embedding, **case)
            for a, b in zip(ours, ref):
                torch.testing.assert_close(
                    a, b, atol=ATOL, rtol=0, msg=lambda m, c=case: f"{sorted(c)}: {m}"
                )


def _check_against_transformers(model, hf_model):
    config = model.config
    pixels = torch.randn(
        1, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(3)
    )
    points, labels, boxes, masks = _prompts(config, batch=1)
    with torch.no_grad():
        ours_embedding = model.image_encoder(pixels)
        hf_embedding = hf_model.get_image_embeddings(pixels)
        torch.testing.assert_close(ours_embedding, hf_embedding, atol=ATOL, rtol=0)
        cases = [
            (
                dict(points=points, labels=labels),
                dict(input_points=points[:, None], input_labels=labels[:, None]),
            ),
            (dict(boxes=boxes), dict(input_boxes=boxes[:, None])),
            (
                dict(points=points, labels=labels, boxes=boxes),
                dict(
                    input_points=points[:, None],
                    input_labels=labels[:, None],
                    input_boxes=boxes[:, None],
                ),
            ),
            (
                dict(points=points, labels=labels, masks=masks),
                dict(input_points=points[:, None], input_labels=labels[:, None], input_masks=masks),
            ),
        ]
        for ours_case, hf_case in cases:
            ours_masks, ours_iou = _decode(model, ours_embedding, **ours_case)
            hf_out = hf_model(image_embeddings=hf_embedding, multimask_output=True, **hf_case)
            torch.testing.assert_close(ours_masks, hf_out.pred_masks[:, 0], atol=ATOL, rtol=0)
            torch.testing.assert_close(ours_iou, hf_out.iou_scores[:, 0], atol=ATOL, rtol=0)


@pytest.fixture(params=["plain", "optimized"])
def either_tiny_sam(request, plain_tiny_sam, tiny_sam):
    return plain_tiny_sam if request.param == "plain" else tiny_sam


def test_tiny_model_matches_reference(either_tiny_sam, reference_tiny_sam):
    _check_against_reference(either_tiny_sam, reference_tiny_sam)


def test_tiny_model_matches_transformers(either_tiny_sam):
    model = either_tiny_sam
    hf_model = build_transformers_sam(model.config, model.state_dict())
    _check_against_transformers(model, hf_model)


def test_reference_forward_interface(either_tiny_sam, reference_tiny_sam):
    """Sam.forward takes the reference's batched records and returns the same outputs."""
    tiny_sam = either_tiny_sam
    config = tiny_sam.config
    points, labels, boxes, _ = _prompts(config, batch=2)
    image = torch.rand(3, config.image_size, config.image_size // 2) * 255
    records = [
        {"image": image, "original_size": (50, 25), "point_coords": points, "point_labels": labels},
        {"image": image.flip(-1), "original_size": (50, 25), "boxes": boxes},
    ]
    ours = tiny_sam(records, multimask_output=True)
    ref = reference_tiny_sam(records, multimask_output=True)
    for a, b in zip(ours, ref):
        assert a["masks"].shape == b["masks"].shape == (2, 3, 50, 25)
        torch.testing.assert_close(a["low_res_logits"], b["low_res_logits"], atol=ATOL, rtol=0)
        torch.testing.assert_close(a["iou_predictions"], b["iou_predictions"], atol=ATOL, rtol=0)
        # thresholded masks may only differ where the logits sit at the threshold
        logits = tiny_sam.postprocess_masks(a["low_res_logits"], image.shape[-2:], (50, 25))
        differ = a["masks"] != b["masks"]
        assert torch.all(logits[differ].abs() < 1e-3)


@pytest.mark.parametrize(
    "input_size, original_size",
    [
        ((128, 128), (40, 40)),
        ((128, 77), (60, 36)),
        ((128, 77), (500, 300)),
        ((64, 128), (50, 100)),
        ((5, 128), (4, 99)),
    ],
)
def test_postprocess_masks_matches_reference(
    either_tiny_sam, reference_tiny_sam, input_size, original_size
):
    # the optimized model upscales only the low-res rows and columns that cover the image
    side = either_tiny_sam.prompt_encoder.mask_input_size[0]
    low_res = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    ours = either_tiny_sam.postprocess_masks(low_res, input_size, original_size)
    theirs = reference_tiny_sam.postprocess_masks(low_res, input_size, original_size)
    assert ours.shape == theirs.shape == (2, 3, *original_size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_build_sam_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown model name 'vit_x'"):
        build_sam("vit_x")


@pytest.mark.slow
def test_vit_b_matches_reference_and_transformers():
    model = randomize_weights(build_sam("vit_b"), seed=5)
    state_dict = model.state_dict()
    reference = build_reference_sam(model.config, state_dict)
    hf_model = build_transformers_sam(model.config, state_dict)
    _check_against_reference(model, reference)  # the plain model
    _check_against_transformers(model, hf_model)
    optimize(model)
    _check_against_reference(model, reference)
    _check_against_transformers(model, hf_model)
