"""Writing SAM and SAM 2 as ONNX models: the prompt encoder + mask decoder in one file (Meta's
interface, :class:`~sam.onnx_model.SamOnnxDecoder`; for SAM 2 the same with the image features
in three, :class:`~sam.onnx_sam2.Sam2OnnxDecoder`), the image encoder in another, and their
int8-quantized versions through onnxruntime's dynamic quantization; and the decoder the
browser runs (:mod:`sam.onnx_lowres`: low-res logits only).

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

from sam import onnx_lowres, onnx_model, onnx_sam2
from sam.modeling.sam import Sam, build_sam
from sam.modeling.sam2 import Sam2, build_sam2
from sam.onnx_lowres import LOWRES_DECODER_OUTPUTS, Sam2OnnxLowResDecoder, SamOnnxLowResDecoder
from sam.onnx_model import SamOnnxDecoder, SamOnnxEncoder
from sam.onnx_sam2 import (
    SAM2_DECODER_OUTPUTS,
    SAM2_ENCODER_OUTPUTS,
    Sam2OnnxDecoder,
    Sam2OnnxEncoder,
    sam2_decoder_example_inputs,
)

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

    return_single_mask: one mask per object (see :class:`SamOnnxDecoder`, and for SAM 2
    :class:`Sam2OnnxDecoder`) instead of all four;
    use_stability_score: the masks' stability (IoU at threshold +-1) in place of the predicted
    IoU; gelu_approximate: GELU through tanh, for runtimes whose ``Erf`` is slow or missing
    (changes the numbers slightly).
    """

    return_single_mask: bool = False
    use_stability_score: bool = False
    gelu_approximate: bool = False


def _check_exportable(model: Sam | Sam2, sam2: bool = False) -> None:
    """``model`` is a SAM (or with ``sam2`` a SAM 2) with a config, else ValueError."""
    kinds = (Sam, Sam2) if sam2 else (Sam,)
    if not isinstance(model, kinds):
        covered = "SAM (vit_b/l/h, demo)" + (" and SAM 2 (sam2.1_*)" if sam2 else "")
        raise ValueError(f"ONNX export covers {covered}, not {type(model).__name__}")
    if model.config is None:
        raise ValueError("the model has no config (build it with build_sam or load_sam)")


def _build_like(model: Sam | Sam2) -> Sam | Sam2:
    """A new plain model of ``model``'s kind and config."""
    return build_sam2(model.config) if isinstance(model, Sam2) else build_sam(model.config)


def plain_float_copy(model: Sam | Sam2) -> Sam | Sam2:
    """A new plain (unoptimized) float32 CPU model with ``model``'s weights."""
    _check_exportable(model, sam2=True)
    state_dict = model.state_dict()
    if not all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in state_dict.values()):
        raise ValueError("only float models can be exported (load with precision 'fp32', not int8)")
    copy = _build_like(model)
    copy.load_state_dict({name: value.detach().float().cpu() for name, value in state_dict.items()})
    return copy.eval()


def plain_decoder_copy(model: Sam | Sam2) -> Sam | Sam2:
    """A plain float32 CPU copy of ``model``'s prompt encoder and mask decoder, whatever the
    rest of it is; the copy's image encoder is a shape only (on the meta device), which the
    decoder never runs."""
    with torch.device("meta"):
        copy = _build_like(model)
    for name in ("prompt_encoder", "mask_decoder"):
        weights = {
            k: v.detach().float().cpu() for k, v in getattr(model, name).state_dict().items()
        }
        getattr(copy, name).to_empty(device="cpu").load_state_dict(weights)
    return copy.eval()


def decoder_module(
    model: Sam | Sam2, options: DecoderOptions | None = None
) -> SamOnnxDecoder | Sam2OnnxDecoder:
    """The module that :func:`export_decoder` exports, on a plain float32 copy of ``model``'s
    prompt encoder and mask decoder."""
    options = options or DecoderOptions()
    _check_exportable(model, sam2=True)
    plain = plain_decoder_copy(model)
    if options.gelu_approximate:
        for module in plain.modules():
            if isinstance(module, nn.GELU):
                module.approximate = "tanh"
    wrapper = Sam2OnnxDecoder if isinstance(model, Sam2) else SamOnnxDecoder
    return wrapper(plain, options.return_single_mask, options.use_stability_score)


