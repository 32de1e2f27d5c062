"""``python -m sam``: Segment Anything from the command line.

    python -m sam everything photos/ --out masks/          # every object in every image
    python -m sam everything "shots/*.jpg" --preset sa1b    # the SA-1B data-engine settings
    python -m sam everything s3://b/photos --out s3://b/masks --engine ray  # on a Ray cluster
    python -m sam segment photo.jpg --points 120,80 --out masks/
    python -m sam edges photos/ --out edges/                # zero-shot edge maps
    python -m sam proposals photos/ --top-k 100             # ranked object proposals
    python -m sam instances val2017/ --detections dets.json # one mask per detector box
    python -m sam evaluate --model demo --scenes 50         # mIoU table (paper's protocol)
    python -m sam export-onnx --model vit_b --quantize      # ONNX decoder and encoder

Inputs may be image files, folders (their images, not recursively) or glob patterns. Results
already in --out are skipped, so an interrupted run can simply be started again. An image that
cannot be read or segmented is reported and skipped; the exit code is then 1. Text prompts
(through CLIP) are ``python -m prompts segment-text``.
"""

from __future__ import annotations

import argparse
import sys

from sam.cli.commands import edges, evaluate, everything, instances, proposals, segment
from sam.cli.common import (
    EXIT_USAGE,
    GENERATOR_OPTIONS,
    UsageError,
    add_common_options,
    add_first_id,
    add_points_per_side,
    find_images,
)
from sam.cli.onnx_command import add_export_onnx_parser
from sam.cli.ray_engine import add_engine_options
from sam.weights.checkpoint import suggested_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sam",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    parser_everything = commands.add_parser(
        "everything",
        help="find every object in each image (automatic mask generation)",
        description="Prompt SAM with a grid of points and keep the confident, stable, "
        "non-duplicate masks. Writes OUT/NAME.json per image in the SA-1B layout "
        '({"image": ..., "annotations": [...]}, masks as COCO RLE).',
    )
    add_common_options(parser_everything)
    parser_everything.add_argument(
        "--preset",
        choices=["default", "sa1b"],
        default="default",
        help="default: the reference generator's defaults; sa1b: the SA-1B data engine "
        "(32x32 grid plus two crop layers, small regions removed; slower)",
    )
    add_first_id(parser_everything)
    for name, (kind, text) in GENERATOR_OPTIONS.items():
        parser_everything.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    add_engine_options(parser_everything)
    parser_everything.set_defaults(handler=everything)

    parser_segment = commands.add_parser(
        "segment",
        help="segment what the given points and/or box point at",
        description="Segment the object given by points and/or a box (in pixels of the "
        "original image), the same prompts for every image. Writes OUT/NAME.json.",
    )
    add_common_options(parser_segment)
    parser_segment.add_argument(
        "--points", help='"x,y[,label];..." with label 1 = object (default), 0 = background'
    )
    parser_segment.add_argument("--box", help='"x0,y0,x1,y1"')
    parser_segment.add_argument(
        "--single-mask", action="store_true", help="one output instead of the best of three"
    )
    parser_segment.set_defaults(handler=segment)

    parser_edges = commands.add_parser(
        "edges",
        help="zero-shot edge maps (SAM paper, section 7.2)",
        description="Edges from a grid of point prompts: Sobel on the mask probabilities of "
        "the non-duplicate masks, max over masks, normalised and thinned. Writes "
        "OUT/NAME_edges.png (0..255).",
    )
    add_common_options(parser_edges, mask_files=False)
    add_points_per_side(parser_edges, 16)
    parser_edges.set_defaults(handler=edges)

    parser_proposals = commands.add_parser(
        "proposals",
        help="zero-shot object proposals (SAM paper, section 7.3)",
        description="Ranked object proposals: a 64x64 grid, no crops, NMS 0.9, ranked by the "
        "mean of predicted IoU and stability. Writes OUT/NAME.json as COCO results.",
    )
    add_common_options(parser_proposals, mask_files=False)
    add_points_per_side(parser_proposals, 64)
    parser_proposals.add_argument(
        "--top-k", type=int, default=1000, help="proposals kept per image (default 1000)"
    )
    add_first_id(parser_proposals)
    parser_proposals.set_defaults(handler=proposals)

    parser_instances = commands.add_parser(
        "instances",
        help="zero-shot instance segmentation from detector boxes (SAM paper, section 7.4)",
        description="Each detector box prompts SAM; its single-output mask is the instance. "
        "Writes OUT/NAME.json per image as COCO results (RLE masks), ready for COCOeval.",
    )
    add_common_options(parser_instances, mask_files=False)
    parser_instances.add_argument(
        "--detections",
        required=True,
        help='a COCO results JSON of boxes: [{"image_id", "bbox": [x, y, w, h], "score", '
        '"category_id"}, ...]',
    )
    parser_instances.add_argument(
        "--coco-images",
        help="a COCO annotation file whose images list maps image_id to file_name (default: "
        "the number in the file name, as in COCO's 000000000139.jpg)",
    )
    parser_instances.set_defaults(handler=instances)

    parser_evaluate = commands.add_parser(
        "evaluate",
        help="mIoU from 1 point (paper's point and random), boxes and 1-9 interactive points",
        description="The SAM paper's single-point valid-mask protocol (oracle of 3 and top "
        "confidence), box prompts and the interactive curve. Dataset: generated scenes "
        "(default), an SA-1B folder or a COCO instance file. Writes OUT/results.md and "
        "OUT/<dataset>.json.",
    )
    add_common_options(parser_evaluate, mask_files=False, inputs=False)
    source = parser_evaluate.add_mutually_exclusive_group()
    source.add_argument("--sa1b", help="an SA-1B style folder (image + JSON pairs)")
    source.add_argument(
        "--coco",
        nargs=2,
        metavar=("ANNOTATIONS", "IMAGES"),
        help="a COCO instance file and its image folder",
    )
    parser_evaluate.add_argument(
        "--scenes", type=int, default=50, help="generated scenes to use (default 50)"
    )
    parser_evaluate.add_argument(
        "--seed", type=int, default=1, help="seed of the generated scenes (default 1: held out)"
    )
    parser_evaluate.add_argument(
        "--num-points", type=int, default=9, help="points of the interactive curve (default 9)"
    )
    parser_evaluate.set_defaults(handler=evaluate)

    add_export_onnx_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "model", "") is None:
            args.model = suggested_model(args.device)
        if "inputs" in args and getattr(args, "engine", "local") == "local":
            args.images = find_images(args.inputs)  # bad paths fail before the model loads
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
