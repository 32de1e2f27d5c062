"""Checks on what callers hand the predictor, so bad input fails early with a clear ValueError
naming the argument instead of an error from deep inside torch."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(name: str, value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from error
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array


def _check_shape(name: str, array: np.ndarray, expected: tuple[int | None, ...], hint: str) -> None:
    ok = array.ndim == len(expected) and all(
        want is None or have == want for have, want in zip(array.shape, expected)
    )
    if not ok:
        raise ValueError(f"{name} must have shape {hint}, got {tuple(array.shape)}")


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_points(
    point_coords: ArrayLike, point_labels: ArrayLike | None, batched: bool = False
) -> None:
    """Coordinates (N, 2) with labels (N,) in {-1, 0, 1}; with a leading batch dim if batched."""
    if point_labels is None:
        raise ValueError("point_labels must be supplied if point_coords is supplied")
    coords = _as_numpy("point_coords", point_coords)
    labels = _as_numpy("point_labels", point_labels)
    if batched:
        _check_shape("point_coords", coords, (None, None, 2), "(B, N, 2)")
        _check_shape("point_labels", labels, coords.shape[:2], f"(B, N) = {coords.shape[:2]}")
    else:
        _check_shape("point_coords", coords, (None, 2), "(N, 2)")
        _check_shape("point_labels", labels, (coords.shape[0],), f"(N,) = ({coords.shape[0]},)")
    _check_finite("point_coords", coords)
    bad = np.setdiff1d(np.unique(labels), [-1, 0, 1])
    if bad.size:
        raise ValueError(
            "point_labels must be 1 (foreground), 0 (background) or -1 (padding), "
            f"got {bad.tolist()}"
        )


def check_boxes(boxes: ArrayLike, name: str = "box", batched: bool = False) -> None:
    """XYXY boxes: (4,) or (1, 4), or (B, 4) if batched; x0 <= x1 and y0 <= y1."""
    array = _as_numpy(name, boxes)
    if batched:
        _check_shape(name, array, (None, 4), "(B, 4) as XYXY")
    elif array.shape not in ((4,), (1, 4)):
        raise ValueError(f"{name} must have shape (4,) or (1, 4) as XYXY, got {array.shape}")
    _check_finite(name, array)
    array = array.reshape(-1, 4)
    if np.any(array[:, 0] > array[:, 2]) or np.any(array[:, 1] > array[:, 3]):
        raise ValueError(f"{name} must be XYXY with x0 <= x1 and y0 <= y1, got {array.tolist()}")


def check_mask_input(
    mask_input: ArrayLike, size: tuple[int, int], batch: int | None = None
) -> None:
    """Low-res mask logits: (1, h, w), or (B, 1, h, w) when a batch size is given."""
    array = _as_numpy("mask_input", mask_input)
    if batch is None:
        _check_shape("mask_input", array, (1, *size), f"(1, {size[0]}, {size[1]})")
    else:
        _check_shape("mask_input", array, (batch, 1, *size), f"({batch}, 1, {size[0]}, {size[1]})")
    _check_finite("mask_input", array)
