"""The exported ONNX files through onnxruntime against the PyTorch model, same weights."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from sam import SamPredictor, build_sam
from sam.fast.int8 import quantize_encoder
from sam.onnx_export import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    DecoderOptions,
    decoder_example_inputs,
    decoder_module,
    export_decoder,
    export_encoder,
    export_onnx,
    verify_decoder,
)
from sam.onnx_model import decoder_inputs
from sam.weights.random_weights import randomize_weights

pytestmark = pytest.mark.slow  # each export traces the model (seconds)
ATOL = 1e-4


def _session(path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: onnxruntime.InferenceSession, inputs: dict) -> list[np.ndarray]:
    return session.run(None, {name: np.asarray(x, np.float32) for name, x in inputs.items()})


def _torch(module: torch.nn.Module, inputs: dict) -> list[np.ndarray]:
    with torch.no_grad():
        return [x.numpy() for x in module(**{k: torch.as_tensor(v) for k, v in inputs.items()})]


@pytest.fixture(scope="module")
def files(tiny_sam, tmp_path_factory):
    """The optimized test model's files, quantized ones too: what the CLI writes."""
    return export_onnx(tiny_sam, tmp_path_factory.mktemp("onnx"), quantized=True)


def test_interface_is_metas(files):
    session = _session(files["decoder"])
    assert [i.name for i in session.get_inputs()] == list(DECODER_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(DECODER_OUTPUTS)
    assert [i.name for i in _session(files["encoder"]).get_inputs()] == ["x"]


@pytest.mark.parametrize(
    ("objects", "points", "size"),
    [(1, 1, (128, 128)), (1, 2, (90, 120)), (2, 3, (300, 41)), (4, 6, (64, 64))],
)
def test_decoder_equals_pytorch_for_any_shape(tiny_sam, files, objects, points, size):
    inputs = decoder_example_inputs(tiny_sam, objects, points)
    inputs["orig_im_size"] = torch.tensor(size, dtype=torch.float)
    outputs = _run(_session(files["decoder"]), inputs)
    expected = _torch(decoder_module(tiny_sam), inputs)
    assert outputs[0].shape == (objects, 4, *size)
    for output, reference in zip(outputs, expected):
        np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)


def test_decoder_equals_the_predictor(tiny_sam, files):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    prompt = dict(point_coords=np.array([[30.0, 20.0]]), point_labels=[1], box=[5, 5, 90, 60])
    inputs = decoder_inputs(predictor.get_image_embedding(), (70, 100), 128, **prompt)
    masks, scores, _ = _run(_session(files["decoder"]), inputs)
    expected_masks, expected_scores, _ = predictor.predict(**prompt, return_logits=True)
    np.testing.assert_allclose(masks[0, 1:], expected_masks, atol=ATOL, rtol=0)
    np.testing.assert_allclose(scores[0, 1:], expected_scores, atol=ATOL, rtol=0)


def test_encoder_equals_pytorch(tiny_sam, files):
    pixels = torch.randn(2, 3, 128, 128)
    embeddings = _run(_session(files["encoder"]), {"x": pixels})[0]
    with torch.no_grad():
        expected = tiny_sam.image_encoder(pixels).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=ATOL, rtol=0)


def assert_quantized_smaller_and_close(model, files: dict) -> None:
    """``files`` (what export_onnx wrote with quantized=True): each int8 file is smaller than
    its float one, and the int8 decoder's masks overlap the float decoder's (IoU > 0.9)."""
    for name in ("decoder", "encoder"):
        assert files[f"{name}_quant"].stat().st_size < files[name].stat().st_size
    inputs = decoder_example_inputs(model, num_objects=8, num_points=2)
    inputs["has_mask_input"] = torch.zeros(1)
    fp32 = _run(_session(files["decoder"]), inputs)[0] > 0
    int8 = _run(_session(files["decoder_quant"]), inputs)[0] > 0
    iou = (fp32 & int8).sum() / (fp32 | int8).sum()
    assert iou > 0.9


def assert_gelu_approximate_exports(model, folder) -> None:
    """The decoder exported with approximate GELU has no Erf left, and equals PyTorch with the
    same approximation."""
    approximate = DecoderOptions(gelu_approximate=True)
    path = export_decoder(model, folder / "tanh.onnx", approximate)
    operators = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
    assert operators["Erf"] == 0 and operators["Tanh"] > 0
    assert verify_decoder(model, path, approximate) < ATOL


def test_quantized_files_are_smaller_and_close(tiny_sam, files):
    assert_quantized_smaller_and_close(tiny_sam, files)


def test_options(tiny_sam, reference_tiny_sam, tmp_path):
    """Single mask with stability scores equals Meta's wrapper; approximate GELU leaves no Erf
    in the graph and still equals PyTorch with the same approximation."""
    from segment_anything.utils.onnx import SamOnnxModel

    options = DecoderOptions(return_single_mask=True, use_stability_score=True)
    path = export_decoder(tiny_sam, tmp_path / "single.onnx", options)
    inputs = decoder_example_inputs(tiny_sam, num_points=2)
    expected = _torch(SamOnnxModel(reference_tiny_sam, True, True), inputs)
    for output, reference in zip(_run(_session(path), inputs), expected):
        np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)
    assert_gelu_approximate_exports(tiny_sam, tmp_path)


def test_bad_requests(tiny_sam, tmp_path):
    with pytest.raises(ValueError, match="opset must be at least 18"):
        export_decoder(tiny_sam, tmp_path / "old.onnx", opset=17)
    int8 = quantize_encoder(randomize_weights(build_sam("vit_test")))
    with pytest.raises(ValueError, match="only float models"):
        export_encoder(int8, tmp_path / "int8.onnx")
    with pytest.raises(ValueError, match="not Linear"):
        export_decoder(torch.nn.Linear(2, 2), tmp_path / "linear.onnx")


def test_int8_encoder_leaves_the_decoder_exportable(tmp_path):
    """The page's models have an int8 encoder on CPUs with VNNI; their decoder is float32."""
    model = randomize_weights(build_sam("vit_test"))
    expected = decoder_module(model)
    quantize_encoder(model)
    path = export_decoder(model, tmp_path / "decoder.onnx")
    inputs = decoder_example_inputs(model)
    for output, reference in zip(_run(_session(path), inputs), _torch(expected, inputs)):
        np.testing.assert_allclose(output, reference, atol=ATOL, rtol=0)


def test_vit_b(tmp_path):
    """The released size (random weights): decoder and encoder within ATOL of PyTorch."""
    model = randomize_weights(build_sam("vit_b"), seed=1)
    decoder = export_decoder(model, tmp_path / "decoder.onnx")
    assert verify_decoder(model, decoder) < ATOL
    encoder = export_encoder(model, tmp_path / "encoder.onnx")
    pixels = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        expected = model.image_encoder(pixels).numpy()
    np.testing.assert_allclose(_run(_session(encoder), {"x": pixels})[0], expected, atol=ATOL)
