"""SamPredictor against segment_anything.SamPredictor on the same weights, plus bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as ReferencePredictor

from sam import EmbeddingCache, ImageNotSetError, SamPredictor

ATOL = 1e-4


def _image(height: int, width: int, channels: int | None = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3]


def _assert_same(ours, ref, logits):
    """Low-res logits and IoU within ATOL; masks identical except at the threshold."""
    masks, iou, low_res = ours
    ref_masks, ref_iou, ref_low_res = ref
    assert masks.shape == ref_masks.shape and masks.dtype == ref_masks.dtype
    np.testing.assert_allclose(low_res, ref_low_res, atol=ATOL, rtol=0)
    np.testing.assert_allclose(iou, ref_iou, atol=ATOL, rtol=0)
    differ = masks != ref_masks
    assert np.all(np.abs(logits[differ]) < 1e-3), f"{differ.sum()} mask pixels differ"


@pytest.fixture()
def predictors(tiny_sam, reference_tiny_sam):
    return SamPredictor(tiny_sam), ReferencePredictor(reference_tiny_sam)


@pytest.mark.parametrize(
    ("height", "width", "channels"),
    [(333, 517, 3), (1, 1, 3), (4000, 300, 3), (120, 90, None), (64, 200, 4), (50, 50, 1)],
)
def test_matches_reference_on_odd_images(predictors, height, width, channels):
    ours, ref = predictors
    image = _image(height, width, channels)
    ours.set_image(image)
    ref.set_image(_rgb(image) if channels != 1 else np.repeat(image, 3, axis=2))
    assert ours.original_size == ref.original_size and ours.input_size == ref.input_size
    torch.testing.assert_close(
        ours.get_image_embedding(), ref.get_image_embedding(), atol=ATOL, rtol=0
    )

    rng = np.random.default_rng(1)
    points = rng.uniform(0, [width, height], size=(3, 2))
    labels = np.array([1, 0, 1])
    x0, x1 = sorted(rng.uniform(0, width, 2))
    y0, y1 = sorted(rng.uniform(0, height, 2))
    box = np.array([x0, y0, x1, y1])
    _, _, low_res = ref.predict(points[:1], labels[:1])
    mask_input = low_res[:1] * 3
    cases = [
        dict(point_coords=points, point_labels=labels),
        dict(box=box),
        dict(point_coords=points, point_labels=labels, box=box),
        dict(point_coords=points[:1], point_labels=labels[:1], mask_input=mask_input),
        dict(point_coords=points, point_labels=labels, multimask_output=False),
    ]
    for case in cases:
        logits, _, _ = ours.predict(**case, return_logits=True)
        _assert_same(ours.predict(**case), ref.predict(**case), logits)


def test_bgr_input_matches_reference(predictors):
    ours, ref = predictors
    image = _image(70, 90)
    ours.set_image(image, image_format="BGR")
    ref.set_image(image, image_format="BGR")
    torch.testing.assert_close(ours.features, ref.features, atol=ATOL, rtol=0)


def test_predict_torch_batch_of_boxes_matches_reference(predictors):
    ours, ref = predictors
    image = _image(200, 300)
    ours.set_image(image)
    ref.set_image(image)
    boxes = torch.tensor([[10, 20, 100, 150], [0, 0, 299, 199], [50, 60, 55, 70.0]])
    boxes = ours.transform.apply_boxes_torch(boxes, (200, 300))
    points = torch.tensor([[[40.0, 60.0]], [[100.0, 100.0]], [[52.0, 65.0]]])
    labels = torch.ones(3, 1, dtype=torch.int)
    for kwargs in (dict(boxes=boxes), dict(boxes=boxes, point_coords=points, point_labels=labels)):
        kwargs = {"point_coords": None, "point_labels": None, **kwargs}
        ours_out = ours.predict_torch(**kwargs)
        ref_out = ref.predict_torch(**kwargs)
        assert ours_out[0].shape == ref_out[0].shape == (3, 3, 200, 300)
        logits = ours.predict_torch(**kwargs, return_logits=True)[0]
        _assert_same([t.numpy() for t in ours_out], [t.numpy() for t in ref_out], logits.numpy())


def test_predict_torch_with_no_prompts_returns_empty_batches(tiny_sam):
    # the reference raises from deep inside its decoder here; an empty batch is not an error
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(50, 60))
    side = tiny_sam.prompt_encoder.mask_input_size[0]
    for kwargs in (
        dict(point_coords=None, point_labels=None, boxes=torch.zeros(0, 4)),
        dict(point_coords=torch.zeros(0, 1, 2), point_labels=torch.zeros(0, 1, dtype=torch.int)),
    ):
        masks, iou, low_res = predictor.predict_torch(**kwargs)
        assert masks.shape == (0, 3, 50, 60) and iou.shape == (0, 3)
        assert low_res.shape == (0, 3, side, side)


def test_predict_ranked_orders_by_predicted_iou(predictors):
    ours, _ = predictors
    ours.set_image(_image(100, 100))
    candidates = ours.predict_ranked(np.array([[50, 50]]), np.array([1]))
    assert len(candidates) == 3
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    masks, iou, low_res = ours.predict(np.array([[50, 50]]), np.array([1]))
    best = int(np.argmax(iou))
    assert candidates[0].output_index == best
    assert np.array_equal(candidates[0].mask, masks[best])
    assert candidates[0].low_res_logits.shape == (1, *low_res.shape[1:])


def _count_encoder_calls(model):
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_cached_image_does_not_run_the_encoder(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    calls, handle = _count_encoder_calls(tiny_sam)
    try:
        first, second = _image(80, 60, seed=1), _image(80, 60, seed=2)
        predictor.set_image(first)
        embedding = predictor.get_image_embedding().clone()
        predictor.set_image(second)
        predictor.set_image(first.copy())  # same content, different array
        assert len(calls) == 2
        torch.testing.assert_close(predictor.get_image_embedding(), embedding, atol=0, rtol=0)
        predictor.predict(np.array([[10, 10]]), np.array([1]))
        # A second predictor sharing the cache (another app session) reuses it too.
        other = SamPredictor(tiny_sam, cache=predictor.cache)
        other.set_image(second)
        assert len(calls) == 2
    finally:
        handle.remove()


def test_cache_stays_within_its_bounds(tiny_sam):
    entry_bytes = 4 * tiny_sam.config.prompt_embed_dim * tiny_sam.config.image_embedding_size**2
    cache = EmbeddingCache(max_entries=3, max_bytes=10 * entry_bytes)
    predictor = SamPredictor(tiny_sam, cache=cache)
    for seed in range(6):
        predictor.set_image(_image(20, 20, seed=seed))
        assert len(cache) <= 3
    small = EmbeddingCache(max_entries=10, max_bytes=2 * entry_bytes)
    predictor = SamPredictor(tiny_sam, cache=small)
    for seed in range(6):
        predictor.set_image(_image(20, 20, seed=seed))
        assert small.nbytes <= 2 * entry_bytes and len(small) == min(seed + 1, 2)


BAD_PREDICT_ARGS = [
    (dict(point_coords=np.zeros((2, 3)), point_labels=np.ones(2)), "point_coords"),
    (dict(point_coords=np.zeros(2), point_labels=np.ones(1)), "point_coords"),
    (dict(point_coords=np.zeros((2, 2)), point_labels=np.ones(3)), "point_labels"),
    (dict(point_coords=np.zeros((1, 2))), "point_labels"),
    (dict(point_labels=np.ones(1)), "point_coords"),
    (dict(point_coords=np.array([[np.nan, 1.0]]), point_labels=np.ones(1)), "point_coords"),
    (dict(point_coords=np.array([[np.inf, 1.0]]), point_labels=np.ones(1)), "point_coords"),
    (dict(point_coords=np.array([["a", "b"]]), point_labels=np.ones(1)), "point_coords"),
    (dict(point_coords=np.zeros((1, 2)), point_labels=np.array([2])), "point_labels"),
    (dict(point_coords=np.zeros((1, 2)), point_labels=np.array([True])), "point_labels"),
    (dict(box=np.array([50, 10, 20, 40])), "box"),
    (dict(box=np.array([10, 40, 20, 30])), "box"),
    (dict(box=np.zeros(3)), "box"),
    (dict(box=np.array([0, 0, np.nan, 5])), "box"),
    (dict(mask_input=np.zeros((1, 64, 64))), "mask_input"),
    (dict(mask_input=np.zeros((32, 32))), "mask_input"),
]


@pytest.mark.parametrize(("kwargs", "argument"), BAD_PREDICT_ARGS)
def test_bad_prompts_raise_value_error_naming_the_argument(tiny_sam, kwargs, argument):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(40, 40))
    with pytest.raises(ValueError, match=argument):
        predictor.predict(**kwargs)


def test_padding_label_is_accepted(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(40, 40))
    masks, _, _ = predictor.predict(np.array([[5, 5], [0, 0]]), np.array([1, -1]))
    assert masks.shape == (3, 40, 40)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10, 2), dtype=np.uint8), "shape"),
        (np.zeros((0, 10, 3), dtype=np.uint8), "empty"),
        ([[1, 2], [3, 4]], "numpy array"),
    ],
)
def test_bad_images_raise_value_error(tiny_sam, image, message):
    with pytest.raises(ValueError, match=message):
        SamPredictor(tiny_sam).set_image(image)


def test_bad_torch_image_and_format(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    with pytest.raises(ValueError, match="transformed_image"):
        predictor.set_torch_image(torch.zeros(1, 3, 20, 20), (20, 20))
    with pytest.raises(ValueError, match="image_format"):
        predictor.set_image(_image(4, 4), image_format="RGBA")


def test_predict_before_set_image(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    for call in (
        lambda: predictor.predict(np.zeros((1, 2)), np.ones(1)),
        lambda: predictor.predict_torch(None, None, boxes=torch.zeros(1, 4)),
        predictor.get_image_embedding,
    ):
        with pytest.raises(ImageNotSetError, match="set_image"):
            call()
    assert issubclass(ImageNotSetError, RuntimeError) and issubclass(ImageNotSetError, ValueError)


def test_predict_torch_bad_batches(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(40, 40))
    with pytest.raises(ValueError, match="boxes"):
        predictor.predict_torch(torch.zeros(2, 1, 2), torch.ones(2, 1), boxes=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="point_coords"):
        predictor.predict_torch(torch.zeros(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="mask_input"):
        predictor.predict_torch(
            torch.zeros(2, 1, 2), torch.ones(2, 1), mask_input=torch.zeros(1, 1, 32, 32)
        )


def test_predict_batch_equals_one_prompt_at_a_time(tiny_sam):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(90, 130))
    boxes = np.array([[10, 20, 60, 80], [0, 0, 129, 89], [70, 10, 120, 50]], dtype=np.float32)
    point_sets = [np.array([[30, 40]]), np.array([[5, 5], [100, 60]]), np.array([[90, 30]])]
    label_sets = [np.array([1]), np.array([1, 0]), np.array([1])]
    calls = [
        (dict(boxes=boxes), [dict(box=b) for b in boxes]),
        (
            dict(point_coords=point_sets, point_labels=label_sets),
            [dict(point_coords=p, point_labels=lab) for p, lab in zip(point_sets, label_sets)],
        ),
        (
            dict(boxes=boxes, point_coords=point_sets, point_labels=label_sets, chunk=1),
            [
                dict(box=b, point_coords=p, point_labels=lab)
                for b, p, lab in zip(boxes, point_sets, label_sets)
            ],
        ),
    ]
    for batch_kwargs, single_kwargs in calls:
        batched = predictor.predict_batch(**batch_kwargs)
        assert len(batched) == 3 and all(len(ranked) == 3 for ranked in batched)
        for ranked, kwargs in zip(batched, single_kwargs):
            alone = predictor.predict_ranked(**kwargs)
            assert [c.output_index for c in ranked] == [c.output_index for c in alone]
            for ours, theirs in zip(ranked, alone):
                assert ours.score == pytest.approx(theirs.score, abs=ATOL)
                np.testing.assert_allclose(
                    ours.low_res_logits, theirs.low_res_logits, atol=ATOL, rtol=0
                )
                assert ours.mask.shape == (90, 130)
                assert (ours.mask != theirs.mask).mean() < 1e-3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(), "at least one box or point set"),
        (dict(boxes=np.zeros((2, 3))), "boxes"),
        (dict(point_coords=[np.zeros((1, 2))]), "together"),
        (dict(point_coords=[np.zeros((1, 2))], point_labels=[]), "1 point sets but 0"),
        (
            dict(boxes=np.zeros((2, 4)), point_coords=[np.zeros((1, 2))], point_labels=[[1]]),
            "2 boxes",
        ),
        (dict(point_coords=[np.zeros((0, 2))], point_labels=[np.zeros(0)]), "point set 0 is empty"),
        (dict(point_coords=[np.zeros((1, 2))], point_labels=[[3]]), "point_labels"),
    ],
)
def test_predict_batch_bad_input(tiny_sam, kwargs, message):
    predictor = SamPredictor(tiny_sam)
    predictor.set_image(_image(40, 40))
    with pytest.raises(ValueError, match=message):
        predictor.predict_batch(**kwargs)
