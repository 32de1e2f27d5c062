"""``python -m sam export-onnx`` with a tiny saved model."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from sam import save_checkpoint
from sam.cli import main
from sam.onnx_export import decoder_example_inputs


@pytest.fixture(scope="module")
def checkpoint(tiny_sam, tmp_path_factory):
    return str(save_checkpoint(tiny_sam, tmp_path_factory.mktemp("model") / "tiny.safetensors"))


@pytest.mark.slow  # traces the model twice (seconds)
def test_writes_every_file_and_checks_the_decoder(checkpoint, tiny_sam, tmp_path, capsys):
    out = tmp_path / "onnx"
    args = ["export-onnx", "--model", checkpoint, "--out", str(out), "--quantize", "--quiet"]
    assert main([*args, "--return-single-mask"]) == 0
    names = ["decoder.onnx", "decoder.quant.onnx", "encoder.onnx", "encoder.quant.onnx"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    printed = capsys.readouterr().out
    assert printed.count("wrote ") == 4 and "decoder checked with onnxruntime" in printed
    session = onnxruntime.InferenceSession(str(out / "decoder.onnx"))
    inputs = decoder_example_inputs(tiny_sam, num_objects=2)
    masks = session.run(["masks"], {name: x.numpy() for name, x in inputs.items()})[0]
    assert masks.shape == (2, 1, 96, 128)  # one mask per object: --return-single-mask
    assert np.isfinite(masks).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--opset", "17"], "--opset must be at least 18"),
        (["--model", "no/such/model.pth"], "could not load model"),
    ],
)
def test_usage_errors(checkpoint, tmp_path, capsys, args, message):
    command = ["export-onnx", "--model", checkpoint, "--out", str(tmp_path), "--no-encoder"]
    assert main([*command, *args]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
