"""CLIP loading and encoding, offline, with a tiny random model written by the test itself."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from prompts.clip_model import (
    DEMO_MODEL_NAME,
    ClipLoadError,
    ClipModel,
    create_random_clip,
    load_clip,
    register_demo_config,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    register_demo_config()
    torch.manual_seed(0)
    model = open_clip.create_model(DEMO_MODEL_NAME, pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


@pytest.fixture(scope="module")
def clip(checkpoint):
    return load_clip(DEMO_MODEL_NAME, pretrained=str(checkpoint[0]))


def _image(seed=0, size=(40, 56)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_loads_local_checkpoint_offline(clip, checkpoint):
    assert isinstance(clip, ClipModel)
    loaded = clip.model.state_dict()
    for key, value in checkpoint[1].items():
        torch.testing.assert_close(loaded[key], value)
    assert not clip.model.training
    assert clip.logit_scale == pytest.approx(1 / 0.07, rel=1e-4)
    assert clip.context_length == 32
    assert clip.image_size == (96, 96)
    assert clip.grid_size == (12, 12)
    assert clip.embed_dim == 64


def test_demo_config_is_registered():
    register_demo_config()
    register_demo_config()  # idempotent
    assert DEMO_MODEL_NAME in open_clip.list_models()
    assert open_clip.get_tokenizer(DEMO_MODEL_NAME).context_length == 32


def test_encode_text_shapes_and_norm(clip):
    texts = ["red circle", "a photo of a cat", "猫", "🐱 emoji", "x " * 500, ""]
    features = clip.encode_text(texts)
    assert features.shape == (len(texts), 64)
    assert features.dtype == torch.float32
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(len(texts)))
    assert clip.tokenize(["word " * 1000]).shape == (1, 32)


def test_encode_image_single_and_batch(clip):
    single = clip.encode_image(_image())
    assert single.shape == (1, 64)
    batch = clip.encode_image(np.stack([_image(0), _image(1)]))
    assert batch.shape == (2, 64)
    torch.testing.assert_close(batch.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(batch[0], single[0], atol=1e-5, rtol=1e-5)
    listed = clip.encode_image([_image(0), _image(2, (96, 96))])
    assert listed.shape == (2, 64)


def test_dense_features_and_one_pass_global(clip):
    image = _image(3)
    global_feature, dense = clip.encode_image_dense(image)
    assert dense.shape == (12, 12, 64)
    torch.testing.assert_close(dense.norm(dim=-1), torch.ones(12, 12))
    # The global embedding from the dense pass is the model's own encode_image.
    torch.testing.assert_close(global_feature, clip.encode_image(image)[0], atol=1e-5, rtol=1e-4)
    assert clip.dense_patch_features(image).shape == (12, 12, 64)


def test_dense_features_follow_value_path(clip):
    """Recompute the MaskCLIP value path by hand from open_clip's modules."""
    image = _image(4)
    visual = clip.model.visual
    with torch.no_grad():
        x = visual._embeds(clip.preprocess(image))
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        q_k_v = torch.nn.functional.linear(
            last.ln_1(x), last.attn.in_proj_weight, last.attn.in_proj_bias
        )
        v = q_k_v.chunk(3, dim=-1)[2]
        expected = visual.ln_post(last.attn.out_proj(v)[:, 1:]) @ visual.proj
        expected = torch.nn.functional.normalize(expected[0], dim=-1).reshape(12, 12, -1)
    torch.testing.assert_close(clip.dense_patch_features(image), expected, atol=1e-5, rtol=1e-4)


def test_bad_images_are_value_errors(clip):
    with pytest.raises(ValueError, match="uint8"):
        clip.encode_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        clip.encode_image(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="numpy"):
        clip.encode_image("image.png")


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(ClipLoadError, match="not a file"):
        load_clip(DEMO_MODEL_NAME, pretrained=str(tmp_path / "missing.pt"))


def test_unknown_model_and_tag(tmp_path):
    with pytest.raises(ClipLoadError, match="unknown CLIP model"):
        load_clip("no-such-model", pretrained=None)
    with pytest.raises(ClipLoadError, match="pretrained tag"):
        load_clip(DEMO_MODEL_NAME, pretrained="no_such_tag")


def test_offline_download_failure_explains_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(ClipLoadError) as info:
        load_clip("ViT-B-16", pretrained="datacomp_xl_s13b_b90k")
    message = str(info.value)
    assert "ViT-B-16" in message
    assert "pretrained='/path/to/" in message
    assert isinstance(info.value, RuntimeError)


def test_create_random_clip_is_seeded():
    a = create_random_clip(seed=1)
    b = create_random_clip(seed=1)
    torch.testing.assert_close(a.encode_text(["red"]), b.encode_text(["red"]))
    with pytest.raises(ClipLoadError, match="non-empty"):
        load_clip("", pretrained=None)


def test_local_dir_bundle_loads_offline(tmp_path, checkpoint):
    import json
    import shutil

    from prompts.clip_model import DEMO_MODEL_CONFIG

    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": DEMO_MODEL_CONFIG}))
    shutil.copy(checkpoint[0], tmp_path / "open_clip_pytorch_model.bin")
    clip = load_clip(f"local-dir:{tmp_path}", pretrained="ignored for local-dir")
    torch.testing.assert_close(clip.model.state_dict()["logit_scale"], checkpoint[1]["logit_scale"])
    assert clip.encode_text(["red circle"]).shape == (1, 64)
    assert clip.dense_patch_features(_image()).shape == (12, 12, 64)


def test_hf_hub_failure_is_wrapped(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("cannot reach huggingface.co")

    monkeypatch.setattr(open_clip.factory, "download_pretrained_from_hf", offline)
    with pytest.raises(ClipLoadError, match="hf-hub:someone/some-clip") as info:
        load_clip("hf-hub:someone/some-clip")
    assert "local-dir:" in str(info.value)


@pytest.mark.slow
def test_default_architecture_dense_path_with_random_weights():
    """ViT-B-16 (the default) built without weights: same shapes and one-pass global feature."""
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    clip = ClipModel(model, open_clip.get_tokenizer("ViT-B-16"), name="ViT-B-16")
    image = _image(size=(120, 160))
    global_feature, dense = clip.encode_image_dense(image)
    assert dense.shape == (14, 14, 512) and clip.grid_size == (14, 14)
    torch.testing.assert_close(global_feature, clip.encode_image(image)[0], atol=1e-4, rtol=1e-3)
    assert clip.encode_text(["red circle"]).shape == (1, 512) and clip.context_length == 77
