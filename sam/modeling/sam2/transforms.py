"""SAM 2's input frame: the whole image stretched to a square, and coordinates with it."""

from __future__ import annotations

import numpy as np
import torch

from ..transforms import ResizeLongestSide


class ResizeSquare(ResizeLongestSide):
    """Resizes to ``target_length`` by ``target_length`` regardless of the aspect ratio, as SAM 2
    does, so the image fills its frame without padding. Images are resized as float with an
    antialiased bilinear filter (torchvision's ``Resize`` on a tensor, which SAM 2 uses)."""

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (S, S, 3) float32 in 0..255."""
        resized = self.apply_image_torch(torch.from_numpy(image).permute(2, 0, 1)[None].float())
        return resized[0].permute(1, 2, 0).numpy()

    @staticmethod
    def get_preprocess_shape(old_h: int, old_w: int, long_side_length: int) -> tuple[int, int]:
        """Always (long_side_length, long_side_length)."""
        return long_side_length, long_side_length
