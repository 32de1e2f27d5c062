"""The commands of ``python -m sam``: one function each, taking the parsed arguments and
returning the exit code."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sam.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    generator_settings,
    load_model,
    mask_record,
    parse_box,
    parse_points,
    run_over_images,
    write_extras,
)
from sam.cli.ray_engine import check_engine_options, everything_on_ray


def everything(args: argparse.Namespace) -> int:
    """Automatic mask generation: one SA-1B style JSON per image."""
    check_engine_options(args)
    if args.engine == "ray":
        return everything_on_ray(args)
    from sam.automatic.generator import AutomaticMaskGenerator
    from sam.io.export import to_sa1b, write_json

    settings = generator_settings(args)
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
    """Prompted segmentation: the best mask for the given points and/or box, per image."""
    from sam.io.export import to_sa1b, write_json
    from sam.predictor import SamPredictor

    points, labels = parse_points(args.points)
    box = parse_box(args.box)
    if points is None and box is None:
        raise UsageError(
            "segment needs --points and/or --box (text: python -m prompts segment-text)"
        )
    predictor = SamPredictor(load_model(args))

    def process(image: np.ndarray, path: Path, json_path: Path) -> None:
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
