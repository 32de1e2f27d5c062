"""SAM 2's prompt encoder: SAM's, with boxes given to it as two labelled corner points."""

from __future__ import annotations

import torch

from ..prompt_encoder import PromptEncoder as SamPromptEncoder

# point labels of a box's top-left and bottom-right corners (0 and 1 are clicks, -1 padding)
BOX_CORNER_LABELS = (2, 3)


class PromptEncoder(SamPromptEncoder):
    """SAM's prompt encoder (same parameters and names) fed as SAM 2's image predictor and
    transformers' ``Sam2Model`` feed it: a box becomes two corner points with labels 2 and 3 in
    front of the clicks, and a "not a point" token always closes the sequence, box or not.

    points (B, N, 2) with labels (B, N), boxes (B, 4) XYXY, masks (B, 1, 4h, 4w)
    -> sparse (B, [2 +] N + 1, C) and dense (B, C, h, w) embeddings.
    """

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([BOX_CORNER_LABELS], dtype=torch.int, device=boxes.device)
            corner_labels = corner_labels.expand(corners.shape[0], -1)
            if points is None:
                points = (corners, corner_labels)
            else:
                coords, labels = points
                points = (torch.cat([corners, coords], 1), torch.cat([corner_labels, labels], 1))
        return super().forward(points=points, boxes=None, masks=masks)
