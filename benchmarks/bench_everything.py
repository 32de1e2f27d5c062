"""Everything mode (automatic mask generation): time per image, ours against the reference
``segment_anything.SamAutomaticMaskGenerator`` on the same random weights and image, and
whether the masks match.

    python benchmarks/bench_everything.py [--model vit_b] [--points-per-side 32] [--relaxed]

Each generator runs once per setting (the vit_b encoder alone takes seconds on a CPU); the
encoder time is measured separately so the post-encoder speed-up can be read off too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sam import build_sam, optimize
from sam.automatic.generator import AutomaticMaskGenerator
from sam.weights.precision import apply_precision, resolve_precision
from sam.weights.random_weights import randomize_weights
from tests.reference import build_reference_sam


def sample_image() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, public domain


def matched_fraction(ours: list[dict], theirs: list[dict], min_iou: float = 0.95) -> float:
    """Fraction of the reference's masks that one of ours matches with mask IoU >= min_iou."""
    if not ours or not theirs:
        return float(len(ours) == len(theirs))
    # Empty masks (kept when nothing is filtered) have IoU 0 with everything; match them by count.
    our_empty = sum(r["area"] == 0 for r in ours)
    their_empty = sum(r["area"] == 0 for r in theirs)
    ours = [r for r in ours if r["area"]]
    theirs = [r for r in theirs if r["area"]]
    empty_matched = min(our_empty, their_empty)
    if not ours or not theirs:
        return empty_matched / max(their_empty + len(theirs), 1)
    encode = [
        [mask_utils.encode(np.asfortranarray(r["segmentation"].astype(np.uint8))) for r in rs]
        for rs in (ours, theirs)
    ]
    ious = mask_utils.iou(encode[0], encode[1], [0] * len(theirs))
    matched = int(np.sum(ious.max(axis=0) >= min_iou)) + empty_matched
    return matched / (len(theirs) + their_empty)


def timed_generate(generator, image: np.ndarray) -> tuple[list[dict], float]:
    start = time.perf_counter()
    records = generator.generate(image)
    return records, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument(
        "--relaxed",
        action="store_true",
        help="also run with no IoU and stability filtering (every candidate is upsampled)",
    )
    args = parser.parse_args()
    from segment_anything import SamAutomaticMaskGenerator

    ours = optimize(randomize_weights(build_sam(args.model), seed=0)).eval()
    reference = build_reference_sam(ours.config, ours.state_dict())
    auto_dtype = resolve_precision("auto", torch.device("cpu"))
    ours_auto = optimize(randomize_weights(build_sam(args.model), seed=0)).eval()
    apply_precision(ours_auto, auto_dtype)
    image = sample_image()
    print(
        f"model {args.model} (random weights, fp32), image {image.shape[1]}x{image.shape[0]}, "
        f"{args.points_per_side}x{args.points_per_side} grid, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    settings = {"default thresholds": {}}
    if args.relaxed:
        settings["no IoU/stability filter"] = {
            "pred_iou_thresh": 0.0,
            "stability_score_thresh": 0.0,
        }

    with torch.no_grad():
        side = ours.config.image_size
        pixels = reference.preprocess(torch.rand(3, side, side) * 255)[None]
        start = time.perf_counter()
        reference.image_encoder(pixels)
        encoder_seconds = time.perf_counter() - start
    print(f"reference image encoder alone: {encoder_seconds:.1f} s")

    for name, overrides in settings.items():
        kwargs = {"points_per_side": args.points_per_side, **overrides}
        theirs, ref_seconds = timed_generate(SamAutomaticMaskGenerator(reference, **kwargs), image)
        print(f"\n{name} {kwargs}")
        print(f"  reference          {ref_seconds:7.1f} s   {len(theirs):5d} masks")
        for label, model in (("ours fp32", ours), (f"ours auto ({auto_dtype})", ours_auto)):
            mine, our_seconds = timed_generate(AutomaticMaskGenerator(model, **kwargs), image)
            print(
                f"  {label:18s} {our_seconds:7.1f} s   {len(mine):5d} masks   "
                f"{ref_seconds / our_seconds:5.2f}x faster   "
                f"{matched_fraction(mine, theirs):.3f} of the reference's masks matched"
            )


if __name__ == "__main__":
    main()
