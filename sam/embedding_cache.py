"""A bounded LRU cache of image embeddings, keyed by image content."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CachedEmbedding:
    """What :class:`sam.predictor.SamPredictor` needs to prompt an image again."""

    image_embedding: torch.Tensor  # (1, C, H/16, W/16), float32
    input_size: tuple[int, int]  # size of the resized image inside the padded model input
    original_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.image_embedding.numel() * self.image_embedding.element_size()


def content_key(data: np.ndarray | torch.Tensor, *extra: object) -> str:
    """A digest of an array's bytes, shape and dtype, plus any ``extra`` context (model, format)."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().contiguous().numpy()
    data = np.ascontiguousarray(data)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((data.shape, str(data.dtype), extra)).encode())
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


class EmbeddingCache:
    """Least-recently-used cache bounded both in entries and in bytes; safe across threads.

    One cache may be shared by many predictors (one per app session) over the same model.
    """

    def __init__(self, max_entries: int = 16, max_bytes: int = 512 * 2**20) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedEmbedding | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: str, entry: CachedEmbedding) -> None:
        if entry.nbytes > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything else
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
                self._entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
