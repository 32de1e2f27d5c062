"""``python -m sam``: Segment Anything from the command line.

    python -m sam everything photos/ --out masks/          # every object in every image
    python -m sam everything "shots/*.jpg" --preset sa1b    # the SA-1B data-engine settings
    python -m sam segment photo.jpg --points 120,80 --out masks/
    python -m sam segment scene.png --text "red circle" --model demo
    python -m sam edges photos/ --out edges/                # zero-shot edge maps
    python -m sam proposals photos/ --top-k 100             # ranked object proposals
    python -m sam instances val2017/ --detections dets.json # one mask per detector box
    python -m sam evaluate --model demo --scenes 50         # mIoU table (paper's protocol)

Inputs may be image files, folders (their images, not recursively) or glob patterns. Results
already in --out are skipped, so an interrupted run can simply be started again. An image that
cannot be read or segmented is reported and skipped; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from sam.io.images import IMAGE_SUFFIXES, read_image

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line input (no such file, nothing to do); exit code 2."""


# -- inputs ------------------------------------------------------------------------------------


def find_images(inputs: Iterable[str]) -> list[Path]:
    """Image files named by ``inputs`` (files, folders or glob patterns), in order, once each."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
        else:
            raise UsageError(f"no such file, folder or pattern: {item}")
        if not matches:
            raise UsageError(f"no images found in {item} (looked for {', '.join(IMAGE_SUFFIXES)})")
        found.extend(matches)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    stems: dict[str, Path] = {}
    for path in unique:
        if path.stem in stems:
            raise UsageError(
                f"{stems[path.stem]} and {path} would both write results named {path.stem}; "
                "rename one or run them separately with different --out folders"
            )
        stems[path.stem] = path
    return unique


# -- commands ----------------------------------------------------------------------------------


def run_over_images(
    args: argparse.Namespace,
    process: Callable[[np.ndarray, Path, Path], None],
    result_suffix: str = ".json",
) -> int:
    """Call ``process(image, image_path, result_path)`` for each input whose result file
    (OUT/NAME + result_suffix) is not there yet, with a progress bar; report failures and go
    on. ``process`` must write the result file last (an image counts as done once it exists)."""
    from tqdm import tqdm

    images = args.images
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {p: out / f"{p.stem}{result_suffix}" for p in images}
    todo = [p for p in images if args.overwrite or not result[p].exists()]
    skipped = len(images) - len(todo)
    if skipped:
        print(f"skipping {skipped} image(s) already done in {out} (--overwrite to redo)")
    failed = []
    for path in tqdm(todo, unit="image", desc=args.command, disable=args.quiet or not todo):
        try:
            process(read_image(path), path, result[path])
        except (ValueError, RuntimeError, OSError, MemoryError) as error:
            failed.append(path)
            tqdm.write(f"error: {path}: {error}", file=sys.stderr)
    done = len(todo) - len(failed)
    print(f"{done} image(s) done, {skipped} skipped, {len(failed)} failed; results in {out}")
    return EXIT_FAILED if failed else EXIT_OK


def load_model(args: argparse.Namespace):
    from sam.weights.checkpoint import CheckpointError, load_sam

    try:
        return load_sam(args.model, device=args.device, precision=args.precision)
    except (CheckpointError, ValueError) as error:
        raise UsageError(f"could not load model {args.model!r}: {error}") from error


def write_extras(args: argparse.Namespace, image: np.ndarray, records: list, json_path: Path):
    from sam.io.export import save_mask_pngs, save_overlay

    if args.save_masks:
        save_mask_pngs(records, json_path.with_suffix(""))
    if args.save_overlay:
        save_overlay(json_path.with_name(f"{json_path.stem}_overlay.png"), image, records)


def everything(args: argparse.Namespace) -> int:
    """Automatic mask generation: one SA-1B style JSON per image."""
    from sam.automatic.generator import PRESETS, AutomaticMaskGenerator
    from sam.io.export import to_sa1b, write_json

    settings = dict(PRESETS[args.preset]) if args.preset != "default" else {}
    for name in GENERATOR_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    generator = AutomaticMaskGenerator(load_model(args), output_mode="coco_rle", **settings)
    position = {p: i for i, p in enumerate(args.images)}

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
        records = generator.generate(image)
        height, width = image.shape[:2]
        image_id = args.first_id + position[path]
        write_extras(args, image, records, json_path)
        write_json(json_path, to_sa1b(records, image_id, path.name, height, width))

    return run_over_images(args, process)


def segment(args: argparse.Namespace) -> int:
    """Prompted segmentation: the best mask for the given points, box and/or text, per image."""
    import torch

    from sam.io.export import to_sa1b, write_json
    from sam.predictor import SamPredictor

    points, labels = parse_points(args.points)
    box = parse_box(args.box)
    text = None if args.text is None else args.text.strip()
    if text == "":
        raise UsageError("--text is empty: say what to segment, e.g. --text 'red circle'")
    if points is None and box is None and text is None:
        raise UsageError("segment needs --points, --box and/or --text")
    predictor = SamPredictor(load_model(args))
    prompter = None if text is None else text_prompter(args, predictor)

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
        if prompter is not None:
            result = prompter.segment(image, text, points, labels, box)
            if not result.found:
                raise ValueError(f"{result.message} (nothing written)")
            best = result.best  # its full-size logits, for a real stability score
            low_res = torch.as_tensor(best.low_res_logits, device=predictor.device)[None]
            size = predictor.input_size, predictor.original_size
            logits = predictor.model.postprocess_masks(low_res, *size)[0, 0].cpu().numpy()
            records = [mask_record(logits, best.iou, points)]
        else:
            predictor.set_image(image)
            logits, scores, _ = predictor.predict(
                points, labels, box, multimask_output=not args.single_mask, return_logits=True
            )
            best = int(np.argmax(scores))
            records = [mask_record(logits[best], float(scores[best]), points)]
        write_extras(args, image, records, json_path)
        height, width = image.shape[:2]
        write_json(json_path, to_sa1b(records, 0, path.name, height, width))

    return run_over_images(args, process)


def text_prompter(args: argparse.Namespace, predictor):
    """The text branch for ``args.model``: the bundled tiny CLIP for the demo model, ViT-B-16
    (DataComp) from the Hub for Meta's models."""
    from prompts.text_models import clip_kind, load_text_model
    from prompts.text_prompter import TextPrompter

    try:
        text_model = load_text_model(clip_kind(args.model))
    except (RuntimeError, OSError) as error:  # ClipLoadError is a RuntimeError
        raise UsageError(str(error)) from error
    if text_model.note:
        print(text_model.note, file=sys.stderr)
    return TextPrompter(text_model.clip, predictor, **text_model.options)


