"""sam.fast.optimize: the one seam of the speed-ups; the optimized model equals the plain one."""

from __future__ import annotations

import numpy as np
import torch

from sam import SamPredictor, build_sam, build_sam2, load_sam, optimize, save_checkpoint
from sam.fast import FASTER, is_optimized
from sam.fast.shared_decoding import SharingMaskDecoder
from sam.weights.random_weights import randomize_weights


def test_optimize_swaps_every_plain_module_and_keeps_the_weights():
    model = randomize_weights(build_sam("vit_test"), seed=0)
    before = {name: tensor.data_ptr() for name, tensor in model.state_dict().items()}
    plain_types = {type(m) for m in model.modules()}
    sam2_types = {type(m) for m in build_sam2("sam2_test").modules()}  # Hiera's twins
    assert set(FASTER) <= plain_types | sam2_types and not is_optimized(model)
    assert optimize(model) is model
    assert is_optimized(model)
    assert isinstance(model.mask_decoder, SharingMaskDecoder)
    # same tensors, same names: checkpoints and training see no difference
    assert {name: t.data_ptr() for name, t in model.state_dict().items()} == before
    types = [type(m) for m in model.modules()]
    assert optimize(model) is model and [type(m) for m in model.modules()] == types  # idempotent


def test_predictions_of_plain_and_optimized_models_agree(plain_tiny_sam, tiny_sam):
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    plain, fast = SamPredictor(plain_tiny_sam), SamPredictor(tiny_sam)
    plain.set_image(image)
    fast.set_image(image)
    torch.testing.assert_close(fast.features, plain.features, atol=1e-5, rtol=1e-5)
    for prompts in (
        dict(point_coords=np.array([[10, 20], [30, 5]]), point_labels=np.array([1, 0])),
        dict(box=np.array([5, 5, 50, 30])),
    ):
        masks_p, iou_p, low_p = plain.predict(**prompts, return_logits=True)
        masks_f, iou_f, low_f = fast.predict(**prompts, return_logits=True)
        np.testing.assert_allclose(low_f, low_p, atol=1e-4)
        np.testing.assert_allclose(iou_f, iou_p, atol=1e-5)
        np.testing.assert_allclose(masks_f, masks_p, atol=1e-4)


def test_load_sam_optimizes_unless_asked_not_to(tmp_path):
    path = save_checkpoint(
        randomize_weights(build_sam("vit_test"), seed=1), tmp_path / "m.safetensors"
    )
    assert is_optimized(load_sam(path, device="cpu", precision="fp32"))
    plain = load_sam(path, device="cpu", precision="fp32", fast=False)
    assert not is_optimized(plain)
    assert {type(m) for m in plain.modules()}.isdisjoint(FASTER.values())
