"""What every command shares: finding and reading the images, running over them with a
progress bar and resumption, loading the model, parsing prompts, writing results."""

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


def generator_settings(args: argparse.Namespace) -> dict:
    """The ``everything`` command's AutomaticMaskGenerator keyword arguments: its --preset,
    overridden by the GENERATOR_OPTIONS given."""
    from sam.automatic.generator import PRESETS

    settings = dict(PRESETS[args.preset]) if args.preset != "default" else {}
    for name in GENERATOR_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    return settings


def add_common_options(
    parser: argparse.ArgumentParser, mask_files: bool = True, inputs: bool = True
) -> None:
    if inputs:
        parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", default="sam_output", help="output folder (default: sam_output)")
    parser.add_argument(
        "--model",
        default=None,
        help="vit_b, vit_l, vit_h, or SAM 2.1's sam2.1_tiny, sam2.1_small, sam2.1_base_plus, "
        "sam2.1_large (Meta's weights, downloaded once), demo, a checkpoint file or folder, or "
        "a Hugging Face repo id (default: sam2.1_tiny on a CPU, vit_b on a GPU)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    parser.add_argument(
        "--precision",
        default="auto",
        help="image encoder precision: auto, fp32, bf16, fp16 or int8 (CPU) (default: auto)",
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
