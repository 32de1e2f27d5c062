from __future__ import annotations

import pytest
import torch

from sam import build_sam
from sam.weights.transformers_keys import (
    hf_to_original,
    is_hf_layout,
    original_to_hf,
    to_transformers_config,
)


@pytest.mark.parametrize("name", ["vit_test", "vit_b"])
def test_round_trip_is_lossless_both_ways(name):
    from transformers import SamModel

    original = build_sam(name).state_dict()
    hf = original_to_hf(original)
    hf_keys = set(SamModel(to_transformers_config(build_sam(name).config)).state_dict())
    assert set(hf) == hf_keys
    back = hf_to_original(hf)
    assert set(back) == set(original)
    assert all(torch.equal(back[k], original[k]) for k in original)
    again = original_to_hf(back)
    assert set(again) == set(hf) and all(torch.equal(again[k], hf[k]) for k in hf)


def test_hf_without_prompt_encoder_copy_of_the_positional_encoding(tiny_sam):
    hf = original_to_hf(tiny_sam.state_dict())
    del hf["prompt_encoder.shared_embedding.positional_embedding"]
    back = hf_to_original(hf)
    assert torch.equal(
        back["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
        tiny_sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
    )


def test_layout_detection(tiny_sam):
    assert not is_hf_layout(tiny_sam.state_dict())
    assert is_hf_layout(original_to_hf(tiny_sam.state_dict()))
    with pytest.raises(ValueError, match="neither"):
        is_hf_layout({"foo.weight": torch.zeros(1)})
