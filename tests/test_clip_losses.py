"""The demo CLIP's training losses: the label-aware CLIP loss."""

from __future__ import annotations

import torch
from open_clip import ClipLoss

from prompts.clip_losses import label_aware_clip_loss


def test_label_aware_loss_is_clip_loss_for_one_to_one_pairs():
    torch.manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    scale = torch.tensor(10.0)
    loss = label_aware_clip_loss()
    expected = ClipLoss()(image, text, scale)
    torch.testing.assert_close(loss(image, text, scale, torch.eye(6, dtype=torch.bool)), expected)
    # Two images sharing one caption: both are positives of that text, neither is pushed away.
    labels = torch.eye(6, dtype=torch.bool)
    labels[1, 0] = True
    assert loss(image, text, scale, labels) != expected
