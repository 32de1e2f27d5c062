"""CLIP's evidence on its patch grid: peaks relative to the negatives, and masks pooled over the
patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prompts.text_evidence import patch_cover, peaks, pooled_margins


def test_peaks_are_relative_to_negatives_not_min_max():
    below = np.full((5, 5), -0.2)
    below[2, 2] = -0.01  # the best patch still loses to the negatives
    assert peaks(below, 0.0, 3) == []
    above = below.copy()
    above[1, 1], above[3, 4] = 0.3, 0.1
    assert peaks(above, 0.0, 3) == [(1, 1), (3, 4)]


def test_pooled_margins_shapes():
    dense = torch.nn.functional.normalize(torch.randn(6, 6, 8), dim=-1)
    target = torch.nn.functional.normalize(torch.randn(8), dim=0)
    negatives = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    masks = np.zeros((3, 30, 36), dtype=bool)
    masks[0, :10, :12] = True
    masks[1] = True
    margins = pooled_margins(dense, masks, target, negatives)
    assert margins.shape == (3,) and np.isfinite(margins[:2]).all() and margins[2] == -np.inf
    expected = torch.nn.functional.normalize(dense[:2, :2].reshape(4, 8).mean(0), dim=0)
    want = expected @ target - (negatives @ expected).max()
    assert margins[0] == pytest.approx(float(want), abs=1e-5)


def test_patch_cover_in_chunks_equals_one_pass():
    masks = np.random.default_rng(0).random((11, 30, 36)) > 0.5
    cover = patch_cover(masks, (6, 6), chunk=4)
    whole = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks).float(), (6, 6))
    assert cover.shape == (11, 36) and torch.equal(cover, whole.flatten(1))
    assert torch.equal(patch_cover(list(masks), (6, 6)), cover)
