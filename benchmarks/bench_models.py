"""Upload to first mask across models: SAM vit_b (ours and Meta's reference) and each SAM 2.1
size (ours, transformers' Sam2Model and Meta's sam2), random weights, one image; and the peak
memory of a process serving SAM 2.1 tiny.

    python benchmarks/bench_models.py [--sizes tiny small] [--repeats 5]

"Upload to first mask" is what a person waits for after an upload: the image from a uint8 array
through the resize and the encoder, then one point prompt to masks at the image's size (three
candidates). Ratios are against the reference vit_b measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.memory import fresh_process_peak_mb
from sam import EmbeddingCache, SamPredictor, build_sam, build_sam2, optimize
from sam.modeling.sam2 import SAM2_CONFIGS
from sam.weights.precision import apply_precision, resolve_precision
from sam.weights.random_weights import randomize_weights

POINT = np.array([[256.0, 200.0]])  # on the astronaut's face
LABEL = np.array([1])
FirstMask = Callable[[np.ndarray], object]  # image -> masks, embedding not cached


def sample_image() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, public domain


def round_robin(functions: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each function over ``rounds`` rounds, each round calling every function
    once in turn after one warm-up call each, so that a shared machine's changing load weighs on
    every case alike."""
    for fn in functions.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


# -- the cases: (name, builder); a builder returns the upload-to-first-mask function -----------


def ours(name: str, precision: str) -> FirstMask:
    """Our model by name (random weights, optimized as load_sam returns it) behind SamPredictor,
    with a fresh cache per upload so the encoder always runs."""
    sam2 = name in SAM2_CONFIGS
    model = optimize(randomize_weights(build_sam2(name) if sam2 else build_sam(name), seed=0))
    encoder = "hiera" if sam2 else "vit"
    apply_precision(model, resolve_precision(precision, torch.device("cpu"), encoder))

    def first_mask(image: np.ndarray):
        predictor = SamPredictor(model, cache=EmbeddingCache())
        predictor.set_image(image)
        return predictor.predict(POINT, LABEL)

    return first_mask


def reference_vit_b() -> FirstMask:
    from segment_anything import SamPredictor as ReferencePredictor

    from tests.reference import build_reference_sam

    model = randomize_weights(build_sam("vit_b"), seed=0)
    predictor = ReferencePredictor(build_reference_sam(model.config, model.state_dict()))

    def first_mask(image: np.ndarray):
        predictor.set_image(image)
        return predictor.predict(POINT, LABEL)

    return first_mask


def meta_sam2(name: str) -> FirstMask:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from tests.reference_sam2 import build_meta_sam2

    predictor = SAM2ImagePredictor(build_meta_sam2(SAM2_CONFIGS[name]))

    def first_mask(image: np.ndarray):
        predictor.set_image(image)
        return predictor.predict(POINT, LABEL)

    return first_mask


def transformers_sam2(name: str) -> FirstMask:
    from transformers import Sam2ImageProcessor, Sam2Processor

    from tests.reference_sam2 import build_transformers_sam2

    model = build_transformers_sam2(SAM2_CONFIGS[name])
    processor = Sam2Processor(image_processor=Sam2ImageProcessor())

    def first_mask(image: np.ndarray):
        inputs = processor(
            images=image,
            input_points=[[POINT.tolist()]],
            input_labels=[[LABEL.tolist()]],
            return_tensors="pt",
        )
        outputs = model(**inputs, multimask_output=True)
        return processor.post_process_masks(outputs.pred_masks, inputs["original_sizes"])

    return first_mask


def cases(sizes: list[str]) -> list[tuple[str, Callable[[], FirstMask]]]:
    """Every case timed, the reference vit_b first (the ratios' base)."""
    listed: list[tuple[str, Callable[[], FirstMask]]] = [
        ("reference vit_b fp32", reference_vit_b),
        ("ours vit_b fp32", lambda: ours("vit_b", "fp32")),
        ("ours vit_b int8", lambda: ours("vit_b", "int8")),
        ("ours vit_b auto", lambda: ours("vit_b", "auto")),
    ]
    for size in sizes:
        name = f"sam2.1_{size}"
        listed += [
            (f"meta sam2 {name} fp32", lambda n=name: meta_sam2(n)),
            (f"transformers {name} fp32", lambda n=name: transformers_sam2(n)),
            (f"ours {name} fp32", lambda n=name: ours(n, "fp32")),
            (f"ours {name} bf16", lambda n=name: ours(n, "bf16")),
            (f"ours {name} auto", lambda n=name: ours(n, "auto")),
        ]
    return listed


# -- peak memory ----------------------------------------------------------------------------


def serve_once(name: str, precision: str) -> None:
    """What a process serving ``name`` holds at its peak: the model and one upload's masks."""
    with torch.no_grad():
        ours(name, precision)(sample_image())


def peak_memory_mb(name: str, precision: str) -> float:
    """Peak resident memory of a fresh process that serves one upload."""
    call = f"serve_once({name!r}, {precision!r})"
    return fresh_process_peak_mb(f"from benchmarks.bench_models import serve_once; {call}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", nargs="+", default=["tiny", "small"], help="SAM 2.1 sizes (default: tiny small)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    args = parser.parse_args()
    unknown = [s for s in args.sizes if f"sam2.1_{s}" not in SAM2_CONFIGS]
    if unknown:
        parser.error(f"unknown sizes {unknown}: tiny, small, base_plus, large")
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    auto = {e: resolve_precision("auto", cpu, e) for e in ("vit", "hiera")}
    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"'auto' is {auto['vit']} for SAM, {auto['hiera']} for SAM 2.1 here"
    )

    image = sample_image()
    with torch.no_grad():
        functions = {name: partial(build(), image) for name, build in cases(args.sizes)}
        seconds = round_robin(functions, args.repeats)
    base = seconds["reference vit_b fp32"]
    print(
        f"\nupload to first mask, one {image.shape[1]}x{image.shape[0]} image "
        f"(median of {args.repeats} rounds, seconds)"
    )
    for name, median in seconds.items():
        print(f"  {name:32s} {median:7.2f} s   {median / base:5.2f}x reference vit_b")

    print("\npeak resident memory of a fresh process serving one upload (MB)")
    for name, precision in (("sam2.1_tiny", "auto"), ("sam2.1_tiny", "bf16"), ("vit_b", "auto")):
        print(f"  {name:16s} {precision:6s} {peak_memory_mb(name, precision):7.0f} MB")
    print(f"  {'import torch only':23s} {fresh_process_peak_mb('import torch'):7.0f} MB")


if __name__ == "__main__":
    main()
