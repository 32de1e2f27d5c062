"""Choosing the device and the image encoder's precision."""

from __future__ import annotations

import sys
import warnings
from functools import lru_cache
from pathlib import Path

import torch

from sam.fast.int8 import quantize_encoder
from sam.modeling.sam import Sam

# "int8" quantizes the encoder's linear layers (sam.fast.int8); its other tensors stay float32
PRECISIONS = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "int8": torch.qint8,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or "auto" picks CUDA when present, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    return resolved


# CPU flags whose instructions do arithmetic in a reduced precision natively
NATIVE_CPU_FLAGS = {
    torch.bfloat16: {"avx512_bf16", "amx_bf16"},
    torch.float16: {"avx512_fp16", "amx_fp16"},
}
# CPU flags of int8 dot-product instructions (without them int8 still runs, on AVX2's)
INT8_DOT_PRODUCT_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return frozenset()
    return frozenset(flags.split())


def cpu_has_native(dtype: torch.dtype) -> bool:
    """True when the CPU has instructions for ``dtype``'s arithmetic (see NATIVE_CPU_FLAGS)."""
    return bool(cpu_flags() & NATIVE_CPU_FLAGS.get(dtype, set()))


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    return cpu_has_native(torch.bfloat16)


def warn_if_emulated(precision: str, device: torch.device) -> None:
    """Warn when ``precision`` ("bf16", "fp16") was asked for on a CPU that has no instructions
    for it: torch then emulates it, many times slower than fp32 (docs/benchmarks.md)."""
    dtype = PRECISIONS[precision]
    if device.type != "cpu" or dtype not in NATIVE_CPU_FLAGS or cpu_has_native(dtype):
        return
    warnings.warn(
        f"precision {precision!r} on this CPU, which has no {precision} instructions "
        f"({' or '.join(sorted(NATIVE_CPU_FLAGS[dtype]))}): torch emulates it, many times "
        "slower than fp32; precision 'auto' picks fp32 here",
        stacklevel=_first_frame_outside_package(),
    )


def _first_frame_outside_package() -> int:
    """The ``stacklevel`` of the nearest caller outside ``sam/``, so that a warning points at
    the user's line (``load_sam(...)``), not at ours."""
    package = str(Path(__file__).parents[1])
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError naming what is wrong unless ``precision`` is one :func:`resolve_precision`
    takes on ``device``."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}"
        )
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only, not on {device}")


def resolve_precision(precision: str, device: torch.device, encoder: str = "vit") -> torch.dtype:
    """The dtype of an image encoder (``encoder``: "vit" for SAM, "hiera" for SAM 2) for
    "auto" | "fp32" | "bf16" | "fp16" | "int8" on ``device`` (``torch.qint8`` for int8, which
    runs on the CPU only).

    "auto": on CUDA bf16 where the GPU has it, else fp16. On the CPU it never picks an emulated
    precision: for ViT, int8 where the CPU has int8 dot-product instructions (VNNI, AMX), which
    measured faster than bf16 there with masks as close to fp32, else native bf16; for Hiera,
    native bf16 first (as fast as int8 there, with less memory), else int8; else fp32
    (docs/benchmarks.md).
    """
    check_precision(precision, device)
    if encoder not in ("vit", "hiera"):
        raise ValueError(f"encoder must be 'vit' or 'hiera', got {encoder!r}")
    if precision in PRECISIONS:
        warn_if_emulated(precision, device)
        return PRECISIONS[precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type != "cpu":
        return torch.float32
    int8 = bool(cpu_flags() & INT8_DOT_PRODUCT_FLAGS)
    order = [(int8, torch.qint8), (cpu_has_native_bf16(), torch.bfloat16)]
    if encoder == "hiera":
        order.reverse()
    return next((dtype for available, dtype in order if available), torch.float32)


def apply_precision(model: Sam, dtype: torch.dtype) -> Sam:
    """Run ``model``'s image encoder in ``dtype`` (from :func:`resolve_precision`): int8
    quantizes its linear layers (:mod:`sam.fast.int8`), other dtypes cast it."""
    if dtype == torch.qint8:
        return quantize_encoder(model)
    return model.set_encoder_dtype(dtype)
