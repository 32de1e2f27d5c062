"""Writing SAM as ONNX models: the prompt encoder + mask decoder in one file (Meta's interface,
:class:`~sam.onnx_model.SamOnnxDecoder`), the image encoder in another, and their
int8-quantized versions through onnxruntime's dynamic quantization.

Graphs are made by torch's exporter (``torch.export``, then ONNX opset ``DEFAULT_OPSET`` or
later) from a plain float32 copy of the model, so any loaded model (optimized, bf16) exports
the same graph and is left untouched.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sam.modeling.sam import Sam, build_sam
from sam.onnx_model import SamOnnxDecoder, SamOnnxEncoder

# torch.export's ONNX translation starts at opset 18; Meta's export script defaulted to 17.
DEFAULT_OPSET = 18
DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
)
DECODER_OUTPUTS = ("masks", "iou_predictions", "low_res_masks")
# the files export_onnx writes into its folder
ONNX_FILES = {
    "decoder": "decoder.onnx",
    "decoder_quant": "decoder.quant.onnx",
    "encoder": "encoder.onnx",
    "encoder_quant": "encoder.quant.onnx",
}


@dataclass(frozen=True)
class DecoderOptions:
    """What Meta's export script offers for the decoder.

    return_single_mask: one mask per object (see :class:`SamOnnxDecoder`) instead of all four;
    use_stability_score: the masks' stability (IoU at threshold +-1) in place of the predicted
    IoU; gelu_approximate: GELU through tanh, for runtimes whose ``Erf`` is slow or missing
    (changes the numbers slightly).
    """

    return_single_mask: bool = False
    use_stability_score: bool = False
    gelu_approximate: bool = False


def _check_exportable(model: Sam) -> None:
    if not isinstance(model, Sam):
        raise ValueError(f"ONNX export covers SAM (vit_b/l/h, demo), not {type(model).__name__}")
    if model.config is None:
        raise ValueError("the model has no config (build it with build_sam or load_sam)")


def plain_float_copy(model: Sam) -> Sam:
    """A new plain (unoptimized) float32 CPU model with ``model``'s weights."""
    _check_exportable(model)
    state_dict = model.state_dict()
    if not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state_dict.values()):
        raise ValueError("only float models can be exported (load with precision 'fp32', not int8)")
    copy = build_sam(model.config)
    copy.load_state_dict({name: value.detach().float().cpu() for name, value in state_dict.items()})
    return copy.eval()


def plain_decoder_copy(model: Sam) -> Sam:
    """A plain float32 CPU copy of ``model``'s prompt encoder and mask decoder, whatever the
    rest of it is; the copy's image encoder is a shape only (on the meta device), which the
    decoder never runs."""
    with torch.device("meta"):
        copy = build_sam(model.config)
    for name in ("prompt_encoder", "mask_decoder"):
        weights = {
            k: v.detach().float().cpu() for k, v in getattr(model, name).state_dict().items()
        }
        getattr(copy, name).to_empty(device="cpu").load_state_dict(weights)
    return copy.eval()


def decoder_module(model: Sam, options: DecoderOptions | None = None) -> SamOnnxDecoder:
    """The module that :func:`export_decoder` exports, on a plain float32 copy of ``model``'s
    prompt encoder and mask decoder."""
    options = options or DecoderOptions()
    _check_exportable(model)
    plain = plain_decoder_copy(model)
    if options.gelu_approximate:
        for module in plain.modules():
            if isinstance(module, nn.GELU):
                module.approximate = "tanh"
    return SamOnnxDecoder(plain, options.return_single_mask, options.use_stability_score)


def decoder_example_inputs(
    model: Sam, num_objects: int = 1, num_points: int = 3
) -> dict[str, torch.Tensor]:
    """Random inputs of the decoder's interface: every value is legal, none special."""
    generator = torch.Generator().manual_seed(0)
    channels = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    side = model.image_encoder.img_size
    shape = (num_objects, num_points)
    return {
        "image_embeddings": torch.randn(1, channels, *grid, generator=generator),
        "point_coords": torch.rand(*shape, 2, generator=generator) * side,
        "point_labels": torch.randint(-1, 4, shape, generator=generator).float(),
        "mask_input": torch.randn(num_objects, 1, 4 * grid[0], 4 * grid[1], generator=generator),
        "has_mask_input": torch.ones(1),
        "orig_im_size": torch.tensor([0.75 * side, side]),
    }


