"""The exported ONNX decoder through onnxruntime (CPU): its speed against our PyTorch predictor,
and the int8-quantized decoder's masks against the float32 decoder's.

    python benchmarks/bench_onnx.py [--scenes 50] [--points 50] [--repeats 30]

- speed: vit_b (random weights), one point on a 512x512 photo, embedding cached: our
  ``SamPredictor.predict`` against onnxruntime running the fp32, int8 and single-mask exports;
  and on one thread, as the page runs it, the decoder run alone: Meta's interface (masks at the
  image's size) against the page's low-res decoder (:mod:`sam.onnx_lowres`);
- fidelity: the demo model (trained) on held-out generated scenes, the paper's protocol
  (:mod:`sam.evaluate`) decoded by the fp32 and the int8 export, and the agreement of their
  top masks for the centre point of every object; the same agreement for vit_b's random
  weights on random points of the photo (what int8 rounding does to an untrained decoder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sam import SamPredictor, build_sam, load_sam
from sam.evaluate import center_point, evaluate, markdown_table
from sam.io.masks import mask_iou
from sam.onnx_export import DecoderOptions, export_decoder, export_lowres_decoder, quantize
from sam.onnx_model import decoder_inputs
from sam.train.data import SceneDataset
from sam.weights.random_weights import randomize_weights


class OnnxPredictor:
    """``set_image`` through our predictor (the embedding), ``predict`` through an exported
    decoder: the methods :func:`sam.evaluate.evaluate` needs."""

    def __init__(self, predictor: SamPredictor, path: Path, threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.torch = predictor
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )

    def set_image(self, image: np.ndarray) -> None:
        self.torch.set_image(image)

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, **kwargs):
        multimask = kwargs.get("multimask_output", True)
        inputs = decoder_inputs(
            self.torch.get_image_embedding(),
            self.torch.original_size,
            self.torch.model.image_encoder.img_size,
            point_coords,
            point_labels,
            box,
            mask_input,
        )
        masks, scores, low_res = self.session.run(None, inputs)
        outputs = slice(1, None) if multimask and masks.shape[1] > 1 else slice(0, 1)
        return masks[0, outputs] > 0, scores[0, outputs], low_res[0, outputs]


def median_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each call, the calls taking turns so that a busy spell of a
    shared machine slows them all alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 1):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def top_mask(predictor, point: np.ndarray) -> np.ndarray:
    masks, scores, _ = predictor.predict(point_coords=point[None], point_labels=np.array([1]))
    return masks[int(np.argmax(scores))]


def agreement(a, b, images_and_points) -> list[float]:
    """IoU of the top masks of predictors ``a`` and ``b`` for each (image, point)."""
    ious = []
    for image, points in images_and_points:
        a.set_image(image)
        b.set_image(image)
        ious += [mask_iou(top_mask(a, p), top_mask(b, p)) for p in points]
    return ious


def describe(ious: list[float]) -> str:
    ious = np.asarray(ious)
    return (
        f"mean {ious.mean():.4f}, median {np.median(ious):.4f}, min {ious.min():.4f}, "
        f"{(ious >= 0.9).mean():.1%} of {len(ious)} at least 0.9"
    )


def export_pair(model, folder: Path, name: str) -> tuple[Path, Path]:
    fp32 = export_decoder(model, folder / f"{name}.onnx")
    return fp32, quantize(fp32, folder / f"{name}.quant.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=50, help="held-out scenes (seed 1)")
    parser.add_argument("--points", type=int, default=50, help="random points on the photo")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    folder = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    from skimage import data

    photo = data.astronaut()

    print(f"# speed: vit_b (random weights), one point, 512x512 photo, {threads} threads")
    vit_b = randomize_weights(build_sam("vit_b"), seed=0)
    fp32, int8 = export_pair(vit_b, folder, "vit_b")
    single = export_decoder(vit_b, folder / "single.onnx", DecoderOptions(return_single_mask=True))
    predictor = SamPredictor(load_sam(_saved(vit_b, folder), device="cpu", precision="fp32"))
    predictor.set_image(photo)
    point = dict(point_coords=np.array([[250.0, 200.0]]), point_labels=np.array([1]))
    calls = {"PyTorch SamPredictor.predict": lambda: predictor.predict(**point)}
    for label, path in (("fp32", fp32), ("int8", int8), ("fp32 single mask", single)):
        onnx_predictor = OnnxPredictor(predictor, path, threads)
        calls[f"onnxruntime {label}"] = lambda p=onnx_predictor: p.predict(**point)
    times = median_ms(calls, args.repeats)
    for name, ms in times.items():
        ratio = ms / times["PyTorch SamPredictor.predict"]
        print(f"{name}: {ms:.1f} ms ({ratio:.2f}x PyTorch's time)")
    page_decoders(predictor, fp32, export_lowres_decoder(vit_b, folder / "lowres.onnx"), args)
    onnx_fp32, onnx_int8 = (OnnxPredictor(predictor, p, threads) for p in (fp32, int8))
    rng = np.random.default_rng(0)
    points = [(photo, rng.uniform(0, 512, (args.points, 2)).astype(np.float32))]
    print(
        "vit_b top masks, fp32 export against PyTorch:",
        describe(agreement(onnx_fp32, predictor, points)),
    )
    print(
        "vit_b top masks, int8 against fp32 export:",
        describe(agreement(onnx_int8, onnx_fp32, points)),
    )

    print(f"\n# fidelity: demo model, {args.scenes} held-out scenes (seed 1)")
    demo = SamPredictor(load_sam("demo", device="cpu", precision="fp32"))
    fp32, int8 = export_pair(demo.model, folder, "demo")
    onnx_fp32, onnx_int8 = (OnnxPredictor(demo, p, threads) for p in (fp32, int8))
    scenes = [
        (s.image, np.array([center_point(m) for m in s.masks]))
        for s in SceneDataset(1, args.scenes)
    ]
    print(
        "demo top masks (centre points), int8 against fp32:",
        describe(agreement(onnx_int8, onnx_fp32, scenes)),
    )
    results = []
    for label, onnx_predictor in (("fp32", onnx_fp32), ("int8", onnx_int8)):
        samples = SceneDataset(1, args.scenes)
        results.append(evaluate(onnx_predictor, samples, f"demo ONNX {label}"))
    print(markdown_table(results))
    print(
        "sizes:",
        ", ".join(
            f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in sorted(folder.glob("*.onnx"))
        ),
    )


def page_decoders(predictor: SamPredictor, meta: Path, lowres: Path, args) -> None:
    """One click's decoder run on one thread (the page's onnxruntime-web runs on one unless it
    is cross-origin isolated): Meta's interface against the low-res decoder."""
    height, width = predictor.original_size
    inputs = decoder_inputs(
        predictor.get_image_embedding(), (height, width), 1024, np.array([[250.0, 200.0]]), [1]
    )
    calls = {}
    for label, path in ((f"masks at {width}x{height}", meta), ("low-res only", lowres)):
        session = OnnxPredictor(predictor, path, threads=1).session
        feed = {i.name: inputs[i.name] for i in session.get_inputs()}
        calls[f"onnxruntime 1 thread, decoder {label}"] = lambda s=session, f=feed: s.run(None, f)
    for name, ms in median_ms(calls, args.repeats).items():
        print(f"{name}: {ms:.1f} ms")


def _saved(model, folder: Path) -> Path:
    from sam import save_checkpoint

    return save_checkpoint(model, folder / "vit_b.safetensors")


if __name__ == "__main__":
    main()
