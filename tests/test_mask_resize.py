import pytest
import torch
import torch.nn.functional as F

from sam.fast.mask_resize import axis_operator, composed_is_faster, resize_logits_composed


def two_resizes(masks, frame, input_size, original_size):
    """The reference's postprocessing: upscale to the frame, crop, resize."""
    upscaled = F.interpolate(masks, (frame, frame), mode="bilinear", align_corners=False)[
        ..., : input_size[0], : input_size[1]
    ]
    return F.interpolate(upscaled, original_size, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    "batch, channels, input_size, original_size",
    [
        (1, 3, (1024, 1024), (512, 512)),
        (2, 3, (660, 1024), (333, 517)),
        (5, 1, (1024, 77), (300, 22)),
        (1, 1, (1024, 1024), (1, 1)),
        (0, 3, (1024, 1024), (512, 512)),  # an empty batch of prompts
        (1, 3, (768, 1024), (900, 1200)),  # larger than the frame: the map still equals them
    ],
)
def test_composed_map_equals_the_two_resizes(batch, channels, input_size, original_size):
    masks = torch.randn(batch, channels, 256, 256, generator=torch.Generator().manual_seed(0))
    composed = resize_logits_composed(masks, 4.0, input_size, original_size)
    expected = two_resizes(masks, 1024, input_size, original_size)
    assert composed.shape == expected.shape == (batch, channels, *original_size)
    assert composed.is_contiguous()
    torch.testing.assert_close(composed, expected, atol=1e-5, rtol=0)


def test_axis_operator_has_at_most_three_taps_per_row_summing_to_one():
    operator = axis_operator(256, 4.0, 660, 333).to_dense()
    assert operator.shape == (333, 256)
    assert int((operator != 0).sum(1).max()) <= 3
    torch.testing.assert_close(operator.sum(1), torch.ones(333))
    assert torch.all(operator[:, 166:] == 0)  # rows past the valid 660 of 1024 are never read


def test_composed_map_is_chosen_only_on_cpu_for_float_logits_of_images_well_below_the_frame():
    masks = torch.zeros(1, 3, 256, 256)
    assert composed_is_faster(masks, (1024, 1024), (512, 512))
    assert not composed_is_faster(masks, (768, 1024), (600, 800))
    assert not composed_is_faster(masks, (768, 1024), (1500, 2000))
    assert not composed_is_faster(masks.to("meta"), (1024, 1024), (512, 512))
    assert not composed_is_faster(masks.half(), (1024, 1024), (512, 512))
