"""SamOnnxDecoder (before export) against our predictor and Meta's SamOnnxModel, same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils.onnx import SamOnnxModel

from sam import SamPredictor
from sam.automatic.mask_ops import calculate_stability_score
from sam.onnx_export import decoder_example_inputs
from sam.onnx_model import SamOnnxDecoder, decoder_inputs, stability_score

ATOL = 1e-4
HEIGHT, WIDTH = 90, 120

# prompts in pixels of the HEIGHT x WIDTH image, as SamPredictor.predict takes them
PROMPTS = {
    "one point": dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1])),
    "points": dict(point_coords=np.array([[60.0, 40.0], [10, 80]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([20.0, 10, 100, 70])),
    "points and box": dict(
        point_coords=np.array([[60.0, 40.0]]),
        point_labels=np.array([0]),
        box=np.array([20.0, 10, 100, 70]),
    ),
}


@pytest.fixture(scope="module")
def predictor(tiny_sam):
    """The server's path: the optimized model, an image of HEIGHT x WIDTH set."""
    predictor = SamPredictor(tiny_sam)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    predictor.set_image(image)
    return predictor


def _run(decoder: torch.nn.Module, inputs: dict) -> list[np.ndarray]:
    with torch.no_grad():
        outputs = decoder(**{name: torch.as_tensor(x) for name, x in inputs.items()})
    return [x.numpy() for x in outputs]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_equals_the_predictor(plain_tiny_sam, predictor, prompt, with_mask):
    """Output 0 is the single-mask output, 1..3 the multimask outputs, as the predictor gives
    them with multimask_output False and True."""
    mask_input = None
    if with_mask:
        mask_input = predictor.predict(**PROMPTS["box"], multimask_output=False)[2]
    size = plain_tiny_sam.image_encoder.img_size
    inputs = decoder_inputs(
        predictor.get_image_embedding(),
        (HEIGHT, WIDTH),
        size,
        **PROMPTS[prompt],
        mask_input=mask_input,
    )
    masks, scores, low_res = _run(SamOnnxDecoder(plain_tiny_sam), inputs)
    assert masks.shape == (1, 4, HEIGHT, WIDTH) and low_res.shape == (1, 4, 32, 32)
    for outputs, multimask in ((slice(1, 4), True), (slice(0, 1), False)):
        expected = predictor.predict(
            **PROMPTS[prompt], mask_input=mask_input, multimask_output=multimask, return_logits=True
        )
        np.testing.assert_allclose(masks[0, outputs], expected[0], atol=ATOL, rtol=0)
        np.testing.assert_allclose(scores[0, outputs], expected[1], atol=ATOL, rtol=0)
        np.testing.assert_allclose(low_res[0, outputs], expected[2], atol=ATOL, rtol=0)


def test_several_objects_equal_one_at_a_time(plain_tiny_sam):
    decoder = SamOnnxDecoder(plain_tiny_sam)
    inputs = decoder_example_inputs(plain_tiny_sam, num_objects=3, num_points=4)
    together = _run(decoder, inputs)
    for i in range(3):
        one = dict(inputs)
        for name in ("point_coords", "point_labels", "mask_input"):
            one[name] = inputs[name][i : i + 1]
        for output, expected in zip(_run(decoder, one), together):
            np.testing.assert_allclose(output[0], expected[i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("stability", [False, True])
@pytest.mark.parametrize("num_points", [1, 2, 3])
def test_equals_meta_onnx_model(plain_tiny_sam, reference_tiny_sam, single, stability, num_points):
    """Meta's export wrapper on the same weights; 1-2 points pick a multimask output, 3 the
    single-mask output."""
    ours = SamOnnxDecoder(plain_tiny_sam, single, stability)
    reference = SamOnnxModel(reference_tiny_sam, single, stability)
    for has_mask, size in ((1.0, [100.0, 60.0]), (0.0, [128.0, 128.0])):
        inputs = decoder_example_inputs(plain_tiny_sam, num_points=num_points)
        inputs |= {"has_mask_input": torch.tensor([has_mask]), "orig_im_size": torch.tensor(size)}
        for output, expected in zip(_run(ours, inputs), _run(reference, inputs)):
            np.testing.assert_allclose(output, expected, atol=ATOL, rtol=0)


def test_single_mask_picks_by_number_of_points(plain_tiny_sam):
    everything = SamOnnxDecoder(plain_tiny_sam)
    single = SamOnnxDecoder(plain_tiny_sam, return_single_mask=True)
    for num_points, allowed in ((2, [1, 2, 3]), (3, [0])):
        inputs = decoder_example_inputs(plain_tiny_sam, num_objects=2, num_points=num_points)
        masks, scores, _ = _run(everything, inputs)
        best = [allowed[int(np.argmax(row[allowed]))] for row in scores]
        picked_masks, picked_scores, _ = _run(single, inputs)
        assert picked_masks.shape[1] == 1
        np.testing.assert_array_equal(picked_scores[:, 0], scores[[0, 1], best])
        np.testing.assert_array_equal(picked_masks[:, 0], masks[[0, 1], best])


def test_stability_score_equals_the_generators():
    logits = torch.randn(2, 4, 32, 32) * 3
    np.testing.assert_allclose(
        stability_score(logits, 0.0), calculate_stability_score(logits, 0.0, 1.0), rtol=1e-6
    )
