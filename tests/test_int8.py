"""The int8 image encoder (sam/fast/int8.py) against the float32 one on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sam import SamPredictor, build_sam, load_sam, save_checkpoint
from sam.fast.int8 import is_quantized, quantize_encoder
from sam.weights.precision import resolve_precision
from sam.weights.random_weights import randomize_weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = randomize_weights(build_sam("vit_test"), seed=3)
    return save_checkpoint(model, tmp_path_factory.mktemp("int8") / "model.safetensors")


def test_int8_quantizes_only_the_encoders_linear_layers(checkpoint):
    model = load_sam(checkpoint, device="cpu", precision="int8")
    assert is_quantized(model)
    assert not is_quantized(load_sam(checkpoint, device="cpu", precision="fp32"))
    # the prompt encoder and decoder stay float32
    assert any(type(m) is nn.Linear for m in model.mask_decoder.modules())
    assert model.encode_image(torch.zeros(1, 3, 128, 128)).dtype == torch.float32


def test_int8_encoder_stays_close_to_fp32(checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    exact, quantized = (
        SamPredictor(load_sam(checkpoint, device="cpu", precision=p)) for p in ("fp32", "int8")
    )
    exact.set_image(image)
    quantized.set_image(image)
    error = (quantized.features - exact.features).norm() / exact.features.norm()
    assert 0 < error < 0.05  # quantized, and close
    point = dict(point_coords=np.array([[40, 30]]), point_labels=np.array([1]))
    _, iou_exact, logits_exact = exact.predict(**point)
    _, iou_quantized, logits_quantized = quantized.predict(**point)
    np.testing.assert_allclose(iou_quantized, iou_exact, atol=0.05)
    agree = ((logits_quantized > 0) == (logits_exact > 0)).mean()
    assert agree > 0.95


def test_int8_is_for_the_cpu_only(tiny_sam):
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", torch.device("cuda"))
    model = randomize_weights(build_sam("vit_test"), seed=0)
    model.pixel_mean = model.pixel_mean.to("meta")  # the model's device, as a GPU would report it
    with pytest.raises(ValueError, match="CPU only"):
        quantize_encoder(model)
