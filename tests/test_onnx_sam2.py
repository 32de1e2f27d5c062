"""SAM 2's exported ONNX files through onnxruntime against our PyTorch model and predictor, same
random weights; and ``python -m sam export-onnx`` with a saved SAM 2 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam import SamPredictor, optimize, save_checkpoint
from sam.cli import main
from sam.modeling.sam2 import build_sam2
from sam.onnx_export import (
    DecoderOptions,
    decoder_example_inputs,
    decoder_module,
    export_decoder,
    export_encoder,
    export_onnx,
    verify_decoder,
)
from sam.onnx_sam2 import (
    SAM2_DECODER_INPUTS,
    SAM2_DECODER_OUTPUTS,
    SAM2_ENCODER_INPUTS,
    SAM2_ENCODER_OUTPUTS,
    sam2_decoder_inputs,
)
from sam.weights.random_weights import randomize_weights
from tests.test_onnx_export import (
    ATOL,
    _run,
    _session,
    _torch,
    assert_gelu_approximate_exports,
    assert_quantized_smaller_and_close,
)
from tests.test_onnx_model import HEIGHT, PROMPTS, WIDTH

pytestmark = pytest.mark.slow  # each export traces the model (seconds)


@pytest.fixture(scope="module")
def model():
    """The SAM 2 test model, random weights, optimized as :func:`sam.load_sam` returns it."""
    return optimize(randomize_weights(build_sam2("sam2_test"), seed=0))


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """What the CLI writes, quantized files too, and the single-mask decoder."""
    folder = tmp_path_factory.mktemp("onnx_sam2")
    written = export_onnx(model, folder, quantized=True)
    single = DecoderOptions(return_single_mask=True)
    written["single"] = export_decoder(model, folder / "single.onnx", single)
    return written


@pytest.fixture(scope="module")
def predictor(model):
    """The server's path: an image of HEIGHT x WIDTH set."""
    predictor = SamPredictor(model)
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    predictor.set_image(image)
    return predictor