def decoder_example_inputs(
    model: Sam | Sam2, num_objects: int = 1, num_points: int = 3
) -> dict[str, torch.Tensor]:
    """Random inputs of the decoder's interface: every value is legal, none special."""
    if isinstance(model, Sam2):
        return sam2_decoder_example_inputs(model, num_objects, num_points)
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
    model: Sam | Sam2,
    path: str | os.PathLike,
    options: DecoderOptions | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the prompt encoder + mask decoder of ``model`` to ``path`` (one self-contained
    file): inputs ``DECODER_INPUTS``, outputs ``DECODER_OUTPUTS`` (for SAM 2
    :mod:`sam.onnx_sam2`'s), any number of objects, points and image sizes."""
    decoder = decoder_module(model, options)
    objects, points = torch.export.Dim("num_objects"), torch.export.Dim("num_points")
    # two objects, so that the traced graph cannot treat their number as the constant 1
    inputs = decoder_example_inputs(model, num_objects=2)
    dynamic_shapes = {name: None for name in inputs} | {
        "point_coords": {0: objects, 1: points},
        "point_labels": {0: objects, 1: points},
        "mask_input": {0: objects},
    }
    outputs = SAM2_DECODER_OUTPUTS if isinstance(model, Sam2) else DECODER_OUTPUTS
    return _export(decoder, inputs, dynamic_shapes, outputs, path, opset, False)


def export_lowres_decoder(
    model: Sam | Sam2, path: str | os.PathLike, opset: int = DEFAULT_OPSET
) -> Path:
    """Write the decoder the browser runs to ``path``: :class:`SamOnnxLowResDecoder` (for SAM 2
    :class:`Sam2OnnxLowResDecoder`), the inputs of :func:`export_decoder`'s but orig_im_size,
    outputs ``LOWRES_DECODER_OUTPUTS``, any number of objects and points."""
    _check_exportable(model, sam2=True)
    wrapper = Sam2OnnxLowResDecoder if isinstance(model, Sam2) else SamOnnxLowResDecoder
    decoder = wrapper(plain_decoder_copy(model))
    objects, points = torch.export.Dim("num_objects"), torch.export.Dim("num_points")
    inputs = decoder_example_inputs(model, num_objects=2)
    del inputs["orig_im_size"]
    dynamic_shapes = {name: None for name in inputs} | {
        "point_coords": {0: objects, 1: points},
        "point_labels": {0: objects, 1: points},
        "mask_input": {0: objects},
    }
    return _export(decoder, inputs, dynamic_shapes, LOWRES_DECODER_OUTPUTS, path, opset, False)


def export_encoder(model: Sam | Sam2, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write the image encoder of ``model`` to ``path``: input ``x`` (B, 3, S, S) preprocessed
    as :meth:`Sam.preprocess` does, output ``image_embeddings``; for SAM 2 input ``image``
    (:meth:`Sam2.preprocess`), outputs :class:`Sam2OnnxEncoder`'s three features. Weights over
    2 GB (vit_h) go to ``path`` + ``.data`` beside it, as ONNX requires."""
    plain = plain_float_copy(model)
    if isinstance(plain, Sam2):
        side, name, outputs = plain.image_size, "image", SAM2_ENCODER_OUTPUTS
        encoder: nn.Module = Sam2OnnxEncoder(plain)
    else:
        side, name, outputs = plain.image_encoder.img_size, "x", ("image_embeddings",)
        encoder = SamOnnxEncoder(plain)
    inputs = {name: torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))}
    dynamic_shapes = {name: {0: torch.export.Dim("batch")}}
    large = sum(p.numel() for p in plain.image_encoder.parameters()) * 4 >= 2**31
    return _export(encoder, inputs, dynamic_shapes, outputs, path, opset, large)


def export_onnx(
    model: Sam | Sam2,
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


_cached_decoders: weakref.WeakKeyDictionary[Sam | Sam2, Path] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
# torch.export is not thread-safe: two traces at once (a page's background export of its
# decoder and another export) corrupt each other's graphs; nor is warnings.catch_warnings
_export_lock = threading.Lock()


def cached_decoder(model: Sam | Sam2, folder: str | os.PathLike) -> Path:
    """``folder``/decoder-lowres-HASH.onnx: the decoder the browser runs for ``model``
    (:func:`export_lowres_decoder`), exported on first use and then reused (also by later
    processes), HASH naming its weights, config and exporter."""
    with _cache_lock:
        known = _cached_decoders.get(model)
        if known is not None and known.exists():
            return known
        digest = hashlib.sha256(f"{model.config} {DEFAULT_OPSET} {torch.__version__}".encode())
        for module in (onnx_lowres, onnx_model, onnx_sam2):  # the code that makes the graph
            digest.update(Path(module.__file__).read_bytes())
        for part in (model.prompt_encoder, model.mask_decoder):
            for name, tensor in part.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().float().cpu().numpy().tobytes())
        path = Path(folder) / f"decoder-lowres-{digest.hexdigest()[:20]}.onnx"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.partial")
            export_lowres_decoder(model, partial)
            partial.replace(path)  # whole or absent, for readers in other processes
        _cached_decoders[model] = path
        return path


def verify_decoder(
    model: Sam | Sam2, path: str | os.PathLike, options: DecoderOptions | None = None
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
    with _export_lock, torch.no_grad(), warnings.catch_warnings():
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
