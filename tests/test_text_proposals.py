"""The proposal fallback of text prompts: segment everything's proposals, generated once per
image and their patch cover kept, prompted when no peak prompt passes."""

from __future__ import annotations

import numpy as np

from prompts import text_proposals
from prompts.text_evidence import pooled_margins
from prompts.text_prompter import TextPrompter
from tests.text_fixtures import ALWAYS, red_circle_scene

pytest_plugins = ["tests.text_fixtures"]


def test_a_new_text_reuses_the_proposals_patch_cover(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=16, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])
    covers = []
    original = text_proposals.patch_cover
    monkeypatch.setattr(
        text_proposals, "patch_cover", lambda *a, **k: covers.append(1) or original(*a, **k)
    )
    image = red_circle_scene(3)
    first = prompter.segment(image, "red circle")
    second = prompter.segment(image, "blue square")
    assert len(covers) == 1 and first.found and second.found
    records = prompter.proposals(image)
    _, dense = prompter.image_features(image)
    masks = np.stack([r["segmentation"] for r in records])
    target, negatives = prompter.text_embedding("blue square"), prompter.negative_embeddings()
    pooled = pooled_margins(dense, masks, target, negatives)
    chosen = {tuple(p.box.tolist()) for p, _ in second.alternatives}
    best = {tuple(float(v) for v in records[i]["bbox"]) for i in np.argsort(-pooled)[:3]}
    assert {(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in chosen} <= best


def test_proposals_are_the_fallback_when_no_peak_prompt_passes(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=16, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])  # no peak prompt at all
    sam_runs, generated = [], []
    hook = predictor.model.image_encoder.register_forward_hook(lambda m, i, o: sam_runs.append(1))
    original = text_proposals.generate_proposals
    monkeypatch.setattr(
        text_proposals,
        "generate_proposals",
        lambda *args, **kwargs: generated.append(1) or original(*args, **kwargs),
    )
    try:
        image = red_circle_scene(3)
        result = prompter.segment(image, "red circle")
        again = prompter.segment(image, "red circle")
    finally:
        hook.remove()
    assert len(generated) == 1  # once per image
    assert result.found and result.prompts.source == "proposal"
    assert {p.source for p, _ in result.alternatives} == {"proposal"}
    assert len(result.alternatives) <= prompter.proposal_sets
    record_boxes = [
        [x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in prompter.proposals(image))
    ]
    assert result.prompts.box.tolist() in record_boxes
    assert result.prompts.point_labels.tolist() == [1]
    assert len(sam_runs) == 1  # the generator reused the predictor's embedding
    assert [c.iou for c in again.candidates] == [c.iou for c in result.candidates]


def test_no_proposal_fallback_when_switched_off(clip, predictor, monkeypatch):
    prompter = TextPrompter(clip, predictor, proposal_points=None, **ALWAYS)
    monkeypatch.setattr(prompter, "_prompt_sets", lambda *args: [])
    result = prompter.segment(red_circle_scene(3), "red circle")
    assert not result.found and result.candidates == [] and len(prompter._proposal_cache) == 0
