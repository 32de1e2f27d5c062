"""Loading SAM 2: Meta's and transformers' layouts through load_sam, from Hub caches and folders
the tests write (the real huggingface_hub code reads them), and the configs that go with them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sam import CheckpointError, SamPredictor, build_sam, load_sam, save_checkpoint
from sam.fast import is_optimized
from sam.fast.int8 import is_quantized
from sam.modeling.sam2 import SAM2_CONFIGS, Sam2
from sam.weights import precision
from sam.weights.random_weights import randomize_weights
from sam.weights.sam2_keys import (
    config_from_transformers,
    sam2_config_for,
    sam2_to_ours,
    to_transformers_config,
)
from tests.reference_sam2 import build_meta_sam2, build_transformers_sam2, ours_from
from tests.test_checkpoint import _write_hub_cache, offline  # noqa: F401 (a fixture)

CONFIG = SAM2_CONFIGS["sam2_test"]
# a few of the video model's weights, which the image model drops
VIDEO_WEIGHTS = {
    "memory_attention.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4),
    "memory_encoder.out_proj.weight": torch.zeros(4, 4, 1, 1),
    "no_object_pointer": torch.zeros(1, 4),
    "object_pointer_proj.proj_in.weight": torch.zeros(4, 4),
}


@pytest.fixture(scope="module")
def hf_model():
    return build_transformers_sam2(CONFIG, seed=11)


@pytest.fixture(scope="module")
def meta_model():
    return build_meta_sam2(CONFIG, seed=12)


def _same_weights(model: Sam2, reference) -> bool:
    ours, theirs = model.state_dict(), sam2_to_ours(reference.state_dict())
    return set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def _transformers_files(hf_model, tmp_path, config=CONFIG) -> dict:
    """model.safetensors as in the facebook/sam2.1-hiera-* repos (the video model's layout) and
    the config.json transformers writes."""
    from transformers import Sam2VideoConfig

    weights = tmp_path / "model.safetensors"
    save_file({**hf_model.state_dict(), **VIDEO_WEIGHTS}, weights)
    parts = to_transformers_config(config).to_dict()
    video = Sam2VideoConfig(**{k: parts[k] for k in parts if k.endswith("_config")})
    return {"model.safetensors": weights, "config.json": json.dumps(video.to_dict()).encode()}


def test_hub_repo_in_transformers_layout(hf_model, tmp_path, offline):  # noqa: F811
    _write_hub_cache(tmp_path / "hub", "someone/tiny-sam2", _transformers_files(hf_model, tmp_path))
    model = load_sam("someone/tiny-sam2", precision="fp32", cache_dir=tmp_path / "hub")
    assert isinstance(model, Sam2) and model.config == CONFIG  # from config.json
    assert _same_weights(model, hf_model)
    assert is_optimized(model)


def test_meta_pt_file_gets_its_config_from_the_shapes(meta_model, tmp_path):
    path = tmp_path / "sam2.1_hiera_test.pt"
    torch.save({"model": meta_model.state_dict()}, path)
    model = load_sam(path, precision="fp32", fast=False)
    assert isinstance(model, Sam2) and model.config == CONFIG
    assert _same_weights(model, meta_model)


def test_local_folder_in_transformers_layout(hf_model, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    for name, content in _transformers_files(hf_model, tmp_path).items():
        target = folder / name
        content.rename(target) if hasattr(content, "rename") else target.write_bytes(content)
    assert _same_weights(load_sam(folder, precision="fp32"), hf_model)


def test_both_layouts_give_the_same_model(meta_model):
    converted = sam2_to_ours(meta_model.state_dict())
    assert not any(k.startswith(("memory_", "sam_", "obj_ptr")) for k in converted)
    assert "no_mem_embed" in converted and "image_encoder.neck.convs.0.weight" in converted
    assert sam2_to_ours(converted) == converted  # ours passes through


def test_sam2_1_tiny_name_reads_metas_pt_from_the_hub_cache(tmp_path, offline):  # noqa: F811
    meta = build_meta_sam2(SAM2_CONFIGS["sam2.1_tiny"], seed=13)
    weights = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": meta.state_dict()}, weights)
    _write_hub_cache(tmp_path / "hub", "facebook/sam2.1-hiera-tiny", {weights.name: weights})
    model = load_sam("sam2.1_tiny", precision="fp32", cache_dir=tmp_path / "hub")
    assert model.config.name == "sam2.1_tiny"
    assert _same_weights(model, meta)


def test_unreachable_hub_names_the_sam2_repo(tmp_path, offline):  # noqa: F811
    with pytest.raises(CheckpointError, match=r"facebook/sam2\.1-hiera-small"):
        load_sam("sam2.1_small", cache_dir=tmp_path / "empty-cache")


def test_unknown_size_without_config_is_refused(hf_model):
    weights = sam2_to_ours(hf_model.state_dict())
    odd = {k: v for k, v in weights.items() if not k.startswith("image_encoder.trunk.blocks.5.")}
    with pytest.raises(ValueError, match=r"unknown size .* config\.json"):
        sam2_config_for(odd)


def test_differing_fourier_matrices_are_refused(hf_model, tmp_path):
    state_dict = dict(hf_model.state_dict())
    state_dict["shared_image_embedding.positional_embedding"] = torch.zeros_like(
        state_dict["shared_image_embedding.positional_embedding"]
    )
    save_file(state_dict, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="shared_image_embedding"):
        load_sam(tmp_path / "model.safetensors")


@pytest.mark.parametrize("name", sorted(SAM2_CONFIGS))
def test_transformers_config_round_trip(name):
    config = SAM2_CONFIGS[name]
    assert config_from_transformers(to_transformers_config(config).to_dict()) == config


def test_transformers_config_it_cannot_build_is_refused():
    values = to_transformers_config(CONFIG).to_dict()
    values["vision_config"]["backbone_config"]["patch_stride"] = [2, 2]
    with pytest.raises(ValueError, match="patch_stride"):
        config_from_transformers(values)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_encoder_serves(hf_model, tmp_path, precision):
    save_file(hf_model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(to_transformers_config(CONFIG).to_dict()))
    exact = load_sam(tmp_path, device="cpu", precision="fp32")
    model = load_sam(tmp_path, device="cpu", precision=precision)
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    outputs = []
    for m in (exact, model):
        predictor = SamPredictor(m)
        predictor.set_image(image)
        outputs.append(predictor.predict(point_coords=[[30, 20]], point_labels=[1])[1])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=0.05)  # IoU scores stay close


def test_our_checkpoint_round_trip_keeps_the_config(hf_model, tmp_path):
    model = ours_from(hf_model, CONFIG)
    path = save_checkpoint(model, tmp_path / "ours.safetensors")
    loaded = load_sam(path, precision="fp32")
    assert isinstance(loaded, Sam2) and loaded.config == CONFIG
    assert _same_weights(loaded, hf_model)


def test_auto_precision_follows_the_encoder(hf_model, tmp_path, monkeypatch):
    """On a CPU with both int8 dot products and native bf16, "auto" quantizes a ViT encoder
    but runs Hiera in bf16."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx512_bf16"}))
    save_file(hf_model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(to_transformers_config(CONFIG).to_dict()))
    sam2 = load_sam(tmp_path, device="cpu", precision="auto")
    assert not is_quantized(sam2)
    assert next(sam2.image_encoder.parameters()).dtype == torch.bfloat16
    vit = save_checkpoint(randomize_weights(build_sam("vit_test")), tmp_path / "vit.safetensors")
    assert is_quantized(load_sam(vit, device="cpu", precision="auto"))
