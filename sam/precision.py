"""Choosing the device and the image encoder's precision."""

from __future__ import annotations

from functools import lru_cache

import torch

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return False
    names = set(flags.split())
    return bool(names & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The encoder dtype for "auto" | "fp32" | "bf16" | "fp16" on ``device``.

    "auto": bf16 where the hardware has it natively (CUDA with bf16; CPUs with AVX512-BF16 or
    AMX), fp16 on other CUDA GPUs, fp32 elsewhere.
    """
    if precision in PRECISIONS:
        return PRECISIONS[precision]
    if precision != "auto":
        raise ValueError(
            f"precision must be one of auto, {', '.join(PRECISIONS)}; got {precision!r}"
        )
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
