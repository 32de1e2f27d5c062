from __future__ import annotations

import pytest
import torch

from sam import build_sam
from sam.random_weights import randomize_weights

torch.set_num_threads(max(1, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_sam():
    """The test-sized model with every weight random (float32, CPU)."""
    return randomize_weights(build_sam("vit_test"), seed=0)


@pytest.fixture(scope="session")
def reference_tiny_sam(tiny_sam):
    from tests.reference import build_reference_sam

    return build_reference_sam(tiny_sam.config, tiny_sam.state_dict())
