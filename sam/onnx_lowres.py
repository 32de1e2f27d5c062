"""The mask decoder as the browser runs it: low-res logits only, arranged for a CPU's speed.

:class:`SamOnnxLowResDecoder` takes the inputs of :class:`~sam.onnx_model.SamOnnxDecoder` but
``orig_im_size`` and returns ``iou_predictions`` (B, 4) and ``low_res_masks`` (B, 4, 4G, 4G);
the page resizes the one mask it draws itself. :class:`Sam2OnnxLowResDecoder` does the same for
SAM 2 with the inputs of :class:`~sam.onnx_sam2.Sam2OnnxDecoder` but ``orig_im_size`` (its
low-res logits clamped as SAM 2's predictor hands them back). Both compute what the plain model
computes, in another order (equal up to float rounding):

- attention between the T prompt tokens and the G*G image tokens projects the tokens rather
  than the image: token-to-image scores are ``(q W_k) x^T`` and its values ``(p x) W_v^T``,
  image-to-token scores ``x (W_q^T k^T)`` and its output ``p (v W_o^T)``. Each then costs
  G*G x C x heads*T multiply-adds instead of G*G x C x C/2, less while heads*T < C/2
  (vit_b: fewer than 16 tokens, the 5 output tokens and up to 11 prompt points);
- the final attention runs for the output tokens only (the IoU and mask tokens), whose results
  are all that is read of it;
- layer norms over the image tokens are written out (mean, variance), which onnxruntime's
  WebAssembly build runs faster than its fused LayerNormalization kernels, and GELU in the
  form onnxruntime fuses into one kernel;
- the output upscaling runs channels-last: each stride-2 2x2 transposed convolution is one
  matrix product per image position (SAM 2's high-resolution features are added in the same
  block order), the layer norm is over the last axis, and the masks are put in (4G, 4G) order
  once, at the end.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.sam import Sam
from sam.modeling.sam2 import Sam2
from sam.modeling.sam2.mask_decoder import MaskDecoder as Sam2MaskDecoder
from sam.modeling.transformer import Attention, TwoWayTransformer
from sam.onnx_model import SamOnnxDecoder
from sam.onnx_sam2 import Sam2OnnxDecoder

LOWRES_DECODER_INPUTS = (
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
)
SAM2_LOWRES_DECODER_INPUTS = (
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    *LOWRES_DECODER_INPUTS[1:],
)
LOWRES_DECODER_OUTPUTS = ("iou_predictions", "low_res_masks")


def token_to_image(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``attention(q=q, k=k, v=v)`` for few queries: q (B, T, C) tokens, k and v (B, N, C)
    image tokens -> (B, T, C). The key bias is left out: it adds the same to every score of a
    query, which the softmax over the image cancels."""
    batch, tokens, channels = q.shape
    heads = attention.num_heads
    head_dim = attention.internal_dim // heads
    query = attention.q_proj(q).reshape(batch, tokens, heads, head_dim).transpose(1, 2)
    key_weight = attention.k_proj.weight.reshape(heads, head_dim, channels)
    scale = 1.0 / math.sqrt(head_dim)
    projected = torch.matmul(query, key_weight).reshape(batch, heads * tokens, channels) * scale
    weights = torch.softmax(torch.matmul(projected, k.transpose(1, 2)), dim=-1)  # (B, hT, N)
    context = torch.matmul(weights, v).reshape(batch, heads, tokens, channels)
    value_weight = attention.v_proj.weight.reshape(heads, head_dim, channels)
    value_bias = attention.v_proj.bias.reshape(heads, 1, head_dim)
    out = torch.matmul(context, value_weight.transpose(1, 2)) + value_bias  # (B, h, T, d)
    return attention.out_proj(out.transpose(1, 2).reshape(batch, tokens, heads * head_dim))


