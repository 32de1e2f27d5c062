"""Decoding many prompts on one image with the image-side work shared (exact, not approximate).

The mask decoder spends almost all of its time on the N = 4096 image tokens that every prompt
carries through the two-way transformer. Without a mask prompt those tokens start
prompt-independent, and the decoder changes them only through image-to-token attention, whose
update is low-rank: attention weights (heads * tokens, N) times a small (heads * tokens, C)
matrix. Through the LayerNorm that follows, the tokens therefore keep the form

    X = scale * (F + U^T M) + shift

with F (N, C) fixed per image, U (B, R, N) and M (B, R, C) low-rank, ``scale`` (B, N) per token
and ``shift`` (B, 1, C) (:class:`_Tokens`). Everything the decoder needs of X comes from that
form: LayerNorm statistics from F's products with M, attention scores and outputs from F's
projections (cached per image) plus low-rank terms. Only the upscaling, whose LayerNorm and
GELUs act per pixel, forms full-size tensors (after its first projection, a band of rows at a
time, so that they stay in cache). :meth:`ImageDecoding.predict_masks` returns what
``MaskDecoder.predict_masks`` returns, equal up to float rounding (tested).

:class:`SharingMaskDecoder` is the seam: the predictor decodes prompts without a mask prompt
through :meth:`SharingMaskDecoder.image_decoding`, the rest through the plain forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sam.modeling.mask_decoder import MaskDecoder
from sam.modeling.transformer import Attention

# embedding rows upscaled at a time: 16 rows of 64 tokens make 1 MB tensors, which stay in cache
ROWS_PER_BAND = 16


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, c) -> (B, heads, L, c / heads)."""
    batch, length, channels = x.shape
    return x.reshape(batch, length, heads, channels // heads).transpose(1, 2)


def _center(x: torch.Tensor) -> torch.Tensor:
    """Subtract each row's mean over the last dimension."""
    return x - x.mean(-1, keepdim=True)


@dataclass
class _Update:
    """Rows of M added by one image-to-token attention: row (h, t) is ``values[:, h, t]`` through
    head h's slice of ``out_proj``, (B, H * T', C), added at ``level``; ``values`` (B, H, T', d)."""

    values: torch.Tensor
    out_proj: torch.nn.Linear
    name: str
    level: int


def _by_head_columns(image: torch.Tensor, heads: int) -> torch.Tensor:
    """(N, H * d) image-side product -> (H, d, N), contiguous: the right operand of
    :func:`_per_head`."""
    return image.view(image.shape[0], heads, -1).permute(1, 2, 0).contiguous()


def _per_head(tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """tokens (B, H, T, d) @ image (H, d, N) -> (B, H, T, N), the image operand shared."""
    batch, heads, count, head_dim = tokens.shape
    product = tokens.transpose(0, 1).reshape(heads, batch * count, head_dim) @ image
    return product.view(heads, batch, count, -1).transpose(0, 1)


class _Tokens:
    """Image tokens ``X = scale * (F + U^T M) + shift`` (B, N, C) at one level of the decoder.

    F (N, C) is the owner's per-image base of this ``level``; ``U`` (B, R, N), ``M`` (B, R, C),
    ``scale`` (B, N), ``shift`` (B, 1, C). ``blocks`` says where M's rows came from, in order:
    an :class:`_Update` for H * T rows, None for one plain row.
    """

    def __init__(self, owner: ImageDecoding, level: int, scale, U, M, shift, blocks: list) -> None:
        self.owner, self.level = owner, level
        self.scale, self.U, self.M, self.shift = scale, U, M, shift
        self.blocks = blocks

    def _by_head(self, linear: torch.nn.Linear, heads: int, name: str, pe: bool) -> torch.Tensor:
        """F W^T, or (PE W^T + b) with ``pe``, per head: (H, d, N), cached. At level 0, where
        X = F, the ``pe`` product is (F + PE) W^T + b, so that scores need one product, not two."""
        owner = self.owner
        key = f"{name}@{self.level}" + ("pe" if pe else "")

        def compute() -> torch.Tensor:
            if pe:
                image = owner.pe + owner.base(0) if self.level == 0 else owner.pe
                image = image @ linear.weight.T + linear.bias
            else:
                image = owner.base(self.level) @ linear.weight.T
            return _by_head_columns(image, heads)

        return owner.cached(key, compute)

    def scores(self, tokens: torch.Tensor, linear: torch.nn.Linear, name: str) -> torch.Tensor:
        """tokens (B, H, T, d) . ``linear(X + PE)`` (B, N, H * d) per head -> (B, H, T, N)."""
        batch, heads, count, _ = tokens.shape
        if self.level == 0:  # X = F: one cached product (F + PE) W^T + b
            return _per_head(tokens, self._by_head(linear, heads, f"{name}.pe", pe=True))
        low_rank = _heads(self.M @ linear.weight.T, heads).transpose(-1, -2)  # (B, H, d, R)
        low_rank = (tokens @ low_rank).flatten(1, 2) @ self.U  # (B, H * T, N)
        image = _per_head(tokens, self._by_head(linear, heads, name, pe=False))
        scores = (image + low_rank.view(batch, heads, count, -1)) * self.scale[:, None, None]
        shift = tokens @ _heads(self.shift @ linear.weight.T, heads).transpose(-1, -2)
        pe = _per_head(tokens, self._by_head(linear, heads, f"{name}.pe", pe=True))
        return scores + pe + shift

    def token_to_image(
        self, attention: Attention, queries: torch.Tensor, name: str
    ) -> torch.Tensor:
        """``attention(q=queries, k=X + PE, v=X)`` for queries (B, T, C) -> (B, T, C)."""
        heads = attention.num_heads
        head_dim = attention.internal_dim // heads
        batch, count, _ = queries.shape
        q = _heads(attention.q_proj(queries), heads) * head_dim**-0.5  # (B, H, T, d)
        weights = torch.softmax(self.scores(q, attention.k_proj, f"{name}.k"), dim=-1)
        weights = weights * self.scale[:, None, None]
        # values X W^T + b: since each row of weights sums to 1,
        # out = (weights * scale) (F W^T + U^T M W^T) + shift W^T + b
        v_proj = attention.v_proj
        values = self._by_head(v_proj, heads, f"{name}.v", pe=False).transpose(-1, -2)  # (H, N, d)
        out = _per_head(weights, values)
        low_rank = (weights.flatten(1, 2) @ self.U.transpose(1, 2)).view(batch, heads, count, -1)
        out = out + low_rank @ _heads(self.M @ v_proj.weight.T, heads)
        out = out + _heads(self.shift @ v_proj.weight.T + v_proj.bias, heads)
        return attention.out_proj(out.transpose(1, 2).flatten(2))

    def image_to_token(
        self, attention: Attention, queries: torch.Tensor, query_pe: torch.Tensor, name: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _Update]:
        """``attention(q=X + PE, k=queries + query_pe, v=queries)`` as a low-rank update of
        the image tokens, U^T M + constant: U (B, H * (T - 1), N) attention weights, M
        (B, H * (T - 1), C) their values, constant (B, 1, C) the same for every token."""
        heads = attention.num_heads
        head_dim = attention.internal_dim // heads
        keys = _heads(attention.k_proj(queries + query_pe), heads) * head_dim**-0.5
        values = _heads(attention.v_proj(queries), heads)  # (B, H, T, d)
        batch, _, count, _ = keys.shape
        scores = self.scores(keys, attention.q_proj, f"{name}.q")  # (B, H, T, N)
        weights = torch.softmax(scores, dim=2)  # each image token over the T tokens
        # A head's weights sum to 1 over the tokens, so its last token's row is 1 minus the
        # others: sum_t w_t v_t = sum_{t<T-1} w_t (v_t - v_last) + v_last. The update keeps
        # H * (T - 1) rows and the v_last terms become one constant row.
        last = values[:, :, -1:]
        values = values[:, :, :-1] - last  # (B, H, T - 1, d)
        out_weight = attention.out_proj.weight.T.reshape(heads, head_dim, -1)  # (H, d, C)
        M = (values @ out_weight).reshape(batch, heads * (count - 1), -1)
        constant = (last @ out_weight).sum(1)  # (B, 1, C)
        update = _Update(values, attention.out_proj, name, self.level)
        U = weights[:, :, :-1].reshape(batch, heads * (count - 1), -1)
        return U, M, constant, update

    def add_and_norm(
        self, U, M, update: _Update, bias: torch.Tensor, norm: torch.nn.LayerNorm
    ) -> _Tokens:
        """``norm(X + U^T M + bias)`` at the next level, without forming it."""
        # X + U^T M + b = scale * (F + [U_x; U / scale; 1 / scale]^T [M_x; M; shift + b]);
        # LayerNorm sees it centred: F and every row of the right factor centred.
        inverse = (1 / self.scale).unsqueeze(1)  # (B, 1, N)
        U = torch.cat([self.U, U * inverse, inverse], dim=1)  # (B, R', N)
        M = _center(torch.cat([self.M, M, self.shift + bias], dim=1))  # (B, R', C)
        batch, _, channels = M.shape
        centered, squared_norms = self.owner.centered_base(self.level)  # (N, C), (N,)
        # |F_c + U^T M|^2 per token = |F_c|^2 + 2 U . (M F_c^T) + U . ((M M^T) U)
        blocks = [*self.blocks, update, None]
        cross = torch.cat(self._cross(blocks, M, centered), dim=1)  # M F_c^T (B, R', N)
        squares = torch.baddbmm(2 * cross, M @ M.transpose(1, 2), U)
        squares = squared_norms + (squares * U).sum(1)
        variance = self.scale.square() * squares / channels
        scale = self.scale * torch.rsqrt(variance + norm.eps)
        shift = norm.bias.view(1, 1, -1).expand(batch, 1, -1)
        return _Tokens(self.owner, self.level + 1, scale, U, M * norm.weight, shift, blocks)

    def _cross(self, blocks: list, M: torch.Tensor, centered: torch.Tensor) -> list:
        """M F_c^T block by block. An update's rows are values (d wide per head) times fixed
        matrices, so F_c's products with those (cached per image) leave per-head products of
        d = 16 instead of C = 256 channels per row."""
        crosses, start = [], 0
        for block in blocks:
            if block is None:
                crosses.append(M[:, start : start + 1] @ centered.T)
                start += 1
            else:
                product = self.owner.update_products(block, self.level)  # (H, d, N)
                crosses.append(_per_head(block.values, product).flatten(1, 2))
                start += crosses[-1].shape[1]
        return crosses

    def project(self, weight: torch.Tensor, bias: torch.Tensor, name: str) -> torch.Tensor:
        """X W^T + b = scale * (F W^T + U^T M W^T) + shift W^T + b for W (out, C): (B, N, out)."""
        base = self.owner.cached(
            f"{name}@{self.level}", lambda: self.owner.base(self.level) @ weight.T
        )
        low_rank = torch.baddbmm(base, self.U.transpose(1, 2), self.M @ weight.T)
        return torch.addcmul(self.shift @ weight.T + bias, self.scale.unsqueeze(-1), low_rank)


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
        self.tokens = (image_embedding + dense).flatten(2)[0].T  # (N, C)
        self.pe = image_pe.flatten(2)[0].T  # (N, C)
        # level i's base is F_i = centre(F_{i-1}) * gamma_i, gamma_i of the LayerNorm after
        # block i-1's image-to-token attention
        self._norms = [layer.norm4 for layer in decoder.transformer.layers]
        self._cache: dict[str, torch.Tensor] = {}

    def cached(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def base(self, level: int) -> torch.Tensor:
        """F of the tokens at ``level`` (N, C)."""
        if level == 0:
            return self.tokens
        return self.cached(
            f"base@{level}",
            lambda: self.centered_base(level - 1)[0] * self._norms[level - 1].weight,
        )

    def centered_base(self, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """centre(F) (N, C) of ``level`` and its squared row norms (N,)."""
        centered = self.cached(f"centered@{level}", lambda: _center(self.base(level)))
        norms = self.cached(f"norms@{level}", lambda: centered.square().sum(-1))
        return centered, norms

    def update_products(self, update: _Update, level: int) -> torch.Tensor:
        """F_c of ``level`` times the rows that ``update``'s values go through, as they stand at
        ``level`` (centred and scaled by each LayerNorm since): (H, d, N), cached."""

        def compute() -> torch.Tensor:
            rows = update.out_proj.weight.T  # (H * d, C)
            for passed in range(update.level, level):
                rows = _center(rows) * self._norms[passed].weight
            product = self.centered_base(level)[0] @ rows.T  # (N, H * d)
            return _by_head_columns(product, update.values.shape[1])

        return self.cached(f"{update.name}.rows@{level}", compute)

    def image_tokens(self, batch: int) -> _Tokens:
        """The prompt-independent tokens, X = F_0, for ``batch`` prompts."""
        tokens, channels = self.tokens.shape
        return _Tokens(
            self,
            0,
            self.tokens.new_ones(batch, tokens),
            self.tokens.new_zeros(batch, 0, tokens),
            self.tokens.new_zeros(batch, 0, channels),
            self.tokens.new_zeros(batch, 1, channels),
            [],
        )

    def predict_masks(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.decoder
        transformer = decoder.transformer
        batch, (h, w) = sparse.shape[0], self.size
        if batch == 0:
            outputs = decoder.num_mask_tokens
            return sparse.new_zeros(0, outputs, 4 * h, 4 * w), sparse.new_zeros(0, outputs)
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        prompt = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)

        # TwoWayAttentionBlock.forward with the image side factored
        queries, image = prompt, self.image_tokens(batch)
        for index, layer in enumerate(transformer.layers):
            if index == 0:  # skip_first_layer_pe
                queries = layer.norm1(layer.self_attn(q=queries, k=queries, v=queries))
            else:
                q = queries + prompt
                queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
            attention = layer.cross_attn_token_to_image
            attended = image.token_to_image(attention, queries + prompt, f"{index}.t2i")
            queries = layer.norm2(queries + attended)
            queries = layer.norm3(queries + layer.mlp(queries))
            attention = layer.cross_attn_image_to_token
            U, M, constant, update = image.image_to_token(
                attention, queries, prompt, f"{index}.i2t"
            )
            bias = attention.out_proj.bias + constant
            image = image.add_and_norm(U, M, update, bias, layer.norm4)
        attention = transformer.final_attn_token_to_image
        attended = image.token_to_image(attention, queries + prompt, "final")
        queries = transformer.norm_final_attn(queries + attended)
        return self._upscale_masks(image, queries), decoder.iou_prediction_head(queries[:, 0])

    def _upscale_masks(self, image: _Tokens, queries: torch.Tensor) -> torch.Tensor:
        """output_upscaling and the hypernetwork product -> masks (B, K, 4h, 4w).

        Both transposed convolutions (kernel 2, stride 2) are per-pixel linear maps. Mask pixel
        (4y + 2 a1 + a2, 4x + 2 b1 + b2) comes from token (y, x), sub-pixel (a1, b1) of the
        first and (a2, b2) of the second; bands of ROWS_PER_BAND embedding rows go through
        both, one a2 at a time, so that the mask product writes whole mask rows."""
        decoder = self.decoder
        first_conv, norm, act1, second_conv, act2 = decoder.output_upscaling
        batch, (h, w) = queries.shape[0], self.size
        c1, c2 = first_conv.out_channels, second_conv.out_channels
        first_weight = first_conv.weight.permute(2, 3, 1, 0).reshape(4 * c1, -1)  # (a1, b1, o)
        first_bias = first_conv.bias.repeat(4)
        # per a2: (c1, (b2, o)) weights
        second_weight = second_conv.weight.permute(2, 0, 3, 1).reshape(2, c1, 2 * c2)
        second_bias = second_conv.bias.repeat(2)
        mask_tokens = queries[:, 1 : 1 + decoder.num_mask_tokens]
        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, K, c2)
        masks = queries.new_empty(batch, hyper_in.shape[1], h, 2, 2, 4 * w)  # rows (y, a1, a2)
        projected = image.project(first_weight, first_bias, "up").view(batch, h, w, 4 * c1)
        for top in range(0, h, ROWS_PER_BAND):
            rows = min(ROWS_PER_BAND, h - top)
            pixels = projected[:, top : top + rows].reshape(-1, c1)
            pixels = act1(F.layer_norm(pixels, (c1,), norm.weight, norm.bias, norm.eps))
            # (B, y, x, a1, b1, c1) -> rows (B, y, a1, x, b1)
            pixels = pixels.view(batch, rows, w, 2, 2, c1).transpose(2, 3).reshape(-1, c1)
            for a2 in range(2):
                upscaled = act2(torch.addmm(second_bias, pixels, second_weight[a2]))
                band = hyper_in @ upscaled.view(batch, -1, c2).transpose(1, 2)  # (B, K, pixels)
                masks[:, :, top : top + rows, :, a2] = band.view(batch, -1, rows, 2, 4 * w)
        return masks.view(batch, -1, 4 * h, 4 * w)


class SharingMaskDecoder(MaskDecoder):
    """:class:`MaskDecoder` with the same parameters that can also share the image-side work
    between the prompts of one image (:class:`ImageDecoding`)."""

    def image_decoding(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, dense: torch.Tensor
    ) -> ImageDecoding:
        """``image_embedding`` (1, C, h, w) prepared for prompts without a mask prompt."""
        return ImageDecoding(self, image_embedding, image_pe, dense)
