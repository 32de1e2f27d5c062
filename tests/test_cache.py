"""The project's one LRU (sam/cache.py); the embedding cache's own behaviour is tested through the
predictor in tests/test_predictor.py."""

from __future__ import annotations

import threading

import pytest

from sam.cache import LRUCache


def test_least_recently_used_goes_first():
    cache = LRUCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the oldest
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.get("b") is None and (cache.hits, cache.misses) == (3, 1)


def test_bounded_in_bytes_too():
    cache = LRUCache(max_entries=10, max_bytes=10, size_of=len)
    cache.put("a", "xxxx")
    cache.put("b", "yyyy")
    cache.put("c", "zzzz")  # 12 bytes: "a" goes
    assert len(cache) == 2 and "a" not in cache and cache.nbytes == 8
    cache.put("huge", "w" * 11)  # larger than the whole cache: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 2


def test_get_or_create_creates_once_across_threads():
    cache, calls = LRUCache(max_entries=4), []

    def create():
        calls.append(1)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_create("k", create)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        LRUCache(max_entries=0)
    with pytest.raises(ValueError, match="go together"):
        LRUCache(max_entries=2, max_bytes=10)
