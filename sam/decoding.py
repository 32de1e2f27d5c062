"""Decoding many prompts on one image with the image-side work shared (exact, not approximate).

The mask decoder spends almost all of its time on the 4096 image tokens, which every prompt
carries through the two-way transformer. Without a mask prompt, though, those tokens start
prompt-independent, and each image-to-token attention changes them by a low-rank update: the
attention weights (N, heads * tokens) times a small (heads * tokens, C) matrix. Projections of
``LayerNorm(base + A @ M)`` are therefore

    diag(1 / sigma) [ (base * g) W^T + A @ ((M * g) W^T) - mu (g W^T) ] + b W^T,

where ``(base * g) W^T`` is computed once per image. :class:`ImageDecoding` applies this to every
projection of the image tokens after the first block and to the first transposed convolution of
the upscaling (a per-pixel linear map): by our count a vit_b prompt drops from about 3.5 to
1.2 GFLOP (measured on 2 CPU cores: 43 to 25-30 ms per prompt). It
returns what ``MaskDecoder.predict_masks`` returns, equal up to float rounding (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .mask_decoder import MaskDecoder
from .transformer import Attention


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, c) -> (B, heads, L, c / heads)."""
    batch, length, channels = x.shape
    return x.reshape(batch, length, heads, channels // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, L, d) -> (B, L, heads * d)."""
    return x.transpose(1, 2).flatten(2)


class _Tokens:
    """Image tokens ``X = LayerNorm(base + A @ M + bias)`` (B, N, C), kept in factored form.

    ``base`` is the previous level (or the image itself for level 0, whose products are cached
    per image under ``key``); ``A`` (B, N, R) and ``M`` (B, R, C) are the low-rank update.
    """

    def __init__(self, owner: ImageDecoding, previous: _Tokens | None, A, M, bias, norm, key):
        self.owner, self.previous, self.key = owner, previous, key
        self.M, self.bias, self.weight, self.shift = M, bias, norm.weight, norm.bias
        base = owner.tokens if previous is None else previous.explicit
        batch, tokens, _ = A.shape
        ones = A.new_ones(batch, tokens, 1)
        x = torch.baddbmm(base, torch.cat([A, ones], -1), torch.cat([M, _rows(bias, batch)], 1))
        self.explicit, mean, self.inv_std = torch.native_layer_norm(
            x, [x.shape[-1]], norm.weight, norm.bias, norm.eps
        )
        # [A, 1, -mean] (B, N, R + 2): one batched product gives every low-rank term
        self.A = torch.cat([A, ones, -mean], -1)

    def project(self, W: torch.Tensor, key: str) -> torch.Tensor:
        """X @ W^T (B, N, out) for W (out, C), without forming X @ W^T at full rank."""
        Wg = W * self.weight  # W diag(g)
        if self.previous is None:
            base = self.owner.cached(key, lambda: self.owner.tokens @ Wg.T)
        else:
            base = self.previous.project(Wg, f"{key}|{self.key}")
        batch = self.M.shape[0]
        terms = torch.cat(
            [self.M @ Wg.T, _rows(self.bias @ Wg.T, batch), _rows(Wg.sum(1), batch)], 1
        )
        return torch.addcmul(self.shift @ W.T, self.inv_std, torch.baddbmm(base, self.A, terms))


def _rows(vector: torch.Tensor, batch: int) -> torch.Tensor:
    """(C,) -> (batch, 1, C)."""
    return vector.reshape(1, 1, -1).expand(batch, 1, -1)


class ImageDecoding:
    """One image's embedding prepared for decoding prompts without a mask prompt.

    ``image_embedding`` (1, C, h, w) and ``image_pe`` (1, C, h, w) as the decoder takes them,
    ``dense`` (1, C, h, w) the prompt encoder's no-mask embedding. :meth:`predict_masks` takes
    sparse prompt embeddings (B, T, C) and returns masks (B, 4, 4h, 4w) and IoU (B, 4), like
    ``MaskDecoder.predict_masks``.
    """

    def __init__(
        self,
        decoder: MaskDecoder,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        dense: torch.Tensor,
    ) -> None:
        self.decoder = decoder
        self.size = tuple(image_embedding.shape[-2:])
        self.tokens = (image_embedding + dense).flatten(2).transpose(1, 2)  # (1, N, C)
        self.pe = image_pe.flatten(2).transpose(1, 2)  # (1, N, C)
        self._cache: dict[str, torch.Tensor] = {}
        first = decoder.transformer.layers[0]
        heads = first.cross_attn_token_to_image.num_heads
        self.first_keys = _heads(
            first.cross_attn_token_to_image.k_proj(self.tokens + self.pe), heads
        )
        self.first_values = _heads(first.cross_attn_token_to_image.v_proj(self.tokens), heads)
        self.first_image_queries = _heads(
            first.cross_attn_image_to_token.q_proj(self.tokens + self.pe), heads
        )

    def cached(self, key: str, compute) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _pe_projection(self, linear: torch.nn.Linear, key: str) -> torch.Tensor:
        return self.cached(f"pe:{key}", lambda: self.pe @ linear.weight.T + linear.bias)

    def _project(
        self, tokens: _Tokens, linear: torch.nn.Linear, key: str, pe: bool
    ) -> torch.Tensor:
        """linear(X + PE) or linear(X) of the image tokens X (B, N, out)."""
        out = tokens.project(linear.weight, key)
        return out + (self._pe_projection(linear, key) if pe else linear.bias)

    @staticmethod
    def _image_to_token(
        attention: Attention, image_queries: torch.Tensor, queries: torch.Tensor, query_pe
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image-to-token attention as a low-rank update: A (B, N, heads*T), M (B, heads*T, C)."""
        heads = attention.num_heads
        keys = _heads(attention.k_proj(queries + query_pe), heads)  # (B, H, T, d)
        values = _heads(attention.v_proj(queries), heads)
        scale = keys.shape[-1] ** -0.5
        scores = image_queries @ (keys.transpose(-1, -2) * scale)  # (B, H, N, T)
        # softmax over a handful of tokens: spelled out, it vectorises over N (torch.softmax
        # along a last dimension of ~7 does not, and took a sixth of the time)
        weights = torch.exp(scores - scores.amax(-1, keepdim=True))
        weights = weights / weights.sum(-1, keepdim=True)
        batch, _, tokens, head_dim = values.shape
        out_weight = attention.out_proj.weight.T.reshape(heads, head_dim, -1)  # (H, d, C)
        M = (values @ out_weight).reshape(batch, heads * tokens, -1)
        A = weights.transpose(1, 2).reshape(batch, -1, heads * tokens)
        return A, M

    @staticmethod
    def _token_to_image(attention: Attention, queries, keys, values) -> torch.Tensor:
        """Token-to-image attention given projected image keys/values (B or 1, H, N, d)."""
        q = _heads(attention.q_proj(queries), attention.num_heads)
        batch = q.shape[0]
        keys, values = keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)
        return attention.out_proj(_merge(F.scaled_dot_product_attention(q, keys, values)))

    def predict_masks(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.decoder
        transformer = decoder.transformer
        first, second = transformer.layers
        batch = sparse.shape[0]
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        prompt = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)

        # block 0: every image-side projection was computed with the image
        queries = first.norm1(first.self_attn(q=prompt, k=prompt, v=prompt))
        attended = self._token_to_image(
            first.cross_attn_token_to_image,
            queries + prompt,
            self.first_keys,
            self.first_values,
        )
        queries = first.norm2(queries + attended)
        queries = first.norm3(queries + first.mlp(queries))
        A, M = self._image_to_token(
            first.cross_attn_image_to_token, self.first_image_queries, queries, prompt
        )
        keys1 = _Tokens(
            self, None, A, M, first.cross_attn_image_to_token.out_proj.bias, first.norm4, "k1"
        )

        # block 1: projections of keys1 are cached image products plus low-rank terms
        q = queries + prompt
        queries = second.norm1(queries + second.self_attn(q=q, k=q, v=queries))
        t2i = second.cross_attn_token_to_image
        heads = t2i.num_heads
        keys = _heads(self._project(keys1, t2i.k_proj, "b1.t2i.k", pe=True), heads)
        values = _heads(self._project(keys1, t2i.v_proj, "b1.t2i.v", pe=False), heads)
        queries = second.norm2(queries + self._token_to_image(t2i, queries + prompt, keys, values))
        queries = second.norm3(queries + second.mlp(queries))
        i2t = second.cross_attn_image_to_token
        image_queries = _heads(self._project(keys1, i2t.q_proj, "b1.i2t.q", pe=True), heads)
        A, M = self._image_to_token(i2t, image_queries, queries, prompt)
        keys2 = _Tokens(self, keys1, A, M, i2t.out_proj.bias, second.norm4, "k2")

        # final token-to-image attention
        final = transformer.final_attn_token_to_image
        keys = _heads(self._project(keys2, final.k_proj, "final.k", pe=True), heads)
        values = _heads(self._project(keys2, final.v_proj, "final.v", pe=False), heads)
        attended = self._token_to_image(final, queries + prompt, keys, values)
        queries = transformer.norm_final_attn(queries + attended)

        # upscaling: the first transposed convolution (kernel 2, stride 2) is per-pixel linear;
        # its output is laid out channels-last so the LayerNorm over channels is one pass
        first_conv, norm, act1, second_conv, act2 = decoder.output_upscaling
        channels_out = first_conv.out_channels
        weight = first_conv.weight.flatten(1).T  # (C_out * 4, C_in): rows (o, a, b)
        pixels = keys2.project(weight, "up") + first_conv.bias.repeat_interleave(4)
        h, w = self.size
        pixels = pixels.reshape(batch, h, w, channels_out, 2, 2).permute(0, 1, 4, 2, 5, 3)
        pixels = pixels.reshape(batch, 2 * h, 2 * w, channels_out)
        pixels = act1(F.layer_norm(pixels, (channels_out,), norm.weight, norm.bias, norm.eps))
        upscaled = act2(second_conv(pixels.permute(0, 3, 1, 2)))

        mask_tokens = queries[:, 1 : 1 + decoder.num_mask_tokens]
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, 4, C/8)
        b, c, h, w = upscaled.shape
        channels_last = upscaled.permute(0, 2, 3, 1).reshape(b, h * w, c)
        masks = (channels_last @ hyper_in.transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
        return masks, decoder.iou_prediction_head(queries[:, 0])
