"""What SAM and SAM 2 share: the small interface through which one predictor, segment everything,
the tasks and the text branch serve either model."""

from __future__ import annotations

import torch
from torch import nn

from .transforms import ResizeLongestSide


class PromptableModel(nn.Module):
    """A promptable segmentation model: an image encoder (possibly in a lower precision), a prompt
    encoder and a mask decoder (float32), with the pre- and post-processing around them.

    Subclasses (:class:`sam.modeling.sam.Sam`, :class:`sam.modeling.sam2.Sam2`) give it their
    ``image_encoder``, ``prompt_encoder`` (called as ``prompt_encoder(points=, boxes=, masks=)``,
    with ``mask_input_size`` and ``get_dense_pe()``) and ``mask_decoder``, and implement the
    methods below that raise NotImplementedError.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    # bound on the low-res logits handed back (SAM 2's predictor clamps them; SAM's does not)
    low_res_logit_limit: float | None = None

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        pixel_mean: tuple[float, ...],
        pixel_std: tuple[float, ...],
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # per-channel statistics that preprocess normalises the pixels with
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def encoder_dtype(self) -> torch.dtype:
        """The dtype of the image encoder's weights: its first parameter's (a position
        embedding, which int8 leaves in float32 as it does the convolutions)."""
        return next(self.image_encoder.parameters()).dtype

    def set_encoder_dtype(self, dtype: torch.dtype) -> PromptableModel:
        """Run the image encoder in ``dtype``; the prompt encoder and decoder stay float32."""
        self.image_encoder.to(dtype)
        return self

    @property
    def image_size(self) -> int:
        """Side of the encoder's square input frame."""
        raise NotImplementedError

    def input_transform(self) -> ResizeLongestSide:
        """How images (uint8, (H, W, 3)) and prompt coordinates map into the encoder's frame."""
        raise NotImplementedError

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in 0..255 from :meth:`input_transform` (B, 3, h, w) -> the encoder's input
        (B, 3, S, S)."""
        raise NotImplementedError

    def encode_image(self, pixels: torch.Tensor) -> object:
        """Preprocessed pixels -> what :meth:`decode_masks` needs of the image, float32 (cached
        by the predictor; anything with ``nbytes``)."""
        raise NotImplementedError

    def decode_masks(
        self, features: object, sparse: torch.Tensor, dense: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings (B, T, C) and (B, C, h, w) on one image's features -> low-res
        logits (B, 3 or 1, 4h, 4w) and predicted IoU (B, 3 or 1)."""
        raise NotImplementedError

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Low-res logits (B, C, 4h, 4w) -> logits (B, C, *original_size); ``input_size`` is the
        resized image's size inside the frame."""
        raise NotImplementedError
