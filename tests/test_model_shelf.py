"""The model shelf: SAM models loaded once and shared, with a fallback and a banner when the one
asked for cannot be loaded; the CLIP that serves text prompts with each, loaded on first use."""

from __future__ import annotations

import pytest

from prompts import model_shelf
from prompts.clip_model import ClipLoadError, create_random_clip
from prompts.hub_access import HubAccess
from prompts.model_shelf import ModelShelf, TextModels, load_with_fallback
from prompts.text_prompter import TextModel
from sam import CheckpointError, build_sam
from sam.weights.random_weights import randomize_weights
from tests.page_fixtures import hub_state_kept


@pytest.fixture(scope="module")
def random_clip():
    return create_random_clip(seed=0)


def online():
    """A Hub access that says the Hub answers (no network is used)."""
    return HubAccess(probe=lambda url: True)


def test_falls_back_to_a_random_model_with_a_notice():
    def offline(name, **_):
        raise CheckpointError(f"could not get {name}: offline")

    loaded = load_with_fallback("vit_b", loader=offline, hub=online())
    assert loaded.used == "vit_test" and loaded.requested == "vit_b" and loaded.fell_back
    assert "untrained test model" in loaded.notice and "meaningless" in loaded.notice
    assert "--model /path/to/model.safetensors" in loaded.notice
    assert "vit_b could not be loaded" in loaded.notice


def test_falls_back_to_the_demo_model_when_it_exists(tiny_sam):
    def only_demo(name, **_):
        if name != "demo":
            raise CheckpointError("offline")
        return tiny_sam

    loaded = load_with_fallback("vit_h", loader=only_demo, hub=online())
    assert loaded.used == "demo" and "bundled demo model" in loaded.notice
    assert "https://huggingface.co/facebook/sam-vit-huge" in loaded.notice
    served = load_with_fallback("demo", loader=only_demo)
    assert not served.fell_back and served.notice.startswith("Serving **the bundled demo model**")


def test_offline_is_detected_once_and_the_demo_model_serves_at_once(tiny_sam):
    probes, loads = [], []

    def loader(name, **_):
        loads.append(name)
        if name != "demo":
            raise CheckpointError("not in the cache")
        return tiny_sam

    shelf = ModelShelf(loader=loader)
    shelf.hub = HubAccess(probe=lambda url: probes.append(url) or False)
    with hub_state_kept():
        for name in ("vit_b", "vit_l"):
            loaded = shelf.get(name)
            assert loaded.used == "demo" and "because this machine is offline" in loaded.notice
    assert len(probes) == 1 and loads == ["vit_b", "demo", "vit_l", "demo"]
    assert "sam-vit-large" in shelf.get("vit_l").notice


def test_shelf_loads_each_model_once():
    calls = []

    def loader(name, **_):
        calls.append(name)
        # the same weights each time: the shelf's background export of the decoder finds its
        # file already written, instead of exporting a fresh random model per load
        return randomize_weights(build_sam("vit_test"), seed=0)

    shelf = ModelShelf(loader=loader, capacity=1)
    assert shelf.get("a") is shelf.get("a") and calls == ["a"]
    shelf.get("b")
    shelf.get("a")
    assert calls == ["a", "b", "a"]  # capacity 1: "a" was dropped for "b"


def test_which_clip_serves_which_model(monkeypatch, tmp_path, random_clip):
    assert model_shelf.clip_kind("demo") == model_shelf.clip_kind("x.safetensors") == "demo"
    assert {model_shelf.clip_kind(m) for m in ("vit_b", "vit_l", "vit_h")} == {"default"}
    monkeypatch.setattr(model_shelf, "DEMO_CLIP_CHECKPOINT", tmp_path / "absent.safetensors")
    monkeypatch.setattr(model_shelf, "create_random_clip", lambda *_: random_clip)
    model = model_shelf.load_text_model("demo")
    assert model.clip is random_clip and "untrained" in model.note

    def offline(*_, **__):
        raise ClipLoadError("could not load CLIP model: offline")

    monkeypatch.setattr(model_shelf, "load_clip", offline)
    with pytest.raises(ClipLoadError, match="Text prompts need the CLIP model ViT-B-16") as info:
        model_shelf.load_text_model("default")
    assert "keep working" in str(info.value) and len(str(info.value)) < 250


def test_a_failed_clip_load_is_remembered_not_retried_on_every_request(random_clip):
    calls = []

    def flaky(kind):
        calls.append(kind)
        if len(calls) == 1:
            raise ClipLoadError("offline")
        return TextModel(random_clip)

    models = TextModels(flaky, retry_after_s=3600)
    for _ in range(2):
        with pytest.raises(ValueError, match="offline"):
            models.get("demo")
    assert calls == ["demo"]
    models.retry_after_s = 0.0
    assert models.get("demo").clip is random_clip and models.get("demo") is models.get("demo")
    assert calls == ["demo", "demo"]
