"""Encoder and decoder speed, peak memory and bf16/int8 fidelity: ours against the reference
``segment_anything`` package and transformers' ``SamModel``, on the same random vit_b weights.

    python benchmarks/bench_predictor.py [--model vit_b] [--repeats 3] [--device cuda]

Ratios are computed within one run on one machine; absolute times depend on the machine.
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

from benchmarks.memory import fresh_process_peak_mb
from sam import SamPredictor, build_sam, optimize
from sam.fast.int8 import quantize_encoder
from sam.io.masks import mask_iou
from sam.weights.precision import apply_precision, resolve_precision
from sam.weights.random_weights import randomize_weights
from tests.reference import build_reference_sam, build_transformers_sam


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call (CUDA work waited for)."""

    def call():
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sample_image() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8, public domain


def peak_memory_mb(which: str, model_name: str) -> float:
    """Peak resident memory of a fresh process that builds the model and encodes one image."""
    call = f"encode_once({which!r}, {model_name!r})"
    return fresh_process_peak_mb(f"from benchmarks.bench_predictor import encode_once; {call}")


def encode_once(which: str, model_name: str) -> None:
    model = build_sam(model_name)
    if which == "reference":
        from segment_anything import SamPredictor as ReferencePredictor

        predictor = ReferencePredictor(build_reference_sam(model.config, model.state_dict()))
        del model
    else:
        apply_precision(optimize(model), resolve_precision("auto", torch.device("cpu")))
        predictor = SamPredictor(model)
    with torch.no_grad():
        predictor.set_image(sample_image())


def gpu_peak_memory_mb(models: dict, pixels: torch.Tensor) -> None:
    """Peak CUDA memory allocated while encoding one image (weights included)."""
    print("\npeak CUDA memory allocated encoding one image, weights included (MB)")
    for name, encode in models.items():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            encode(pixels)
        print(f"  {name:28s} {torch.cuda.max_memory_allocated() / 2**20:7.0f} MB")


def parity_on_device(ours, reference, pixels: torch.Tensor) -> None:
    """fp32 embeddings of ours and the reference on this device (TF32 off)."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        difference = (ours.encode_image(pixels) - reference.image_encoder(pixels)).abs().max()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    print(f"fp32 embedding, ours vs reference on {pixels.device}: max |diff| {difference:.2e}")


def decoder_only_ms(predictor, model) -> float:
    """Prompt encoder + mask decoder on the cached embedding, low-res logits out (no upscaling
    to the image), as transformers' figure: median ms over 30."""
    coords = torch.tensor([[[512.0, 400.0]]], device=predictor.device)
    labels = torch.ones((1, 1), dtype=torch.int, device=predictor.device)

    @torch.no_grad()
    def decode():
        sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        if hasattr(predictor, "decode"):  # ours: the shared image-side decoding
            return predictor.decode(sparse, dense, multimask_output=True)
        return model.mask_decoder(
            image_embeddings=predictor.features,
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )

    return 1000 * timed(decode, 30)


