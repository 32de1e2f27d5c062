"""The tiny demo CLIP's training losses (:mod:`prompts.train_clip`).

(1) open_clip's :class:`~open_clip.ClipLoss`, made label-aware: the text side is every caption
of the generator (one random prompt template each step), an image may contain several captions
and a caption may appear in several images, so each row's target is spread over its positives
(with a one-to-one pairing it is exactly ``ClipLoss``); (2) plain ``ClipLoss`` between each
caption under two different templates, which keeps captions distinct (without it the text tower
learns to ignore the shape word before the image tower can see shapes, and shape is then never
learned); (3) a :func:`hinge` that calibrates against the TextPrompter's negative texts ("",
"background", ...), averaged over the same templates as at inference: a present caption must
beat the best negative by a margin and an absent one must stay that margin below it, on the
global embedding of every image and on every MaskCLIP patch feature of the scenes (a patch is
positive for the caption of the object covering at least half of it, negative for captions with
no object in it, ignored otherwise). The text branch decides "found" by exactly these
comparisons.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_aware_clip_loss():
    """A :class:`LabelAwareClipLoss` (defined on first use: open_clip is imported lazily)."""
    from open_clip import ClipLoss

    class LabelAwareClipLoss(ClipLoss):
        """open_clip's ClipLoss with a (images, texts) bool label matrix: each row's target (and
        each column's, for text -> image) is spread evenly over its positives; rows without a
        positive are left out. With a one-to-one pairing it equals ClipLoss."""

        def forward(self, image_features, text_features, logit_scale, labels=None):
            if labels is None:
                return super().forward(image_features, text_features, logit_scale)
            per_image, per_text = self.get_logits(image_features, text_features, logit_scale)
            positives = labels.float()
            return (_soft_ce(per_image, positives) + _soft_ce(per_text, positives.T)) / 2

    return LabelAwareClipLoss()


def _soft_ce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    rows = positives.sum(1) > 0
    if not rows.any():
        return logits.sum() * 0.0
    target = positives[rows] / positives[rows].sum(1, keepdim=True)
    return F.cross_entropy(logits[rows], target)


def hinge(margins: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Positives (target 1) must reach +delta, negatives (0) stay under -delta; -1 ignored.
    Each side is averaged over the pairs that still violate, so the few hard negatives (a red
    square for "red circle") are not drowned by the many easy ones."""
    losses = []
    for value, sign in ((1, 1.0), (0, -1.0)):
        violation = F.relu(delta - sign * margins[target == value])
        if violation.numel():
            losses.append(violation.sum() / (violation > 0).sum().clamp(min=1))
    return sum(losses) if losses else margins.sum() * 0.0
