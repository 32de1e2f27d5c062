"""Evaluating a predictor the way the SAM paper does (Kirillov et al. 2023, sec. 7.1, app. D).

For every ground-truth mask: one point (the paper's point, farthest from the mask boundary, or a
random point in the mask) scored both as the oracle of the three outputs and as the output of
highest predicted IoU; a box prompt (the mask's tight box); and an interactive curve where each
further point is drawn from the error region (as in :mod:`sam.train.simulation`) and the previous
best low-res logits are fed back as the mask prompt.

Any object with the :class:`sam.predictor.SamPredictor` methods ``set_image`` and ``predict``
can be evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.ndimage import distance_transform_edt

from sam.io.masks import mask_box, mask_iou
from sam.train.data import Sample
from sam.train.simulation import next_point, sample_point


class Predictor(Protocol):
    def set_image(self, image: np.ndarray) -> None: ...

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def center_point(mask: np.ndarray) -> np.ndarray:
    """The paper's point: the (x, y) (2,) float32 pixel of ``mask`` (H, W) farthest from its
    boundary (the image border counts as boundary)."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    distance = distance_transform_edt(padded)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return np.array([x, y], dtype=np.float32)


@dataclass
class EvalResult:
    """Mean IoUs over ``num_masks`` masks of one dataset; ``interactive[k]`` is after k + 1
    points."""

    dataset: str
    num_masks: int = 0
    center_oracle: float = 0.0
    center_top: float = 0.0
    random_oracle: float = 0.0
    random_top: float = 0.0
    box: float = 0.0
    interactive: list[float] = field(default_factory=list)


def _single_point(
    predictor: Predictor, point: np.ndarray, truth: np.ndarray
) -> tuple[float, float]:
    """(oracle-of-3 IoU, top-confidence IoU) for one foreground point."""
    masks, scores, _ = predictor.predict(
        point_coords=point[None], point_labels=np.array([1]), multimask_output=True
    )
    ious = [mask_iou(m, truth) for m in masks]
    return max(ious), ious[int(np.argmax(scores))]


def _interactive(
    predictor: Predictor, truth: np.ndarray, rng: np.random.Generator, num_points: int
) -> list[float]:
    """IoU after 1..num_points points: the paper's point first (top-confidence of three), then
    error-region points with the previous best low-res logits as the mask prompt."""
    coords = center_point(truth)[None]
    labels = np.array([1])
    masks, scores, low_res = predictor.predict(
        point_coords=coords, point_labels=labels, multimask_output=True
    )
    best = int(np.argmax(scores))
    prediction, logits = masks[best], low_res[best : best + 1]
    curve = [mask_iou(prediction, truth)]
    for _ in range(num_points - 1):
        point = next_point(rng, prediction, truth)
        if point is not None:
            coords = np.concatenate([coords, point[0][None]])
            labels = np.append(labels, point[1])
        masks, _, low_res = predictor.predict(
            point_coords=coords, point_labels=labels, mask_input=logits, multimask_output=False
        )
        prediction, logits = masks[0], low_res[:1]
        curve.append(mask_iou(prediction, truth))
    return curve


def evaluate(
    predictor: Predictor,
    samples: Iterable[Sample],
    dataset: str = "dataset",
    num_points: int = 9,
    seed: int = 0,
) -> EvalResult:
    """Every metric of :class:`EvalResult` over every mask of ``samples``."""
    rng = np.random.default_rng(seed)
    rows: list[list[float]] = []
    curves: list[list[float]] = []
    for sample in samples:
        predictor.set_image(sample.image)
        for truth in sample.masks:
            truth = np.asarray(truth, dtype=bool)
            center = _single_point(predictor, center_point(truth), truth)
            random = _single_point(predictor, sample_point(rng, truth), truth)
            masks, _, _ = predictor.predict(box=mask_box(truth), multimask_output=False)
            rows.append([*center, *random, mask_iou(masks[0], truth)])
            curves.append(_interactive(predictor, truth, rng, num_points))
    if not rows:
        return EvalResult(dataset, interactive=[0.0] * num_points)
    means = np.mean(rows, axis=0)
    return EvalResult(
        dataset,
        num_masks=len(rows),
        center_oracle=float(means[0]),
        center_top=float(means[1]),
        random_oracle=float(means[2]),
        random_top=float(means[3]),
        box=float(means[4]),
        interactive=[float(v) for v in np.mean(curves, axis=0)],
    )


def markdown_table(results: list[EvalResult]) -> str:
    """One row per dataset: masks, 1-point mIoU (paper's point and random, oracle and top
    confidence), box mIoU, and mIoU after 1, 3, 5 and 9 interactive points."""
    header = (
        "| dataset | masks | center oracle | center top | random oracle | random top | box "
        "| 1 pt | 3 pts | 5 pts | 9 pts |"
    )
    lines = [header, "|" + "---|" * 11]
    for r in results:
        curve = [
            r.interactive[k - 1] if len(r.interactive) >= k else float("nan") for k in (1, 3, 5, 9)
        ]
        values = [r.center_oracle, r.center_top, r.random_oracle, r.random_top, r.box, *curve]
        lines.append(
            f"| {r.dataset} | {r.num_masks} | " + " | ".join(f"{v:.3f}" for v in values) + " |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: list[EvalResult], folder: str | Path) -> Path:
    """Write ``results.md`` (all datasets) and ``<dataset>.json`` per dataset into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for result in results:
        (folder / f"{result.dataset}.json").write_text(json.dumps(asdict(result), indent=2))
    path = folder / "results.md"
    path.write_text(markdown_table(results))
    return path