def report_fidelity(fast_predictor, ours, image: np.ndarray, label, auto_dtype) -> None:
    """The reduced-precision encoder against our fp32 path: same weights, same image."""
    fp32_predictor = SamPredictor(ours)
    fp32_predictor.set_image(image)
    fast, exact = fast_predictor.features, fp32_predictor.features
    rel_error = float((fast - exact).norm() / exact.norm())
    rng = np.random.default_rng(0)
    ious, agreement = [], []
    for xy in rng.uniform(0, 512, size=(20, 2)):
        a, _, _ = fast_predictor.predict(xy[None], label)
        b, _, _ = fp32_predictor.predict(xy[None], label)
        ious.append(mask_iou(a, b))  # the three masks together
        agreement.append((a == b).mean())
    print(f"\nfidelity of '{auto_dtype}' vs fp32 (20 random points, 3 masks each)")
    print(f"  embedding relative error (L2)  {rel_error:.4f}")
    print(f"  thresholded mask IoU           mean {np.mean(ious):.4f}, min {np.min(ious):.4f}")
    print(f"  pixel agreement                mean {np.mean(agreement):.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    ours = optimize(randomize_weights(build_sam(args.model), seed=0)).to(device)
    state_dict = ours.state_dict()
    reference = build_reference_sam(ours.config, state_dict).to(device)
    hf_model = build_transformers_sam(ours.config, state_dict).to(device)
    auto_dtype = resolve_precision("auto", device)
    ours_auto = optimize(randomize_weights(build_sam(args.model), seed=0)).to(device)
    apply_precision(ours_auto, auto_dtype)
    ours_int8 = None
    if device.type == "cpu":
        ours_int8 = optimize(randomize_weights(build_sam(args.model), seed=0))
        quantize_encoder(ours_int8)

    side = ours.config.image_size
    pixels = reference.preprocess(torch.rand(3, side, side, device=device) * 255)[None]
    threads = f"{torch.get_num_threads()} threads" if device.type == "cpu" else device
    print(f"model {args.model}, {threads}, torch {torch.__version__}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
        parity_on_device(ours, reference, pixels)
    print(f"precision 'auto' on this device: {auto_dtype}")

    with torch.no_grad():
        encoder = {
            "reference fp32": timed(lambda: reference.image_encoder(pixels), args.repeats),
            "transformers fp32": timed(lambda: hf_model.get_image_embeddings(pixels), args.repeats),
            "ours fp32": timed(lambda: ours.encode_image(pixels), args.repeats),
            f"ours auto ({auto_dtype})": timed(
                lambda: ours_auto.encode_image(pixels), args.repeats
            ),
        }
        if ours_int8 is not None:
            encoder["ours int8"] = timed(lambda: ours_int8.encode_image(pixels), args.repeats)
    base, hf_time = encoder["reference fp32"], encoder["transformers fp32"]
    print("\nimage encoder, one 1024x1024 image (median seconds)")
    for name, seconds in encoder.items():
        print(
            f"  {name:28s} {seconds:7.2f} s   {seconds / base:5.2f}x reference   "
            f"{seconds / hf_time:5.2f}x transformers"
        )

    from segment_anything import SamPredictor as ReferencePredictor

    image = sample_image()
    predictors = {"reference": ReferencePredictor(reference), "ours": SamPredictor(ours_auto)}
    for predictor in predictors.values():
        predictor.set_image(image)
    point, label = np.array([[256, 200]]), np.array([1])
    print(
        "\ndecoding one point prompt, embedding cached (median ms over 30): predict(), upscaled "
        "to the image; decoder only: low-res logits"
    )
    decode = {}
    for name, predictor in predictors.items():
        decode[name] = timed(lambda p=predictor: p.predict(point, label), 30) * 1000
        print(f"  {name:28s} {decode[name]:7.1f} ms")
    embedding = predictors["ours"].features
    with torch.no_grad():
        hf_ms = 1000 * timed(
            lambda: hf_model(
                image_embeddings=embedding,
                input_points=torch.tensor([[[[512.0, 400.0]]]], device=device),
                input_labels=torch.tensor([[[1]]], device=device),
            ),
            30,
        )
    print(f"  {'transformers (decoder only)':28s} {hf_ms:7.1f} ms")
    for name, model in (("reference", reference), ("ours", ours_auto)):
        print(
            f"  {name + ' (decoder only)':28s} {decoder_only_ms(predictors[name], model):7.1f} ms"
        )

    # Fidelity of the reduced-precision paths: same weights, same image, against fp32.
    if auto_dtype == torch.float32:
        print("\nprecision 'auto' is fp32 here: no reduced-precision path to check")
    else:
        report_fidelity(predictors["ours"], ours, image, label, auto_dtype)
    if ours_int8 is not None:
        int8_predictor = SamPredictor(ours_int8)
        int8_predictor.set_image(image)
        report_fidelity(int8_predictor, ours, image, label, "int8")

    if device.type == "cuda":
        gpu_peak_memory_mb(
            {
                "reference fp32": reference.image_encoder,
                "ours fp32": ours.encode_image,
                f"ours auto ({auto_dtype})": ours_auto.encode_image,
            },
            pixels,
        )
        return
    print("\npeak resident memory of a fresh process encoding one image (MB)")
    for which in ("ours", "reference"):
        print(f"  {which:28s} {peak_memory_mb(which, args.model):7.0f} MB")
    print("  (Python, torch and the model weights included)")


if __name__ == "__main__":
    main()
