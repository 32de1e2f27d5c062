"""Text -> three masks: ViT-B-16 CLIP (random weights) with SAM vit_b (random weights),
once the SAM image embedding is cached.

    python benchmarks/bench_text.py [--repeats 3] [--threads N] [--size 512] [--device cuda]

Thresholds are opened (-inf) so that every query runs the whole pipeline: existence, three
prompt sets, SAM on each and CLIP on every candidate's masked crop. A last case closes the
verification gate (+inf), so that the segment-everything proposal fallback runs as well.
Absolute times depend on the machine; random weights cost the same as trained ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prompts.clip_model import ClipModel
from prompts.text_prompter import TextPrompter
from sam import SamPredictor, build_sam, optimize
from sam.weights.random_weights import randomize_weights

TEXTS = ["red circle", "blue square", "green triangle", "yellow star", "a dog", "a cup"]


def sample_image(size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    image[(yy - size // 3) ** 2 + (xx - size // 2) ** 2 < (size // 6) ** 2] = (220, 30, 30)
    image[size // 2 : size // 2 + size // 4, size // 8 : size // 3] = (30, 30, 220)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import open_clip

    torch.manual_seed(0)
    clip_model = open_clip.create_model("ViT-B-16", device=args.device)  # random weights
    clip = ClipModel(clip_model, open_clip.get_tokenizer("ViT-B-16"), name="ViT-B-16")
    predictor = SamPredictor(
        optimize(randomize_weights(build_sam("vit_b"), seed=0)).to(args.device)
    )
    image = sample_image(args.size)
    batches: list[int] = []
    clip.model.visual.conv1.register_forward_hook(lambda m, i, o: batches.append(i[0].shape[0]))

    start = time.perf_counter()
    predictor.set_image(image)
    print(f"device {args.device}, torch threads: {torch.get_num_threads()}, image {args.size}²")
    print(
        f"SAM vit_b image embedding (once per image):          {time.perf_counter() - start:7.3f} s"
    )
    start = time.perf_counter()
    clip.encode_image_dense(image)
    print(
        f"CLIP ViT-B-16 global + dense pass (once per image):  {time.perf_counter() - start:7.3f} s"
    )
    start = time.perf_counter()
    clip.encode_text([f"a photo of a {t}." for t in TEXTS[:4]])
    print(
        f"CLIP text, 4 templates (once per text):              {time.perf_counter() - start:7.3f} s"
    )

    for verify_sets in (None, 1):
        prompter = TextPrompter(
            clip,
            predictor,
            existence_threshold=-np.inf,
            verify_threshold=-np.inf,
            verify_sets=verify_sets,
        )
        label = "all prompt sets" if verify_sets is None else f"best {verify_sets} set(s)"
        start = time.perf_counter()
        prompter.segment(image, TEXTS[0])  # CLIP image pass + negatives + text + SAM + crops
        first = time.perf_counter() - start
        new_text, same_text, crops = [], [], []
        texts = iter(TEXTS[1:] * (args.repeats + 1))
        for _ in range(args.repeats):
            batches.clear()
            start = time.perf_counter()
            prompter.segment(image, next(texts))
            new_text.append(time.perf_counter() - start)
            crops.append(sum(batches))
            start = time.perf_counter()
            prompter.segment(image, TEXTS[0])
            same_text.append(time.perf_counter() - start)
        print(f"-- verify {label}: masked crops per query {crops}")
        print(f"text -> 3 masks, first text on the image:            {first:7.3f} s")
        print(
            f"text -> 3 masks, new text (image features cached):   "
            f"{statistics.median(new_text):7.3f} s (median of {args.repeats})"
        )
        print(
            f"text -> 3 masks, repeated text:                      "
            f"{statistics.median(same_text):7.3f} s (median of {args.repeats})"
        )

    # The worst case: no prompt set passes verification, so the proposal fallback runs too
    # (segment everything on a 16x16 grid once per image, then three proposals verified).
    prompter = TextPrompter(
        clip,
        predictor,
        existence_threshold=-np.inf,
        verify_threshold=np.inf,
        proposal_points=16,  # the fallback is off by default
    )
    start = time.perf_counter()
    prompter.segment(image, TEXTS[1])
    first = time.perf_counter() - start
    again = []
    for text in TEXTS[2 : 2 + args.repeats]:
        start = time.perf_counter()
        prompter.segment(image, text)
        again.append(time.perf_counter() - start)
    print("-- nothing passes verification: peak sets, then the proposal fallback")
    print(f"text -> not found, proposals made for this image:     {first:7.3f} s")
    print(
        f"text -> not found, proposals cached:                  "
        f"{statistics.median(again):7.3f} s (median of {len(again)})"
    )


if __name__ == "__main__":
    main()
