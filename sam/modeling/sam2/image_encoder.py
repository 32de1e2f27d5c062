"""SAM 2's image encoder: the Hiera trunk and an FPN neck.

The image path needs the neck's feature maps only: the sine position encodings Meta's neck also
returns serve the video memory, which is not part of this model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera


class ImageEncoder(nn.Module):
    """(B, 3, S, S) normalised image -> FPN maps (B, d_model, S/4, S/4), (.., S/8, S/8) and
    (.., S/16, S/16): the trunk's four stages through the neck, less the ``scalp`` coarsest
    (which still feeds the next one through the top-down path)."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(
                f"trunk channels {trunk.channel_list} != neck's {neck.backbone_channel_list}"
            )
        self.trunk, self.neck, self.scalp = trunk, neck, scalp

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.neck(self.trunk(x))
        return features[: len(features) - self.scalp]


class FpnNeck(nn.Module):
    """A feature pyramid (Lin et al., 2017) without output convolutions: each trunk map projected
    to ``d_model`` channels by a 1x1 convolution; the levels in ``fpn_top_down_levels`` (0 is the
    highest resolution) also add the next coarser output, upsampled 2x by nearest neighbour."""

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: list[int],
        fpn_top_down_levels: tuple[int, ...] = (2, 3),
    ) -> None:
        super().__init__()
        # coarsest first, as Meta orders them (and their checkpoints index them)
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList(
            nn.Conv2d(c, d_model, kernel_size=1) for c in backbone_channel_list
        )
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk maps, high resolution first -> the same number of (B, d_model, h, w) maps."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(xs)
        coarsest = len(self.convs) - 1
        previous = None
        for level in range(coarsest, -1, -1):  # coarse to fine
            lateral = self.convs[coarsest - level](xs[level])
            if level in self.fpn_top_down_levels and previous is not None:
                top_down = F.interpolate(previous.float(), scale_factor=2.0, mode="nearest")
                previous = lateral + top_down
            else:
                previous = lateral
            out[level] = previous
        return out
