"""The prompt encoder: points, boxes and masks -> sparse and dense prompt embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d


class PromptEncoder(nn.Module):
    """Embeds prompts for the mask decoder.

    Points and box corners get a random-Fourier positional encoding plus a learned type embedding
    (background point, foreground point, top-left corner, bottom-right corner); masks are
    downscaled 4x by convolutions; without a mask the learned ``no_mask_embed`` fills the grid.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # background point, foreground point, 2 box corners
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: (1, embed_dim, H, W)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """points (B, N, 2) in input-image pixels, labels (B, N) -> (B, N [+1], embed_dim)."""
        points = points + 0.5  # to the pixel centre
        if pad:  # without a box, a "not a point" token stands where the corners would be
            padding_point = torch.zeros((points.shape[0], 1, 2), device=points.device)
            padding_label = -torch.ones((labels.shape[0], 1), device=labels.device)
            points = torch.cat([points, padding_point], dim=1)
            labels = torch.cat([labels, padding_label], dim=1)
        point_embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)
        # labels 0 and 1 are clicks; 2 and 3, box corners, come here from SAM 2's prompts
        for label, embedding in enumerate(self.point_embeddings):
            point_embedding = point_embedding + torch.where(
                (labels == label)[..., None], embedding.weight, 0.0
            )
        return torch.where(
            (labels == -1)[..., None], self.not_a_point_embed.weight, point_embedding
        )

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) as XYXY input-image pixels -> (B, 2, embed_dim)."""
        boxes = boxes + 0.5
        coords = boxes.reshape(-1, 2, 2)
        corner_embedding = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return corner_embedding + corner_types

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, 1, 4H, 4W) logits -> (B, embed_dim, H, W)."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _get_batch_size(
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _get_device(self) -> torch.device:
        return self.point_embeddings[0].weight.device

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse (B, N, embed_dim) and dense (B, embed_dim, H, W) embeddings."""
        batch = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((batch, 0, self.embed_dim), device=self._get_device())
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            dense = self.get_no_mask_dense().expand(batch, -1, -1, -1)
        return sparse, dense

    def get_no_mask_dense(self) -> torch.Tensor:
        """The dense embedding of a prompt without a mask: (1, embed_dim, H, W), a view."""
        height, width = self.image_embedding_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, height, width)


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies (Tancik et al., 2020)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., 2) normalised to [0, 1] -> (..., 2 * num_pos_feats)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an (H, W) grid: (C, H, W)."""
        height, width = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((height, width), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / height
        x_embed = (grid.cumsum(dim=1) - 0.5) / width
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """coords (B, N, 2) in pixels of an (H, W) image -> (B, N, C)."""
        size_xy = torch.tensor([image_size[1], image_size[0]], device=coords_input.device)
        return self._pe_encoding(coords_input.to(torch.float) / size_xy)
