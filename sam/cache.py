"""The project's one cache: a bounded, thread-safe LRU, and the image-embedding cache on it."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
import torch

if TYPE_CHECKING:
    from sam.modeling.sam2 import Sam2Features

Value = TypeVar("Value")


class LRUCache(Generic[Value]):
    """Least-recently-used cache bounded in entries and, if ``size_of`` is given, in bytes.

    Safe across threads: one cache may be shared by every session of the app.
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int | None = None,
        size_of: Callable[[Value], int] | None = None,
    ) -> None:
        if max_entries < 1 or (max_bytes is not None and max_bytes < 1):
            raise ValueError("max_entries and max_bytes must be positive")
        if (max_bytes is None) != (size_of is None):
            raise ValueError("max_bytes and size_of go together")
        self.max_entries, self.max_bytes, self.size_of = max_entries, max_bytes, size_of
        self._entries: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Value | None:
        with self._lock:
            if key not in self._entries:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return self._entries[key]

    def put(self, key: Hashable, value: Value) -> None:
        if self.max_bytes is not None and self.size_of(value) > self.max_bytes:
            return  # larger than the whole cache: keeping it would evict everything else
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries or (
                self.max_bytes is not None and self.nbytes > self.max_bytes
            ):
                self._entries.popitem(last=False)

    def get_or_create(self, key: Hashable, create: Callable[[], Value]) -> Value:
        """The cached value, or ``create()`` stored and returned; ``create`` runs under the
        cache's lock, so that two threads asking for the same key create it once."""
        with self._lock:
            value = self.get(key)
            if value is None:
                value = create()
                self.put(key, value)
            return value

    @property
    def nbytes(self) -> int:
        """Bytes held, by ``size_of`` (0 without it)."""
        if self.size_of is None:
            return 0
        return sum(self.size_of(value) for value in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True)
class CachedEmbedding:
    """What :class:`sam.predictor.SamPredictor` needs to prompt an image again."""

    # (1, C, H/16, W/16) float32 for SAM; SAM 2's bundle (sam.modeling.sam2.Sam2Features)
    image_embedding: torch.Tensor | Sam2Features
    input_size: tuple[int, int]  # size of the resized image inside the padded model input
    original_size: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.image_embedding.nbytes


class EmbeddingCache(LRUCache[CachedEmbedding]):
    """Image embeddings keyed by image content (:func:`content_key`), bounded in entries and
    bytes. One cache may be shared by many predictors (one per app session) over one model."""

    def __init__(self, max_entries: int = 16, max_bytes: int = 512 * 2**20) -> None:
        super().__init__(max_entries, max_bytes, size_of=lambda entry: entry.nbytes)


def content_key(data: np.ndarray | torch.Tensor, *extra: object) -> str:
    """A digest of an array's bytes, shape and dtype, plus any ``extra`` context (model, format)."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().contiguous().numpy()
    data = np.ascontiguousarray(data)
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((data.shape, str(data.dtype), extra)).encode())
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()
