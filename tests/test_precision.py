from __future__ import annotations

import warnings

import pytest
import torch

from sam.weights import precision
from sam.weights.precision import resolve_device, resolve_precision


def test_explicit_precisions(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_fp16"}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native on this (pretended) CPU: no warning
        assert resolve_precision("fp32", cpu) == torch.float32
        assert resolve_precision("bf16", cpu) == torch.bfloat16
        assert resolve_precision("fp16", cpu) == torch.float16


def test_emulated_precision_on_cpu_warns(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    with pytest.warns(UserWarning, match="precision 'bf16' on this CPU.*avx512_bf16"):
        assert resolve_precision("bf16", cpu) == torch.bfloat16
    with pytest.warns(UserWarning, match="precision 'fp16' on this CPU.*avx512_fp16"):
        assert resolve_precision("fp16", cpu) == torch.float16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("fp32", cpu) == torch.float32
        assert resolve_precision("auto", cpu) == torch.float32  # auto never picks emulation


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512_vnni", "avx512_bf16"}, torch.qint8),  # int8 dot products first
        ({"avx2", "avx_vnni"}, torch.qint8),
        ({"avx2", "avx512_bf16"}, torch.bfloat16),
        ({"avx2", "fma"}, torch.float32),
    ],
)
def test_auto_on_cpu_follows_the_cpus_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", torch.device("cpu")) == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512_vnni", "avx512_bf16"}, torch.bfloat16),  # native bf16 first for Hiera
        ({"avx2", "avx_vnni"}, torch.qint8),
        ({"avx2", "fma"}, torch.float32),
    ],
)
def test_auto_for_hiera_prefers_native_bf16(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert resolve_precision("auto", torch.device("cpu"), encoder="hiera") == expected


def test_cpu_flag_detection_reads_cpuinfo():
    with open("/proc/cpuinfo") as cpuinfo:
        flags = cpuinfo.read()
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert precision.cpu_has_native_bf16() == expected


def test_bad_values():
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int4", torch.device("cpu"))
    with pytest.raises(ValueError, match="encoder"):
        resolve_precision("auto", torch.device("cpu"), encoder="convnet")
    assert resolve_precision("int8", torch.device("cpu")) == torch.qint8
    with pytest.raises(ValueError, match="device"):
        resolve_device("banana")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
        assert resolve_device(None) == torch.device("cpu")
