"""The encoder's pieces against Meta's reference functions."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling import image_encoder as reference

from sam.modeling import image_encoder
from sam.modeling.image_encoder import Attention, window_partition, window_unpartition


def test_rel_pos_tables_are_interpolated_like_the_reference():
    table = torch.randn(9, 4)  # made for size 5, used for size 7
    torch.testing.assert_close(
        image_encoder.get_rel_pos(7, 7, table), reference.get_rel_pos(7, 7, table)
    )


@pytest.mark.parametrize("hw", [(14, 14), (13, 20), (64, 64)])
def test_window_partition_round_trip(hw):
    x = torch.randn(2, *hw, 6)
    windows, padded = window_partition(x, 14)
    ref_windows, ref_padded = reference.window_partition(x, 14)
    assert padded == ref_padded and torch.equal(windows, ref_windows)
    assert torch.equal(window_unpartition(windows, 14, padded, hw), x)


@pytest.mark.parametrize("use_rel_pos", [True, False])
def test_attention_matches_reference(use_rel_pos):
    torch.manual_seed(0)
    ours = Attention(24, num_heads=3, use_rel_pos=use_rel_pos, input_size=(6, 5))
    theirs = reference.Attention(24, num_heads=3, use_rel_pos=use_rel_pos, input_size=(6, 5))
    for parameter in ours.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 6, 5, 24)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
