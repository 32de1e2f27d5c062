"""Shared image-side decoding equals the mask decoder's own forward pass."""

from __future__ import annotations

import pytest
import torch

from sam import build_sam
from sam.fast import shared_decoding as decoding
from sam.fast.shared_decoding import ImageDecoding
from sam.weights.random_weights import randomize_weights


def _prompts(model, batch: int, kind: str, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    side = model.image_encoder.img_size
    points = boxes = None
    if kind in ("points", "both"):
        coords = torch.rand(batch, 3, 2, generator=generator) * side
        labels = torch.randint(0, 2, (batch, 3), generator=generator)
        points = (coords, labels)
    if kind in ("box", "both"):
        corners = torch.rand(batch, 2, 2, generator=generator) * side
        boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    return model.prompt_encoder(points=points, boxes=boxes, masks=None)


def _check(model, batch: int, kind: str) -> None:
    embed_dim = model.prompt_encoder.embed_dim
    image_embedding = torch.randn(1, embed_dim, *model.prompt_encoder.image_embedding_size)
    image_pe = model.prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        sparse, dense = _prompts(model, batch, kind)
        expected = model.mask_decoder.predict_masks(image_embedding, image_pe, sparse, dense)
        no_mask = model.prompt_encoder.get_no_mask_dense()
        shared = ImageDecoding(model.mask_decoder, image_embedding, image_pe, no_mask)
        for _ in range(2):  # the second call runs on the cached image products
            masks, iou = shared.predict_masks(sparse)
            assert masks.shape == expected[0].shape and iou.shape == expected[1].shape
            torch.testing.assert_close(masks, expected[0], atol=1e-4, rtol=0)
            torch.testing.assert_close(iou, expected[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["points", "box", "both"])
@pytest.mark.parametrize("batch", [1, 5])
def test_equals_the_decoder(tiny_sam, kind, batch):
    _check(tiny_sam, batch, kind)


def test_equals_the_decoder_when_upscaled_in_uneven_bands(tiny_sam, monkeypatch):
    # the tiny model's 8 embedding rows fit one band; 3 rows per band gives bands 3, 3, 2
    monkeypatch.setattr(decoding, "ROWS_PER_BAND", 3)
    _check(tiny_sam, 2, "both")


def test_no_prompts_give_empty_outputs_like_the_decoder(tiny_sam):
    _check(tiny_sam, 0, "points")


@pytest.mark.slow
def test_equals_the_decoder_of_vit_b():
    torch.manual_seed(0)
    _check(randomize_weights(build_sam("vit_b"), seed=1).eval(), 3, "both")


def test_image_products_are_computed_once(tiny_sam):
    embed_dim = tiny_sam.prompt_encoder.embed_dim
    image_embedding = torch.randn(1, embed_dim, *tiny_sam.prompt_encoder.image_embedding_size)
    with torch.inference_mode():
        sparse, _ = _prompts(tiny_sam, 2, "points")
        shared = ImageDecoding(
            tiny_sam.mask_decoder,
            image_embedding,
            tiny_sam.prompt_encoder.get_dense_pe(),
            tiny_sam.prompt_encoder.get_no_mask_dense(),
        )
        shared.predict_masks(sparse)
        cached = dict(shared._cache)
        shared.predict_masks(sparse[:1])
    assert cached and all(shared._cache[key] is value for key, value in cached.items())
    assert set(shared._cache) == set(cached)
