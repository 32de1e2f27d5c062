"""The browser's decoder (low-res logits, attention and upscaling rearranged) against Meta's
interface decoder and the predictor, before and after export, same weights."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from sam import SamPredictor, build_sam
from sam.modeling.sam2 import Sam2, build_sam2
from sam.onnx_export import (
    DECODER_INPUTS,
    cached_decoder,
    decoder_example_inputs,
    decoder_module,
    export_lowres_decoder,
    plain_decoder_copy,
)
from sam.onnx_lowres import (
    LOWRES_DECODER_INPUTS,
    LOWRES_DECODER_OUTPUTS,
    SAM2_LOWRES_DECODER_INPUTS,
    Sam2OnnxLowResDecoder,
    SamOnnxLowResDecoder,
    in_blocks,
)
from sam.onnx_model import decoder_inputs
from sam.onnx_sam2 import sam2_decoder_inputs
from sam.weights.random_weights import randomize_weights

ATOL = 1e-4


def _inputs(model, objects: int, points: int, has_mask: float) -> dict[str, torch.Tensor]:
    inputs = decoder_example_inputs(model, objects, points)
    inputs["has_mask_input"] = torch.tensor([has_mask])
    return inputs


def _lowres(inputs: dict) -> dict:
    names = SAM2_LOWRES_DECODER_INPUTS if "image_embed" in inputs else LOWRES_DECODER_INPUTS
    return {name: inputs[name] for name in names}


def _expected(model, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
    """Meta's interface decoder: (iou_predictions, low_res_masks)."""
    with torch.no_grad():
        _, scores, low_res, *_ = decoder_module(model)(**inputs)
    return scores.numpy(), low_res.numpy()


@pytest.fixture(scope="module")
def sam2_test():
    return randomize_weights(build_sam2("sam2_test"), seed=0).eval()


def test_in_blocks_is_the_upscalings_order():
    """Pixel (4h + 2a + a2, 4w + 2b + b2) of a (C, 4G, 4G) map sits at [h, w, a, b, a2, b2]."""
    features = torch.randn(1, 3, 8, 12)
    blocks = in_blocks(features, 2)
    assert blocks.shape == (1, 2, 3, 2, 2, 2, 2, 3)
    for h, w, a, b, a2, b2 in [(0, 0, 0, 0, 0, 0), (1, 2, 1, 0, 1, 1), (0, 1, 0, 1, 1, 0)]:
        pixel = features[0, :, 4 * h + 2 * a + a2, 4 * w + 2 * b + b2]
        torch.testing.assert_close(blocks[0, h, w, a, b, a2, b2], pixel, rtol=0, atol=0)
    torch.testing.assert_close(in_blocks(features, 1)[0, 1, 2, 1, 0], features[0, :, 3, 4])


def _session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# 1 to 20 points: from 3 points on, for vit_test's 2 heads of 8 channels, the rearranged
# attention does more work than the plain one, and gives the same numbers. SAM 2's: its
# high-resolution features added in block order, the object score token ahead of the others,
# the low-res logits clamped as the interface decoder's.
@pytest.mark.parametrize(
    ("kind", "objects", "points"),
    [("sam", 1, 1), ("sam", 2, 3), ("sam", 1, 20), ("sam2", 1, 1), ("sam2", 2, 3)],
)
@pytest.mark.parametrize("has_mask", [0.0, 1.0])
def test_equals_the_plain_decoder(request, kind, objects, points, has_mask):
    model = request.getfixturevalue("plain_tiny_sam" if kind == "sam" else "sam2_test")
    wrapper = SamOnnxLowResDecoder if kind == "sam" else Sam2OnnxLowResDecoder
    inputs = _inputs(model, objects, points, has_mask)
    decoder = wrapper(plain_decoder_copy(model)).eval()
    with torch.no_grad():
        scores, low_res = (x.numpy() for x in decoder(**_lowres(inputs)))
    expected_scores, expected_low_res = _expected(model, inputs)
    assert low_res.shape == (objects, 4, 32, 32)
    assert np.abs(expected_low_res).max() > 100 * ATOL  # not a comparison of near-zeros
    np.testing.assert_allclose(scores, expected_scores, atol=ATOL, rtol=0)
    np.testing.assert_allclose(low_res, expected_low_res, atol=ATOL, rtol=0)


