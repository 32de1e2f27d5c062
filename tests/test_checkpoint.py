"""Loading weights: the real huggingface_hub code against caches and folders the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file

from sam import CheckpointError, build_sam, load_sam, save_checkpoint
from sam.weights import precision
from sam.weights.checkpoint import infer_config, read_checkpoint, suggested_model
from sam.weights.random_weights import randomize_weights
from sam.weights.transformers_keys import original_to_hf, to_transformers_config


def _same_weights(model, state_dict) -> bool:
    ours = model.state_dict()
    return set(ours) == set(state_dict) and all(torch.equal(ours[k], state_dict[k]) for k in ours)


def _write_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes | Path]) -> None:
    """The folder layout huggingface_hub itself writes: refs/main -> snapshots/<commit>/."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, content in files.items():
        target = snapshot / name
        if isinstance(content, Path):
            content.rename(target)
        else:
            target.write_bytes(content)


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _hf_files(model, tmp_path) -> dict[str, bytes | Path]:
    weights = tmp_path / "weights.safetensors"
    save_file(original_to_hf(model.state_dict()), weights)
    config = to_transformers_config(model.config).to_dict()
    return {"model.safetensors": weights, "config.json": json.dumps(config).encode()}


def test_hub_repo_id_from_cache_in_transformers_layout(tiny_sam, tmp_path, offline):
    _write_hub_cache(tmp_path / "hub", "someone/tiny-sam", _hf_files(tiny_sam, tmp_path))
    model = load_sam("someone/tiny-sam", precision="fp32", cache_dir=tmp_path / "hub")
    assert _same_weights(model, tiny_sam.state_dict())
    assert model.config == tiny_sam.config


def test_hub_repo_with_only_pytorch_bin(tiny_sam, tmp_path, offline):
    weights = tmp_path / "w.bin"
    torch.save(original_to_hf(tiny_sam.state_dict()), weights)
    _write_hub_cache(tmp_path / "hub", "someone/bin-sam", {"pytorch_model.bin": weights})
    model = load_sam("someone/bin-sam", precision="fp32", cache_dir=tmp_path / "hub")
    assert _same_weights(model, tiny_sam.state_dict())


def test_unreachable_hub_names_the_repo_and_the_way_out(tmp_path, offline):
    with pytest.raises(CheckpointError) as error:
        load_sam("vit_b", cache_dir=tmp_path / "empty-cache")
    message = str(error.value)
    assert "facebook/sam-vit-base" in message
    assert "pass its path" in message and "demo" in message


def test_unreachable_hub_fails_after_the_first_file(tmp_path, monkeypatch):
    """No network: one file's retries, not every file's (huggingface_hub retries each)."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    import sam.weights.checkpoint as checkpoint

    asked = []

    def unreachable(repo_id, filename, **kwargs):
        asked.append(filename)
        raise LocalEntryNotFoundError("cannot reach the Hub and not in the cache")

    monkeypatch.setattr(checkpoint, "hf_hub_download", unreachable)
    monkeypatch.setattr(checkpoint, "snapshot_download", lambda *a, **k: asked.append("snapshot"))
    with pytest.raises(CheckpointError, match="facebook/sam-vit-base"):
        load_sam("vit_b", cache_dir=tmp_path / "empty-cache")
    assert asked == ["model.safetensors"]


@pytest.mark.slow
def test_vit_b_name_downloads_meta_repo_through_the_cache(tmp_path, offline):
    model = randomize_weights(build_sam("vit_b"), seed=3)
    _write_hub_cache(tmp_path / "hub", "facebook/sam-vit-base", _hf_files(model, tmp_path))
    loaded = load_sam("vit_b", precision="fp32", cache_dir=tmp_path / "hub")
    assert _same_weights(loaded, model.state_dict())
    assert loaded.config == model.config


def test_local_repo_folder(tiny_sam, tmp_path):
    folder = tmp_path / "repo"
    folder.mkdir()
    for name, content in _hf_files(tiny_sam, tmp_path).items():
        target = folder / name
        content.rename(target) if isinstance(content, Path) else target.write_bytes(content)
    assert _same_weights(load_sam(folder, precision="fp32"), tiny_sam.state_dict())


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict"])
def test_local_pth_in_meta_layout(tiny_sam, tmp_path, wrapper):
    state_dict = tiny_sam.state_dict()
    path = tmp_path / "sam.pth"
    torch.save(state_dict if wrapper is None else {wrapper: state_dict}, path)
    model = load_sam(path, precision="fp32")
    assert _same_weights(model, state_dict)
    assert model.config == tiny_sam.config  # inferred from the shapes alone


def test_save_checkpoint_round_trip_keeps_the_config(tiny_sam, tmp_path):
    path = save_checkpoint(tiny_sam, tmp_path / "ours.safetensors")
    _, config = read_checkpoint(path)
    assert config == tiny_sam.config
    assert _same_weights(load_sam(path, precision="fp32"), tiny_sam.state_dict())


def test_infer_config_of_released_sizes():
    for name in ("vit_b", "vit_l", "vit_h"):
        model = build_sam(name)
        shapes = {k: torch.empty(v.shape, device="meta") for k, v in model.state_dict().items()}
        assert infer_config(shapes) == model.config


def test_precision_applies_to_the_encoder_only(tiny_sam, tmp_path, monkeypatch):
    path = save_checkpoint(tiny_sam, tmp_path / "ours.safetensors")
    # on a CPU without bf16 instructions the request is honoured, with a warning
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    with pytest.warns(UserWarning, match="precision 'bf16' on this CPU") as warned:
        model = load_sam(path, device="cpu", precision="bf16")
    assert warned[0].filename == __file__  # points at the caller's line
    assert model.image_encoder.patch_embed.proj.weight.dtype == torch.bfloat16
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32
    assert model.prompt_encoder.no_mask_embed.weight.dtype == torch.float32


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupt_checkpoint(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="could not read checkpoint"):
        load_sam(path)


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "code": print}, path)
    with pytest.raises(CheckpointError, match="could not read checkpoint"):
        load_sam(path)


def test_checkpoint_of_something_else(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"layer.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="neither"):
        load_sam(path)


def test_checkpoint_that_does_not_fit(tiny_sam, tmp_path):
    state_dict = dict(tiny_sam.state_dict())
    state_dict.pop("mask_decoder.iou_token.weight")
    path = tmp_path / "partial.pth"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError):
        load_sam(path)


@pytest.mark.parametrize("name", ["vit_x", "not a model", ""])
def test_unknown_model_name(name):
    with pytest.raises(CheckpointError, match="unknown model"):
        load_sam(name)


def test_bad_precision_and_device():
    with pytest.raises(ValueError, match="precision"):
        load_sam("vit_test-does-not-matter", precision="int3")
    with pytest.raises(ValueError, match="device"):
        load_sam("vit_b", device="tpu:7")


def test_suggested_model_is_sam2_tiny_on_a_cpu_and_vit_b_on_a_gpu(monkeypatch):
    assert suggested_model("cpu") == "sam2.1_tiny"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert suggested_model("cuda") == "vit_b"
    assert suggested_model(None) == "vit_b"
