"""``python -m sam export-onnx``: the model as ONNX files, Meta's interface and options."""

from __future__ import annotations

import argparse
from pathlib import Path

from sam.cli.common import EXIT_OK, UsageError, load_model
from sam.onnx_export import (
    DEFAULT_OPSET,
    ONNX_FILES,
    DecoderOptions,
    export_onnx,
    verify_decoder,
)

MISSING_EXTRA = "exporting needs onnx, onnxscript and onnxruntime: pip install sam-toolkit[onnx]"


def add_export_onnx_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export-onnx",
        help="write the prompt encoder + mask decoder, and the image encoder, as ONNX models",
        description="Write OUT/" + ", OUT/".join(ONNX_FILES.values()) + " (the quantized ones "
        "with --quantize). The decoder has the inputs of Meta's exported decoder "
        "(image_embeddings, point_coords, point_labels, mask_input, has_mask_input, "
        "orig_im_size), with any number of objects per call; SAM 2's takes image_embed, "
        "high_res_feats_0 and high_res_feats_1 (its encoder's outputs) for image_embeddings "
        "and also outputs object_score_logits.",
    )
    parser.add_argument("--out", default="sam_onnx", help="output folder (default: sam_onnx)")
    parser.add_argument(
        "--model",
        default="vit_b",
        help="vit_b, vit_l, vit_h, or SAM 2.1's sam2.1_tiny, sam2.1_small, sam2.1_base_plus, "
        "sam2.1_large (Meta's weights), demo, a checkpoint file or folder, or a Hugging Face "
        "repo id (default: vit_b)",
    )
    parser.add_argument(
        "--return-single-mask",
        action="store_true",
        help="one mask per object instead of all four (SAM: the best for one click; SAM 2: "
        "its predictor's choice for one mask)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, at least {DEFAULT_OPSET} (default {DEFAULT_OPSET})",
    )
    parser.add_argument(
        "--quantize", action="store_true", help="also write the int8 (dynamic) quantized models"
    )
    parser.add_argument(
        "--gelu-approximate",
        action="store_true",
        help="GELU through tanh, for runtimes with a slow or missing Erf",
    )
    parser.add_argument(
        "--use-stability-score",
        action="store_true",
        help="the masks' stability score in place of the predicted IoU",
    )
    parser.add_argument(
        "--no-encoder", action="store_true", help="only the decoder (the encoder is large)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # exported in float32 from the CPU whatever the machine
    parser.set_defaults(handler=export_onnx_command, device="cpu", precision="fp32")


def export_onnx_command(args: argparse.Namespace) -> int:
    """Export, then run the decoder once with onnxruntime against the PyTorch model."""
    if args.opset < DEFAULT_OPSET:
        raise UsageError(f"--opset must be at least {DEFAULT_OPSET}, got {args.opset}")
    options = DecoderOptions(
        return_single_mask=args.return_single_mask,
        use_stability_score=args.use_stability_score,
        gelu_approximate=args.gelu_approximate,
    )
    model = load_model(args)
    try:
        written = export_onnx(
            model,
            args.out,
            options,
            opset=args.opset,
            encoder=not args.no_encoder,
            quantized=args.quantize,
            progress=not args.quiet,
        )
        difference = verify_decoder(model, written["decoder"], options)
    except ImportError as error:
        raise UsageError(f"{MISSING_EXTRA} ({error})") from error
    except ValueError as error:
        raise UsageError(f"cannot export {args.model!r}: {error}") from error
    for path in written.values():
        print(f"wrote {path} ({_size_mb(path):.1f} MB)")
    print(f"decoder checked with onnxruntime: logits within {difference:.1e} of PyTorch's")
    return EXIT_OK


def _size_mb(path: Path) -> float:
    data = Path(f"{path}.data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6