def test_interface(files):
    session = _session(files["decoder"])
    assert [i.name for i in session.get_inputs()] == list(SAM2_DECODER_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(SAM2_DECODER_OUTPUTS)
    encoder = _session(files["encoder"])
    assert [i.name for i in encoder.get_inputs()] == list(SAM2_ENCODER_INPUTS)
    assert [o.name for o in encoder.get_outputs()] == list(SAM2_ENCODER_OUTPUTS)


@pytest.mark.parametrize(
    ("objects", "points", "size"),
    [(1, 1, (128, 128)), (1, 2, (90, 120)), (2, 3, (300, 41)), (4, 6, (64, 64))],
)
def test_decoder_equals_pytorch_for_any_shape(model, files, objects, points, size):
    inputs = decoder_example_inputs(model, objects, points)
    inputs["orig_im_size"] = torch.tensor(size, dtype=torch.float)
    for has_mask in (0.0, 1.0):
        inputs["has_mask_input"] = torch.tensor([has_mask])
        outputs = _run(_session(files["decoder"]), inputs)
        expected = _torch(decoder_module(model), inputs)
        assert [o.shape for o in outputs] == [
            (objects, 4, *size),
            (objects, 4),
            (objects, 4, 32, 32),
            (objects, 1),
        ]
        for output, reference in zip(outputs, expected):
            np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_decoder_equals_the_predictor(model, files, predictor, prompt, with_mask):
    """Outputs 1..3 are the predictor's with multimask_output, the single-mask file's its
    output without; logits, low-res logits (clamped as the predictor's) and IoU."""
    mask_input = None
    if with_mask:
        mask_input = predictor.predict(**PROMPTS["box"], multimask_output=False)[2]
    inputs = sam2_decoder_inputs(
        predictor.features, (HEIGHT, WIDTH), 128, **PROMPTS[prompt], mask_input=mask_input
    )
    for name, outputs, multimask in (
        ("decoder", slice(1, 4), True),
        ("single", slice(0, 1), False),
    ):
        masks, scores, low_res, object_scores = _run(_session(files[name]), inputs)
        assert masks.shape[2:] == (HEIGHT, WIDTH) and object_scores.shape == (1, 1)
        expected = predictor.predict(
            **PROMPTS[prompt], mask_input=mask_input, multimask_output=multimask, return_logits=True
        )
        np.testing.assert_allclose(masks[0, outputs], expected[0], atol=ATOL, rtol=0)
        np.testing.assert_allclose(scores[0, outputs], expected[1], atol=ATOL, rtol=0)
        np.testing.assert_allclose(low_res[0, outputs], expected[2], atol=ATOL, rtol=0)


def test_encoder_equals_the_predictor(model, files, predictor):
    """The encoder's outputs are the features the predictor holds after set_image, for a batch
    of two images as for one."""
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    resized = torch.as_tensor(model.input_transform().apply_image(image)).permute(2, 0, 1)
    pixels = model.preprocess(resized[None])
    other = torch.randn(1, 3, 128, 128)
    outputs = _run(_session(files["encoder"]), {"image": torch.cat([pixels, other])})
    features = predictor.features
    for output, expected in zip(outputs, [*features.high_res_feats, features.image_embed]):
        np.testing.assert_allclose(output[:1], expected.numpy(), atol=ATOL, rtol=0)
    with torch.no_grad():
        other_features = model.encode_image(other)
    for output, expected in zip(
        outputs, [*other_features.high_res_feats, other_features.image_embed]
    ):
        np.testing.assert_allclose(output[1:], expected.numpy(), atol=ATOL, rtol=0)


def test_quantized_files_are_smaller_and_close(model, files):
    assert_quantized_smaller_and_close(model, files)


def test_options(model, tmp_path):
    """Stability scores (with one mask) and approximate GELU (no Erf left) still equal PyTorch
    with the same options."""
    stability = DecoderOptions(return_single_mask=True, use_stability_score=True)
    path = export_decoder(model, tmp_path / "stability.onnx", stability)
    assert verify_decoder(model, path, stability) < ATOL
    assert_gelu_approximate_exports(model, tmp_path)


def test_sam2_1_tiny(tmp_path):
    """The released size (random weights): the encoder's features and the decoder's low-res
    logits, IoU and object scores within ATOL of PyTorch. The full-size masks get a wider
    margin: resizing 256 to 1024 pixels in float32 rounds the interpolation weights
    differently in each runtime, by about ATOL against a float64 resize in both."""
    model = randomize_weights(build_sam2("sam2.1_tiny"), seed=1)
    decoder = export_decoder(model, tmp_path / "decoder.onnx")
    inputs = decoder_example_inputs(model, num_objects=2)
    outputs = _run(_session(decoder), inputs)
    expected = _torch(decoder_module(model), inputs)
    np.testing.assert_allclose(outputs[0], expected[0], atol=5 * ATOL, rtol=0)
    for output, reference in zip(outputs[1:], expected[1:]):
        np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)
    encoder = export_encoder(model, tmp_path / "encoder.onnx")
    pixels = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        features = model.encode_image(pixels)
    outputs = _run(_session(encoder), {"image": pixels})
    for output, expected in zip(outputs, [*features.high_res_feats, features.image_embed]):
        np.testing.assert_allclose(output, expected.numpy(), atol=ATOL, rtol=0)


def test_command_exports_a_saved_sam2(model, tmp_path, capsys):
    checkpoint = save_checkpoint(model, tmp_path / "sam2_test.safetensors")
    out = tmp_path / "onnx"
    args = ["export-onnx", "--model", str(checkpoint), "--out", str(out), "--quiet"]
    assert main([*args, "--return-single-mask"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["decoder.onnx", "encoder.onnx"]
    printed = capsys.readouterr().out
    assert printed.count("wrote ") == 2 and "decoder checked with onnxruntime" in printed
    inputs = decoder_example_inputs(model, num_objects=2)
    outputs = _run(_session(out / "decoder.onnx"), inputs)
    expected = _torch(decoder_module(model, DecoderOptions(return_single_mask=True)), inputs)
    assert outputs[0].shape == (2, 1, 96, 128)  # one mask per object: --return-single-mask
    for output, reference in zip(outputs, expected):
        np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)