def image_to_token(
    attention: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``attention(q=q, k=k, v=v)`` for few keys: q (B, N, C) image tokens, k and v (B, T, C)
    tokens -> (B, N, C)."""
    batch, tokens, channels = k.shape
    heads = attention.num_heads
    head_dim = attention.internal_dim // heads
    scale = 1.0 / math.sqrt(head_dim)
    key = attention.k_proj(k).reshape(batch, tokens, heads, head_dim).transpose(1, 2)
    value = attention.v_proj(v).reshape(batch, tokens, heads, head_dim).transpose(1, 2)
    query_weight = attention.q_proj.weight.reshape(heads, head_dim, channels)
    keys_in = torch.matmul(query_weight.transpose(1, 2), key.transpose(2, 3)) * scale
    keys_in = keys_in.permute(0, 2, 1, 3).reshape(batch, channels, heads * tokens)
    query_bias = attention.q_proj.bias.reshape(heads, head_dim, 1)
    bias = (torch.matmul(key, query_bias) * scale).reshape(batch, 1, heads * tokens)
    scores = (torch.matmul(q, keys_in) + bias).reshape(batch, -1, heads, tokens)
    weights = torch.softmax(scores, dim=-1).reshape(batch, -1, heads * tokens)
    out_weight = attention.out_proj.weight.reshape(channels, heads, head_dim).permute(1, 2, 0)
    values_out = torch.matmul(value, out_weight).reshape(batch, heads * tokens, channels)
    return torch.matmul(weights, values_out) + attention.out_proj.bias


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` over the last axis, written out."""
    centred = x - x.mean(-1, keepdim=True)
    variance = (centred * centred).mean(-1, keepdim=True)
    return centred * (torch.rsqrt(variance + norm.eps) * norm.weight) + norm.bias


def activate(activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``activation(x)``; exact GELU written as onnxruntime fuses it into one kernel (with a
    bias added before it), where torch's export of ``nn.GELU`` leaves five."""
    if isinstance(activation, nn.GELU) and activation.approximate == "none":
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return activation(x)


def run_transformer(
    transformer: TwoWayTransformer,
    image: torch.Tensor,
    image_pe: torch.Tensor,
    tokens: torch.Tensor,
    kept: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``transformer(image, image_pe, tokens)``: image (B, N, C) and image_pe (1, N, C)
    channels-last, tokens (B, T, C) -> the first ``kept`` tokens (B, kept, C), image (B, N, C).
    Queries attend to the image one by one, so the final attention leaves out the others."""
    queries, keys = tokens, image
    for layer in transformer.layers:
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + tokens
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        q, k = queries + tokens, keys + image_pe
        queries = layer.norm2(queries + token_to_image(layer.cross_attn_token_to_image, q, k, keys))
        queries = layer.norm3(queries + layer.mlp(queries))
        q = queries + tokens
        keys = layer_norm(
            layer.norm4, keys + image_to_token(layer.cross_attn_image_to_token, k, q, queries)
        )
    queries, tokens = queries[:, :kept], tokens[:, :kept]
    final = transformer.final_attn_token_to_image
    out = token_to_image(final, queries + tokens, keys + image_pe, keys)
    return transformer.norm_final_attn(queries + out), keys


def in_blocks(features: torch.Tensor, levels: int) -> torch.Tensor:
    """(B, C, 2^L G, 2^L W) -> (B, G, W, 2, 2, ..., C) with L (row, column) pairs of 2, the
    order of the upscaling's blocks: for L = 2, pixel (4h + 2a + a2, 4w + 2b + b2) is at
    [:, h, w, a, b, a2, b2]."""
    batch, channels, rows, cols = features.shape
    block = 2**levels
    x = features.reshape(
        batch, channels, rows // block, *[2] * levels, cols // block, *[2] * levels
    )
    row_axes, col_axes = range(2, 3 + levels), range(3 + levels, 4 + 2 * levels)
    order = [0, row_axes[0], col_axes[0]]
    for row_axis, col_axis in zip(row_axes[1:], col_axes[1:]):
        order += [row_axis, col_axis]
    return x.permute(*order, 1)


def upscaled_masks(
    decoder: MaskDecoder,
    image: torch.Tensor,
    grid: tuple[int, int],
    hyper_in: torch.Tensor,
    high_res_feats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``decoder.masks_from_tokens`` on channels-last input: image (B, G*G, C) from the
    transformer, hyper_in (B, M, C/8) from the hypernetworks, SAM 2's high_res_feats ((1, C/8,
    4G, 4G), (1, C/4, 2G, 2G)) -> masks (B, M, 4G, 4G)."""
    batch, _, channels = image.shape
    height, width = grid
    masks = hyper_in.shape[1]
    first, norm, activation, second, last_activation = decoder.output_upscaling
    # a stride-2 2x2 transposed convolution maps each position to a 2x2 block on its own
    first_weight = first.weight.permute(0, 2, 3, 1).reshape(channels, -1)
    x = (image @ first_weight).reshape(batch, height, width, 2, 2, -1) + first.bias
    if high_res_feats is not None:
        x = x + in_blocks(high_res_feats[1], 1)
    x = activate(activation, layer_norm(norm, x))
    second_weight = second.weight.permute(0, 2, 3, 1).reshape(x.shape[-1], -1)
    x = (x @ second_weight).reshape(batch, height, width, 2, 2, 2, 2, -1) + second.bias
    if high_res_feats is not None:
        x = x + in_blocks(high_res_feats[0], 2)
    x = activate(last_activation, x)
    logits = x.reshape(batch, -1, x.shape[-1]) @ hyper_in.transpose(1, 2)  # (B, G*G*16, M)
    # (B, h, w, a, b, a2, b2, M): pixel (4h + 2a + a2, 4w + 2b + b2) of mask M
    logits = logits.reshape(batch, height, width, 2, 2, 2, 2, masks)
    return logits.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(batch, masks, 4 * height, 4 * width)


def decode_lowres(
    wrapper: SamOnnxDecoder | Sam2OnnxDecoder,
    image_embeddings: torch.Tensor,
    point_coords: torch.Tensor,
    point_labels: torch.Tensor,
    mask_input: torch.Tensor,
    has_mask_input: torch.Tensor,
    high_res_feats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The page decoders' forward (``wrapper`` holds the prompt encoder and mask decoder):
    iou_predictions (B, 4), low_res_masks (B, 4, 4G, 4G); see the module's docstring."""
    decoder = wrapper.mask_decoder
    sparse = wrapper.embed_points(point_coords, point_labels)
    dense = wrapper.embed_masks(mask_input, has_mask_input)
    batch = sparse.shape[0]
    output_tokens = [decoder.iou_token.weight, decoder.mask_tokens.weight]
    if isinstance(decoder, Sam2MaskDecoder):
        output_tokens.insert(0, decoder.obj_score_token.weight)
    output_tokens = torch.cat(output_tokens, dim=0)
    tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
    height, width = dense.shape[-2:]
    image = (image_embeddings + dense).flatten(2).transpose(1, 2)  # (B, G*G, C)
    image_pe = wrapper.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2)
    outputs = len(output_tokens)  # (the object score token,) the IoU token, the mask tokens
    hs, image = run_transformer(decoder.transformer, image, image_pe, tokens, outputs)
    first_mask = outputs - decoder.num_mask_tokens
    mask_tokens = hs[:, first_mask:, :]
    hyper_in = torch.stack(
        [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
        dim=1,
    )
    masks = upscaled_masks(decoder, image, (height, width), hyper_in, high_res_feats)
    return decoder.iou_prediction_head(hs[:, first_mask - 1, :]), masks


class SamOnnxLowResDecoder(SamOnnxDecoder):
    """Prompt encoder + mask decoder of a plain :class:`Sam` -> iou_predictions (B, 4) and
    low_res_masks (B, 4, 4G, 4G), all four outputs (the single-mask one first); the prompts
    are embedded as :class:`SamOnnxDecoder` does. See the module's docstring."""

    def __init__(self, model: Sam) -> None:
        super().__init__(model)

    def forward(  # type: ignore[override]  # Meta's inputs less orig_im_size
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embeddings (1, C, G, G), point_coords (B, N, 2), point_labels (B, N),
        mask_input (B, 1, 4G, 4G), has_mask_input (1,) -> iou_predictions (B, 4),
        low_res_masks (B, 4, 4G, 4G)."""
        return decode_lowres(
            self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input
        )


class Sam2OnnxLowResDecoder(Sam2OnnxDecoder):
    """Prompt encoder + mask decoder of a plain :class:`Sam2` -> iou_predictions (B, 4) and
    low_res_masks (B, 4, 4G, 4G) clamped to +-``low_res_logit_limit``; the prompts are embedded
    as :class:`~sam.onnx_sam2.Sam2OnnxDecoder` embeds them (box corners first)."""

    def __init__(self, model: Sam2) -> None:
        super().__init__(model)

    def forward(  # type: ignore[override]  # the interface decoder's inputs less orig_im_size
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embed (1, C, G, G), high_res_feats_0 (1, C/8, 4G, 4G), high_res_feats_1 (1, C/4,
        2G, 2G), point_coords (B, N, 2), point_labels (B, N), mask_input (B, 1, 4G, 4G),
        has_mask_input (1,) -> iou_predictions (B, 4), low_res_masks (B, 4, 4G, 4G)."""
        scores, masks = decode_lowres(
            self,
            image_embed,
            point_coords,
            point_labels,
            mask_input,
            has_mask_input,
            (high_res_feats_0, high_res_feats_1),
        )
        limit = self.low_res_logit_limit
        return scores, masks.clamp(-limit, limit)