def export_decoder(
    model: Sam,
    path: str | os.PathLike,
    options: DecoderOptions | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the prompt encoder + mask decoder of ``model`` to ``path`` (one self-contained
    file): inputs ``DECODER_INPUTS``, outputs ``DECODER_OUTPUTS``, any number of objects,
    points and image sizes."""
    decoder = decoder_module(model, options)
    objects, points = torch.export.Dim("num_objects"), torch.export.Dim("num_points")
    dynamic_shapes = {
        "image_embeddings": None,
        "point_coords": {0: objects, 1: points},
        "point_labels": {0: objects, 1: points},
        "mask_input": {0: objects},
        "has_mask_input": None,
        "orig_im_size": None,
    }
    # two objects, so that the traced graph cannot treat their number as the constant 1
    inputs = decoder_example_inputs(model, num_objects=2)
    return _export(decoder, inputs, dynamic_shapes, DECODER_OUTPUTS, path, opset, False)


def export_encoder(model: Sam, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write the image encoder of ``model`` to ``path``: input ``x`` (B, 3, S, S) preprocessed
    as :meth:`Sam.preprocess` does, output ``image_embeddings``. Weights over 2 GB (vit_h) go
    to ``path`` + ``.data`` beside it, as ONNX requires."""
    plain = plain_float_copy(model)
    side = plain.image_encoder.img_size
    inputs = {"x": torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))}
    dynamic_shapes = {"x": {0: torch.export.Dim("batch")}}
    large = sum(p.numel() for p in plain.image_encoder.parameters()) * 4 >= 2**31
    encoder = SamOnnxEncoder(plain)
    return _export(encoder, inputs, dynamic_shapes, ("image_embeddings",), path, opset, large)


def export_onnx(
    model: Sam,
    out: str | os.PathLike,
    options: DecoderOptions | None = None,
    opset: int = DEFAULT_OPSET,
    encoder: bool = True,
    quantized: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Write ``ONNX_FILES``' decoder (and encoder, and with ``quantized`` their int8 versions)
    into the folder ``out``; returns {"decoder": path, ...} of the files written."""
    from tqdm import tqdm

    out = Path(out)
    todo = ["decoder", *(["decoder_quant"] if quantized else [])]
    if encoder:
        todo += ["encoder", *(["encoder_quant"] if quantized else [])]
    written: dict[str, Path] = {}
    for name in tqdm(todo, desc="export-onnx", unit="file", disable=not progress):
        path = out / ONNX_FILES[name]
        if name == "decoder":
            written[name] = export_decoder(model, path, options, opset)
        elif name == "encoder":
            written[name] = export_encoder(model, path, opset)
        else:
            written[name] = quantize(written[name.removesuffix("_quant")], path)
    return written


_cached_decoders: weakref.WeakKeyDictionary[Sam, Path] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def cached_decoder(model: Sam, folder: str | os.PathLike) -> Path:
    """``folder``/decoder-HASH.onnx: the default decoder of ``model``, exported on first use
    and then reused (also by later processes), HASH naming its weights, config and exporter."""
    with _cache_lock:
        known = _cached_decoders.get(model)
        if known is not None and known.exists():
            return known
        digest = hashlib.sha256(f"{model.config} {DEFAULT_OPSET} {torch.__version__}".encode())
        for part in (model.prompt_encoder, model.mask_decoder):
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        path = Path(folder) / f"decoder-{digest.hexdigest()[:20]}.onnx"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.partial")
            export_decoder(model, partial)
            partial.replace(path)  # whole or absent, for readers in other processes
        _cached_decoders[model] = path
        return path


def verify_decoder(
    model: Sam, path: str | os.PathLike, options: DecoderOptions | None = None
) -> float:
    """The largest difference between the logits of the ONNX decoder at ``path`` (through
    onnxruntime on the CPU) and of ``model`` on the same random inputs (two objects)."""
    import onnxruntime

    decoder = decoder_module(model, options)
    inputs = decoder_example_inputs(model, num_objects=2)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    masks = session.run(["masks"], {name: x.numpy() for name, x in inputs.items()})[0]
    with torch.no_grad():
        expected = decoder(**inputs)[0].numpy()
    return float(abs(masks - expected).max())


def quantize(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Write ``source``'s model with its weights in uint8 (onnxruntime's dynamic quantization,
    Meta's settings: per tensor, full range) to ``target``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    external = Path(f"{source}.data").exists()
    # quantize_dynamic advises its pre-processing on the root logger: it made this decoder
    # larger and slower, so it is not done and the advice is kept quiet
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            model_input=source,
            model_output=target,
            per_channel=False,
            reduce_range=False,
            weight_type=QuantType.QUInt8,
            use_external_data_format=external,
        )
    finally:
        root.setLevel(level)
    return target


def _export(
    module: nn.Module,
    inputs: dict[str, torch.Tensor],
    dynamic_shapes: dict,
    output_names: tuple[str, ...],
    path: str | os.PathLike,
    opset: int,
    external_data: bool,
) -> Path:
    if opset < DEFAULT_OPSET:
        raise ValueError(f"opset must be at least {DEFAULT_OPSET} (torch's exporter), got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on every traced shape
        program = torch.onnx.export(
            module,
            kwargs=inputs,
            input_names=list(inputs),
            output_names=list(output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.save(path, external_data=external_data)
    return path