def edges(args: argparse.Namespace) -> int:
    """Zero-shot edge detection: OUT/NAME_edges.png per image (0..255 edge strength)."""
    from PIL import Image

    from sam.tasks.edges import detect_edges

    model = load_model(args)

    def process(image: np.ndarray, path: Path, png_path: Path) -> None:
        edge_map = detect_edges(model, image, points_per_side=args.points_per_side)
        partial = png_path.with_name(png_path.name + ".partial")
        Image.fromarray((edge_map * 255).round().astype(np.uint8)).save(partial, format="PNG")
        partial.replace(png_path)

    return run_over_images(args, process, result_suffix="_edges.png")


def proposals(args: argparse.Namespace) -> int:
    """Zero-shot object proposals: OUT/NAME.json per image, COCO results ranked by score."""
    from sam.io.export import to_coco_results, write_json
    from sam.tasks.proposals import generate_proposals

    model = load_model(args)
    position = {p: i for i, p in enumerate(args.images)}

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
        records = generate_proposals(
            model, image, top_k=args.top_k, points_per_side=args.points_per_side
        )
        image_id = args.first_id + position[path]
        write_json(json_path, to_coco_results(records, image_id, score_key="score"))

    return run_over_images(args, process)


def instances(args: argparse.Namespace) -> int:
    """Zero-shot instances from detector boxes: OUT/NAME.json per image, COCO results."""
    from sam.io.export import write_json
    from sam.tasks.instances import segment_boxes

    detections = read_detections(Path(args.detections), args.images, args.coco_images)
    model = load_model(args)

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
        image_id, records = detections.get(path, (None, []))
        if image_id is None:
            raise ValueError(f"no detections for this image in {args.detections}")
        boxes = np.array([r["bbox"] for r in records], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # XYWH -> XYXY
        results = segment_boxes(
            model,
            image,
            boxes,
            np.array([r.get("score", 1.0) for r in records]),
            np.array([r.get("category_id", 1) for r in records]),
            image_id,
        )
        write_json(json_path, results)

    return run_over_images(args, process)


def read_detections(
    path: Path, images: list[Path], coco_images: str | None
) -> dict[Path, tuple[int, list[dict]]]:
    """A COCO results JSON ([{"image_id", "bbox": XYWH, "score", "category_id"}, ...]) ->
    {image path: (image_id, its detections)}. Image ids are matched to files through the
    "images" list of ``coco_images`` (a COCO annotation file) or else by the number in the
    file name (COCO's 000000000139.jpg is image 139)."""
    import json

    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"--detections: cannot read {path}: {error}") from error
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and "image_id" in r and len(r.get("bbox", ())) == 4 for r in records
    ):
        raise UsageError(
            f"--detections: {path} is not a COCO results list of "
            '{"image_id", "bbox": [x, y, w, h], "score", "category_id"} records'
        )
    if coco_images:
        try:
            listed = json.loads(Path(coco_images).read_text())["images"]
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"--coco-images: no COCO images list in {coco_images}") from error
        id_of_name = {Path(info["file_name"]).name: int(info["id"]) for info in listed}
        ids = {p: id_of_name.get(p.name) for p in images}
    else:
        ids = {p: int(p.stem) if p.stem.isdigit() else None for p in images}
    by_id: dict[int, list[dict]] = {}
    for record in records:
        by_id.setdefault(int(record["image_id"]), []).append(record)
    return {p: (i, by_id.get(i, [])) for p, i in ids.items() if i is not None}


