"""The text branch's fallback when no prompt set from CLIP's peaks passes verification: segment
everything's object proposals (once per image, the SAM embedding reused), ranked by how well the
dense CLIP features inside them match the text, the best few prompted again with their own grid
point and box."""

from __future__ import annotations

import numpy as np
import torch

from prompts.text_evidence import cover_margins, patch_cover
from prompts.text_results import PromptSet
from sam.cache import LRUCache, content_key
from sam.tasks.proposals import generate_proposals

PROPOSALS_KEPT = 100  # segment-everything proposals kept per image for the fallback


class ProposalCache:
    """Proposals per image, with their :func:`patch_cover` of CLIP's patch grid, so that a new
    text on a known image only multiplies the cover by its features."""

    def __init__(self, entries: int) -> None:
        self._entries: LRUCache[tuple[list[dict], dict]] = LRUCache(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, predictor, image: np.ndarray, points_per_side: int, grid: tuple[int, int] | None
    ) -> tuple[list[dict], torch.Tensor | None]:
        """(records of :func:`sam.tasks.proposals.generate_proposals` on a ``points_per_side``
        grid, best first; their cover of ``grid`` (M, h * w), None without a grid), both cached
        by image content; the image embedding is the predictor's."""
        key = content_key(image, "proposals", points_per_side, id(predictor.model))
        records, covers = self._entries.get(key) or (None, {})
        if records is None:
            records = generate_proposals(
                predictor.model,
                image,
                top_k=PROPOSALS_KEPT,
                points_per_side=points_per_side,
                output_mode="binary_mask",
                cache=predictor.cache,
            )
        if grid is not None and grid not in covers and records:
            covers[grid] = patch_cover([r["segmentation"] for r in records], grid)
        self._entries.put(key, (records, covers))
        return records, covers.get(grid)


def proposal_prompt_sets(
    records: list[dict],
    cover: torch.Tensor | None,
    dense: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    user: PromptSet,
    count: int,
) -> list[PromptSet]:
    """The ``count`` proposals whose pooled dense features match the text best, each as its own
    grid point plus its box (plus the person's clicks)."""
    if not records:
        return []
    pooled = cover_margins(cover, dense, target, negatives)
    sets = []
    for i in np.argsort(-pooled, kind="stable")[:count]:
        if not np.isfinite(pooled[i]):
            continue
        x, y, w, h = records[i]["bbox"]
        coords = [np.asarray(records[i]["point_coords"], np.float32).reshape(1, 2)]
        labels = [np.ones(1, np.int64)]
        if user.point_coords is not None:
            coords.append(user.point_coords)
            labels.append(user.point_labels)
        box = np.array([x, y, x + w, y + h], dtype=np.float32)
        sets.append(PromptSet(np.concatenate(coords), np.concatenate(labels), box, "proposal"))
    return sets