def assert_equals_the_predictor(session, model) -> None:
    """The exported decoder's outputs 1..3 are the predictor's (multimask) for a point and a
    box with a mask prompt, on a 70 x 100 image."""
    predictor = SamPredictor(model)
    predictor.set_image(np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    prompt = dict(point_coords=np.array([[30.0, 20.0]]), point_labels=[1], box=[5, 5, 90, 60])
    _, _, mask_input = predictor.predict(**prompt, multimask_output=False)
    if isinstance(model, Sam2):
        inputs = sam2_decoder_inputs(
            predictor.features, (70, 100), 128, **prompt, mask_input=mask_input
        )
    else:
        embedding = predictor.get_image_embedding()
        inputs = decoder_inputs(embedding, (70, 100), 128, **prompt, mask_input=mask_input)
    scores, low_res = session.run(None, _lowres(inputs))
    _, expected_scores, expected_low_res = predictor.predict(**prompt, mask_input=mask_input)
    np.testing.assert_allclose(scores[0, 1:], expected_scores, atol=ATOL, rtol=0)
    np.testing.assert_allclose(low_res[0, 1:], expected_low_res, atol=ATOL, rtol=0)


@pytest.mark.slow  # exports (seconds)
def test_sam2_export_equals_the_predictor(sam2_test, tmp_path):
    session = _session(export_lowres_decoder(sam2_test, tmp_path / "lowres.onnx"))
    assert [i.name for i in session.get_inputs()] == list(SAM2_LOWRES_DECODER_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(LOWRES_DECODER_OUTPUTS)
    assert_equals_the_predictor(session, sam2_test)


@pytest.mark.slow  # exports (seconds)
def test_export_equals_the_predictor(tiny_sam, tmp_path):
    session = _session(export_lowres_decoder(tiny_sam, tmp_path / "lowres.onnx"))
    # Meta's inputs, less the size
    assert [i.name for i in session.get_inputs()] == list(DECODER_INPUTS[:-1])
    assert [o.name for o in session.get_outputs()] == list(LOWRES_DECODER_OUTPUTS)
    assert_equals_the_predictor(session, tiny_sam)

    for objects, points in ((1, 1), (3, 5)):
        inputs = _inputs(tiny_sam, objects, points, 1.0)
        outputs = session.run(None, {k: v.numpy() for k, v in _lowres(inputs).items()})
        for output, expected in zip(outputs, _expected(tiny_sam, inputs)):
            np.testing.assert_allclose(output, expected, atol=ATOL, rtol=0)


@pytest.mark.slow  # exports once (seconds)
def test_cached_decoder_is_the_lowres_one(tiny_sam, tmp_path):
    path = cached_decoder(tiny_sam, tmp_path)
    assert path.name.startswith("decoder-lowres-") and cached_decoder(tiny_sam, tmp_path) == path
    assert [o.name for o in _session(path).get_outputs()] == list(LOWRES_DECODER_OUTPUTS)


@pytest.mark.slow  # vit_b's decoder exported (seconds)
def test_vit_b(tmp_path):
    """The released decoder size (8 heads, 256 channels), random weights, one click and a
    mask prompt, and twelve points."""
    model = randomize_weights(build_sam("vit_b"), seed=1)
    session = _session(export_lowres_decoder(model, tmp_path / "lowres.onnx"))
    for points in (2, 12):
        inputs = _inputs(model, 1, points, 1.0)
        outputs = session.run(None, {k: v.numpy() for k, v in _lowres(inputs).items()})
        for output, expected in zip(outputs, _expected(model, inputs)):
            np.testing.assert_allclose(output, expected, atol=ATOL, rtol=0)