def evaluate(args: argparse.Namespace) -> int:
    """The paper's mIoU protocol on a dataset; prints the table, writes OUT/results.md and
    OUT/<dataset>.json."""
    from sam.evaluate import evaluate as evaluate_dataset
    from sam.evaluate import write_report
    from sam.predictor import SamPredictor
    from sam.train.data import CocoDataset, SA1BDataset, SceneDataset

    if args.sa1b:
        samples, name = SA1BDataset(args.sa1b), Path(args.sa1b).name
    elif args.coco:
        samples, name = CocoDataset(*args.coco), Path(args.coco[0]).stem
    else:
        samples, name = SceneDataset(args.seed, args.scenes), "scenes_held_out"
    if not len(samples):
        raise UsageError(f"the dataset {name!r} holds no images")
    from tqdm import tqdm

    progress = tqdm(samples, total=len(samples), unit="image", desc="evaluate", disable=args.quiet)
    result = evaluate_dataset(
        SamPredictor(load_model(args)), progress, name, num_points=args.num_points
    )
    report = write_report([result], args.out)
    print(report.read_text(), end="")
    print(f"{result.num_masks} masks; results in {args.out}")
    return EXIT_OK if result.num_masks else EXIT_FAILED


def mask_record(logits: np.ndarray, score: float, points: np.ndarray | None) -> dict:
    """A prompted mask's (H, W) logits in the automatic generator's record layout."""
    import torch

    from sam.automatic.mask_ops import calculate_stability_score
    from sam.io.masks import batched_mask_to_box, box_xyxy_to_xywh

    logits_torch = torch.as_tensor(logits)
    mask = logits_torch > 0.0
    height, width = mask.shape
    return {
        "segmentation": mask.numpy(),
        "area": int(mask.sum()),
        "bbox": box_xyxy_to_xywh(batched_mask_to_box(mask)).tolist(),
        "predicted_iou": score,
        "point_coords": [] if points is None else points.tolist(),
        "stability_score": float(calculate_stability_score(logits_torch, 0.0, 1.0).nan_to_num()),
        "crop_box": [0, 0, width, height],
    }


