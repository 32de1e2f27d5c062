"""The pipelines on SAM 2: SamPredictor against Meta's SAM2ImagePredictor on the same random
weights, the embedding cache and batched prompts, segment everything and the text branch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam import SamPredictor
from sam.automatic.generator import AutomaticMaskGenerator
from sam.modeling.sam2 import SAM2_CONFIGS, Sam2Features
from tests.reference_sam2 import build_meta_sam2, ours_from

CONFIG = SAM2_CONFIGS["sam2_test"]


@pytest.fixture(scope="module")
def meta():
    return build_meta_sam2(CONFIG, seed=7)


@pytest.fixture(scope="module")
def model(meta):
    return ours_from(meta, CONFIG)


@pytest.fixture(scope="module")
def reference_predictor(meta):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(meta)
    side = CONFIG.image_size  # the reference hard-codes the feature sizes of 1024-pixel models
    predictor._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16,) * 2]
    return predictor


def _image(height: int = 90, width: int = 140, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[20:60, 30:90] = (200, 40, 40)
    return image


def _assert_same_outputs(ours, theirs, what: str) -> None:
    (masks, iou, low_res), (ref_masks, ref_iou, ref_low_res) = ours, theirs
    assert masks.shape == ref_masks.shape, what
    np.testing.assert_allclose(iou, ref_iou, atol=1e-4, err_msg=what)
    np.testing.assert_allclose(low_res, ref_low_res, atol=1e-4, err_msg=what)
    if masks.dtype == bool:  # thresholded (the reference's as float); may differ only at 0
        assert (masks != ref_masks.astype(bool)).mean() < 1e-3, what
    else:
        np.testing.assert_allclose(masks, ref_masks, atol=1e-4, err_msg=what)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_predictions_match_meta_sam2_image_predictor(model, reference_predictor):
    image = _image()
    predictor = SamPredictor(model)
    predictor.set_image(image)
    reference_predictor.set_image(image)
    torch.testing.assert_close(
        predictor.get_image_embedding(),
        reference_predictor.get_image_embedding(),
        atol=1e-4,
        rtol=0,
    )
    points, labels = np.array([[50.0, 40.0], [100.0, 70.0]]), np.array([1, 0])
    box = np.array([25.0, 15.0, 95.0, 65.0])
    cases = {
        "points": dict(point_coords=points, point_labels=labels),
        "box single": dict(box=box, multimask_output=False),
        "points and box": dict(point_coords=points[:1], point_labels=labels[:1], box=box),
        "logits": dict(point_coords=points, point_labels=labels, return_logits=True),
    }
    for what, case in cases.items():
        ours = predictor.predict(**case)
        _assert_same_outputs(ours, reference_predictor.predict(**case), what)
    # refinement: the previous low-res logits as the mask prompt
    low_res = ours[2][:1]
    refine = dict(point_coords=points, point_labels=labels, mask_input=low_res)
    _assert_same_outputs(
        predictor.predict(**refine), reference_predictor.predict(**refine), "mask prompt"
    )


def test_ranked_candidates_and_the_cache(model):
    image = _image(seed=1)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    assert isinstance(predictor.features, Sam2Features)
    assert predictor.input_size == (128, 128) and predictor.original_size == (90, 140)
    ranked = predictor.predict_ranked(point_coords=[[60, 30]], point_labels=[1])
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert ranked[0].mask.shape == (90, 140) and ranked[0].low_res_logits.shape == (1, 32, 32)
    assert np.abs(ranked[0].low_res_logits).max() <= 32.0  # clamped as SAM 2's predictor does
    misses = predictor.cache.misses
    other = SamPredictor(model, cache=predictor.cache)
    other.set_image(image.copy())
    assert predictor.cache.misses == misses and predictor.cache.hits >= 1
    again = other.predict_ranked(point_coords=[[60, 30]], point_labels=[1])
    assert [c.score for c in again] == [c.score for c in ranked]
    assert predictor.cache.nbytes == predictor.features.nbytes > 0


def test_batched_prompts_equal_one_at_a_time(model):
    predictor = SamPredictor(model)
    predictor.set_image(_image(seed=2))
    boxes = np.array([[10, 10, 60, 50], [40, 20, 130, 80], [0, 0, 139, 89]], dtype=float)
    frame_boxes = predictor.transform.apply_boxes(boxes, predictor.original_size)
    masks, iou, low_res = predictor.predict_torch(
        None, None, boxes=torch.as_tensor(frame_boxes, dtype=torch.float)
    )
    assert masks.shape == (3, 3, 90, 140)
    for i, box in enumerate(boxes):
        _, one_iou, one_low_res = predictor.predict(box=box)
        np.testing.assert_allclose(iou[i].numpy(), one_iou, atol=1e-5)
        np.testing.assert_allclose(low_res[i].numpy(), one_low_res, atol=1e-4)


def test_set_torch_image_needs_the_square_frame(model):
    predictor = SamPredictor(model)
    with pytest.raises(ValueError, match="max\\(h, w\\) == 128"):
        predictor.set_torch_image(torch.zeros(1, 3, 64, 64), (64, 64))
    with pytest.raises(ValueError, match="128x128"):
        predictor.set_torch_image(torch.zeros(1, 3, 128, 96), (128, 96))


def test_segment_everything_on_sam2(model):
    generator = AutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    records = generator.generate(_image(seed=3))
    assert records, "random weights still give masks once the filters are off"
    for record in records:
        assert record["segmentation"].shape == (90, 140)
        assert 0.0 <= record["predicted_iou"] <= 1.0  # SAM 2's IoU head ends in a sigmoid
        assert set(record) >= {"bbox", "area", "point_coords", "stability_score", "crop_box"}


def test_text_branch_on_sam2(model):
    from prompts.clip_model import create_random_clip
    from prompts.text_prompter import TextPrompter
    from tests.text_fixtures import ALWAYS, red_circle_scene

    image = red_circle_scene()
    result = TextPrompter(create_random_clip(seed=0), SamPredictor(model), **ALWAYS).segment(
        image, "red circle"
    )
    assert result.found and len(result.candidates) == 3
    assert all(c.mask.shape == image.shape[:2] for c in result.candidates)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_large_logits_come_back_clamped_as_meta_does(meta):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    loud = copy.deepcopy(meta)
    with torch.no_grad():
        for mlp in loud.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(10.0)
    reference = SAM2ImagePredictor(loud)
    reference._bb_feat_sizes = [(32, 32), (16, 16), (8, 8)]
    predictor = SamPredictor(ours_from(loud, CONFIG))
    image = _image(seed=4)
    predictor.set_image(image)
    reference.set_image(image)
    prompt = dict(point_coords=np.array([[70.0, 40.0]]), point_labels=np.array([1]))
    ours = predictor.predict(**prompt, return_logits=True)
    assert np.abs(ours[0]).max() > 32.0  # the masks come from the unclamped logits
    assert np.abs(ours[2]).max() == 32.0
    _assert_same_outputs(ours, reference.predict(**prompt, return_logits=True), "clamped")
