"""How well the text branch works: a real :class:`~prompts.text_prompter.TextPrompter` on
generated scenes (an object named by its caption must be found with a good mask, a caption no
object has must be reported absent), and the choice of its verification threshold and IoU weight
on validation scenes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from prompts.clip_model import DEMO_CLIP_CHECKPOINT, DEMO_MODEL_NAME, ClipModel
from prompts.clip_training_data import CAPTIONS, HELD_OUT_SEED, SCENE_SIZE
from prompts.text_prompter import TextPrompter
from prompts.text_verification import passing_prompt_set
from sam.io.masks import mask_iou
from sam.train.scenes import scene_dataset, whole_masks


def evaluate_text_branch(
    clip: ClipModel,
    predictor,
    scenes,
    absent_per_scene: int = 2,
    seed: int = 0,
    **prompter_options,
) -> dict:
    """The text branch (a real :class:`TextPrompter`) on generated scenes.

    Every object whose caption is unique in its scene is asked for by its caption; its true mask
    is the object with its parts. ``absent_per_scene`` captions no object of the scene has are
    asked for too. Returns fractions: ``present_iou70`` (found, and the best returned mask has
    IoU >= 0.7), ``present_iou30`` (found, IoU >= 0.3: the right object, whatever SAM's mask
    quality), ``present_found``, ``present_any_iou70`` (one of the three masks >= 0.7),
    ``absent_not_found``, with the counts and the mean seconds per query.
    """
    prompter = TextPrompter(clip, predictor, **prompter_options)
    rng = np.random.default_rng(seed)
    ious, any_ious, found, absent_ok = [], [], [], []
    start, queries = time.perf_counter(), 0
    for scene in scenes:
        wholes = whole_masks(scene)
        names = [o.caption for o in scene.objects]
        for i, name in enumerate(names):
            if names.count(name) != 1:
                continue
            result = prompter.segment(scene.image, name)
            queries += 1
            found.append(result.found)
            ious.append(mask_iou(result.best.mask, wholes[i]) if result.found else 0.0)
            any_ious.append(
                max((mask_iou(c.mask, wholes[i]) for c in result.candidates), default=0.0)
                if result.found
                else 0.0
            )
        missing = [c for c in CAPTIONS if c not in set(names)]
        for index in rng.choice(len(missing), size=absent_per_scene, replace=False):
            absent_ok.append(not prompter.segment(scene.image, missing[index]).found)
            queries += 1
    ious_a, any_a = np.array(ious), np.array(any_ious)
    return {
        "present": len(ious),
        "present_iou70": float((ious_a >= 0.7).mean()) if ious else float("nan"),
        "present_iou30": float((ious_a >= 0.3).mean()) if ious else float("nan"),
        "present_found": float(np.mean(found)) if found else float("nan"),
        "present_any_iou70": float((any_a >= 0.7).mean()) if ious else float("nan"),
        "present_mean_iou": float(ious_a.mean()) if ious else float("nan"),
        "absent": len(absent_ok),
        "absent_not_found": float(np.mean(absent_ok)) if absent_ok else float("nan"),
        "seconds_per_query": (time.perf_counter() - start) / max(1, queries),
    }


def choose_text_options(
    clip: ClipModel,
    predictor,
    scenes,
    thresholds: tuple[float, ...] = (0.0, 0.05, 0.1, 0.12, 0.15, 0.17, 0.2),
    iou_weights: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0),
    seed: int = 0,
    **prompter_options,
) -> tuple[dict, list[dict]]:
    """TextPrompter's ``verify_threshold`` and ``iou_weight`` that maximise the text issue's two
    figures, named object picked (best mask IoU >= 0.7) plus absent object not found, on
    ``scenes`` (use validation scenes, not the held-out ones). Runs every query once with the
    gates open, keeps every verified prompt set, and then chooses the set and applies the gates
    exactly as :meth:`TextPrompter.segment` does without its proposal fallback
    (``proposal_points=None``; :func:`evaluate_text_branch` tells whether the fallback helps);
    ``prompter_options`` go to the TextPrompter (e.g. ``refine_rounds``); returns (best
    options, table)."""
    prompter = TextPrompter(
        clip,
        predictor,
        **{
            **prompter_options,
            "existence_threshold": -np.inf,
            "verify_threshold": -np.inf,
            "proposal_points": None,
        },
    )
    rng = np.random.default_rng(seed)
    present, absent = [], []  # (evidence margin, alternatives, {id(candidate): true IoU})
    for scene in scenes:
        wholes = whole_masks(scene)
        names = [o.caption for o in scene.objects]
        for i, name in enumerate(names):
            if names.count(name) == 1:
                result = prompter.segment(scene.image, name)
                truth = {
                    id(c): mask_iou(c.mask, wholes[i]) for _, cs in result.alternatives for c in cs
                }
                present.append((result.evidence.margin, result.alternatives, truth))
        missing = [c for c in CAPTIONS if c not in set(names)]
        for index in rng.choice(len(missing), size=2, replace=False):
            result = prompter.segment(scene.image, missing[index])
            absent.append((result.evidence.margin, result.alternatives, {}))

    def shown(query, threshold: float, weight: float):
        """The candidate segment() would return first, or None for "not found"."""
        evidence, alternatives, _ = query
        chosen = passing_prompt_set(alternatives, weight, threshold) if evidence > 0 else None
        return chosen[1][0] if chosen is not None else None

    table = []
    for threshold in thresholds:
        for weight in iou_weights:
            ious = []
            for query in present:
                best = shown(query, threshold, weight)
                ious.append(query[2][id(best)] if best is not None else 0.0)
            ious = np.array(ious)
            rejected = [shown(query, threshold, weight) is None for query in absent]
            table.append(
                {
                    "verify_threshold": threshold,
                    "iou_weight": weight,
                    "present_iou70": float((ious >= 0.7).mean()),
                    "present_iou30": float((ious >= 0.3).mean()),
                    "absent_not_found": float(np.mean(rejected)),
                }
            )
    best = max(table, key=lambda r: r["present_iou70"] + r["absent_not_found"])
    return {"verify_threshold": best["verify_threshold"], "iou_weight": best["iou_weight"]}, table


def evaluate_bundle(
    clip_path: Path = DEMO_CLIP_CHECKPOINT, scenes: int = 50, **prompter_options
) -> dict:
    """Held-out figures of the saved CLIP with the bundled demo SAM (CPU)."""
    from prompts.clip_model import load_clip
    from sam import SamPredictor, load_sam

    clip = load_clip(DEMO_MODEL_NAME, pretrained=str(clip_path))
    predictor = SamPredictor(load_sam("demo", device="cpu"))
    held_out = scene_dataset(HELD_OUT_SEED, scenes, SCENE_SIZE)
    return evaluate_text_branch(clip, predictor, held_out, **prompter_options)