def parse_points(text: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """ "x,y[,label];..." (label 1 = object, 0 = background; default 1) -> (N, 2), (N,)."""
    if not text:
        return None, None
    coords, labels = [], []
    for item in text.split(";"):
        values = [v.strip() for v in item.split(",")]
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            numbers = []
        if len(numbers) not in (2, 3) or (len(numbers) == 3 and numbers[2] not in (0, 1)):
            raise UsageError(f"--points: expected x,y or x,y,label (label 0 or 1), got {item!r}")
        coords.append(numbers[:2])
        labels.append(int(numbers[2]) if len(numbers) == 3 else 1)
    return np.array(coords), np.array(labels)


def parse_box(text: str | None) -> np.ndarray | None:
    """ "x0,y0,x1,y1" -> (4,) XYXY."""
    if not text:
        return None
    try:
        box = np.array([float(v) for v in text.split(",")])
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or box[0] > box[2] or box[1] > box[3]:
        raise UsageError(f"--box: expected x0,y0,x1,y1 with x0 <= x1 and y0 <= y1, got {text!r}")
    return box


# -- argument parsing --------------------------------------------------------------------------

GENERATOR_OPTIONS = {
    "points_per_side": (int, "grid points along each side of the image (default 32)"),
    "points_per_batch": (int, "points decoded at once; lower it to save memory (default 64)"),
    "pred_iou_thresh": (float, "keep masks whose predicted IoU is above this (default 0.88)"),
    "stability_score_thresh": (float, "keep masks at least this stable (default 0.95)"),
    "box_nms_thresh": (float, "box IoU above which duplicates are removed (default 0.7)"),
    "crop_n_layers": (int, "also run on 2x2, 4x4, ... crops for small objects (default 0)"),
    "crop_n_points_downscale_factor": (int, "fewer points per crop layer (default 1)"),
    "min_mask_region_area": (int, "remove holes and islands under this many pixels (default 0)"),
}


def add_common_options(
    parser: argparse.ArgumentParser, mask_files: bool = True, inputs: bool = True
) -> None:
    if inputs:
        parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", default="sam_output", help="output folder (default: sam_output)")
    parser.add_argument(
        "--model",
        default="vit_b",
        help="vit_b, vit_l or vit_h (Meta's weights, downloaded once), demo, a checkpoint file "
        "or folder, or a Hugging Face repo id (default: vit_b)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    parser.add_argument(
        "--precision",
        default="auto",
        help="image encoder precision: auto, fp32, bf16 or fp16 (default: auto)",
    )
    if mask_files:
        parser.add_argument(
            "--save-masks", action="store_true", help="also write one PNG per mask in OUT/NAME/"
        )
        parser.add_argument(
            "--save-overlay", action="store_true", help="also write OUT/NAME_overlay.png"
        )
    parser.add_argument("--overwrite", action="store_true", help="redo images already done")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_first_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--first-id", type=int, default=0, help="image_id of the first image (default 0)"
    )


def add_points_per_side(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--points-per-side",
        type=int,
        default=default,
        help=f"grid points per side (default {default})",
    )


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
        "--text",
        help='what to segment, e.g. "red circle" (CLIP; combines with --points and --box); an '
        "image where it is not found counts as failed",
    )
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if "inputs" in args:
            args.images = find_images(args.inputs)  # bad paths fail before the model loads
        return args.handler(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
