"""``python -m prompts``: text prompts (through CLIP) from the command line.

    python -m prompts segment-text scene.png "red circle" --model demo --out masks/
    python -m prompts segment-text photo.jpg "dog" --points 120,80 --box 10,10,300,200

Inputs may be image files, folders (their images, not recursively) or glob patterns; the text
comes last. Each image gets OUT/NAME.json in the SA-1B layout with the best mask of what the
text describes. An image where the text is not found, or that cannot be read, is reported and
skipped; the exit code is then 1. Clicks and boxes alone are ``python -m sam segment``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from prompts.model_shelf import clip_kind, load_text_model
from prompts.text_prompter import TextPrompter
from sam.cli import common


def text_prompter(model_name: str, predictor) -> TextPrompter:
    """The text branch for the SAM model ``model_name``: the bundled tiny CLIP for the demo
    model, ViT-B-16 (DataComp) from the Hub for Meta's models."""
    try:
        text_model = load_text_model(clip_kind(model_name))
    except (RuntimeError, OSError) as error:  # ClipLoadError is a RuntimeError
        raise common.UsageError(str(error)) from error
    if text_model.note:
        print(text_model.note, file=sys.stderr)
    return text_model.prompter(predictor)


def segment_text(args: argparse.Namespace) -> int:
    """The best mask of what the text describes (with the given points and box), per image."""
    import torch

    from sam import SamPredictor
    from sam.io.export import to_sa1b, write_json

    points, labels = common.parse_points(args.points)
    box = common.parse_box(args.box)
    text = args.text.strip()
    if not text:
        raise common.UsageError("the text is empty: say what to segment, e.g. 'red circle'")
    predictor = SamPredictor(common.load_model(args))
    prompter = text_prompter(args.model, predictor)

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
        result = prompter.segment(image, text, points, labels, box)
        if not result.found:
            raise ValueError(f"{result.message} (nothing written)")
        best = result.best  # its full-size logits, for a real stability score
        low_res = torch.as_tensor(best.low_res_logits, device=predictor.device)[None]
        size = predictor.input_size, predictor.original_size
        logits = predictor.model.postprocess_masks(low_res, *size)[0, 0].cpu().numpy()
        records = [common.mask_record(logits, best.iou, points)]
        common.write_extras(args, image, records, json_path)
        height, width = image.shape[:2]
        write_json(json_path, to_sa1b(records, 0, path.name, height, width))

    return common.run_over_images(args, process)


def build_parser() -> argparse.ArgumentParser:
    usage, details = __doc__.split("\n\n", 1)
    parser = argparse.ArgumentParser(
        prog="python -m prompts",
        description=usage.split(": ", 1)[1],
        epilog=details,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    segment_text_parser = subparsers.add_parser(
        "segment-text",
        help="segment what a text describes (CLIP finds it, SAM segments it)",
        description="Segment the object a text describes, optionally with points and/or a box "
        "(in pixels of the original image) that extend, cut or restrict it; the same prompts "
        "for every image. Writes OUT/NAME.json; an image where the text is not found counts "
        "as failed.",
    )
    common.add_common_options(segment_text_parser)
    segment_text_parser.add_argument("text", help='what to segment, e.g. "red circle"')
    segment_text_parser.add_argument(
        "--points", help='"x,y[,label];..." with label 1 = object (default), 0 = background'
    )
    segment_text_parser.add_argument("--box", help='"x0,y0,x1,y1"')
    segment_text_parser.set_defaults(handler=segment_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.images = common.find_images(args.inputs)  # bad paths fail before the models load
        return args.handler(args)
    except common.UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return common.EXIT_USAGE
