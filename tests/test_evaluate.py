import json

import numpy as np
import pytest

from sam.evaluate import EvalResult, center_point, evaluate, write_report
from sam.train.data import Sample


def _disk(shape=(40, 50), centre=(20, 15), radius=8) -> np.ndarray:
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2 <= radius**2


def _square(top, left, side, shape=(40, 50)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + side, left : left + side] = True
    return mask


class GroundTruthPredictor:
    """Test double: answers every prompt with the ground-truth mask it points into."""

    def __init__(self, masks, empty=False):
        self.masks, self.empty = masks, empty

    def set_image(self, image):
        self.shape = image.shape[:2]

    def predict(
        self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True
    ):
        if box is not None:
            x, y = (box[:2] + box[2:]) / 2
        else:
            x, y = point_coords[point_labels == 1][0]
        mask = next(m for m in self.masks if m[int(y), int(x)])
        if self.empty:
            mask = np.zeros_like(mask)
        count = 3 if multimask_output else 1
        masks = np.stack([mask] * count)
        return masks, np.linspace(1, 0.5, count), np.zeros((count, 256, 256), np.float32)


def _samples():
    masks = [_disk(), _square(5, 30, 12)]
    return [Sample(np.zeros((40, 50, 3), np.uint8), masks)], masks


@pytest.mark.parametrize("empty, expected", [(False, 1.0), (True, 0.0)])
def test_perfect_and_empty_predictors(empty, expected):
    samples, masks = _samples()
    result = evaluate(GroundTruthPredictor(masks, empty), samples, "toy", num_points=4)
    assert result.num_masks == 2
    values = [result.center_oracle, result.center_top, result.random_oracle, result.random_top]
    assert values + [result.box] == [expected] * 5
    assert result.interactive == [expected] * 4


def test_center_point_of_a_disk_is_its_centre():
    np.testing.assert_array_equal(center_point(_disk(centre=(20, 15))), [15, 20])
    # the image border counts as boundary
    assert center_point(np.ones((9, 9), bool)).tolist() == [4, 4]


def test_write_report(tmp_path):
    result = EvalResult("toy", 3, 0.5, 0.4, 0.3, 0.2, 0.9, [0.1 * k for k in range(1, 10)])
    table = write_report([result], tmp_path).read_text()
    assert "| toy | 3 | 0.500 | 0.400 |" in table and "0.900" in table
    assert json.loads((tmp_path / "toy.json").read_text())["box"] == 0.9
