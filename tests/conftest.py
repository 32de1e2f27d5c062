from __future__ import annotations

import threading

import pytest
import torch

from prompts.model_shelf import PREWARM_THREAD
from sam import build_sam, optimize
from sam.weights.random_weights import randomize_weights


@pytest.fixture(autouse=True)
def torch_threads(request):
    """Fast tests run tiny models on one thread: with two threads on a busy 2-core machine they
    run many times slower. Slow tests (vit_b sized) keep every thread."""
    threads = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def background_exports_finished():
    """Every decoder export a test's model shelf started in the background ends with the test,
    so that none runs on into later tests: it takes their CPU, and torch.export, which the
    exporter serializes, would make their own exports wait for it."""
    yield
    for thread in threading.enumerate():
        if thread.name == PREWARM_THREAD:
            thread.join()


@pytest.fixture(scope="session")
def tiny_sam():
    """The test-sized model with every weight random (float32, CPU), optimized as
    :func:`sam.load_sam` returns models."""
    return optimize(randomize_weights(build_sam("vit_test"), seed=0))


@pytest.fixture(scope="session")
def plain_tiny_sam():
    """The same model and weights as ``tiny_sam``, plain (Meta's code as written)."""
    return randomize_weights(build_sam("vit_test"), seed=0)


@pytest.fixture(scope="session")
def reference_tiny_sam(tiny_sam):
    from tests.reference import build_reference_sam

    return build_reference_sam(tiny_sam.config, tiny_sam.state_dict())
