"""Loading and saving SAM weights: Meta's checkpoints from the Hugging Face Hub, local files,
other Hub repos, and our own safetensors files (which carry their config in the metadata)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from pathlib import Path

import huggingface_hub.constants
import torch
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors.torch import load_file, save_file

from sam.fast import optimize
from sam.modeling.config import MODEL_CONFIGS, SamConfig
from sam.modeling.sam import Sam, build_sam
from sam.modeling.sam2 import SAM2_CONFIGS, Sam2, Sam2Config, build_sam2
from sam.weights.precision import (
    apply_precision,
    check_precision,
    resolve_device,
    resolve_precision,
)
from sam.weights.sam2_keys import is_sam2_state_dict, sam2_config_for, sam2_to_ours
from sam.weights.transformers_keys import hf_to_original, is_hf_layout

HUB_REPOS = {
    "vit_b": "facebook/sam-vit-base",
    "vit_l": "facebook/sam-vit-large",
    "vit_h": "facebook/sam-vit-huge",
    # SAM 2.1 (Apache-2.0): transformers' model.safetensors, or Meta's sam2.1_hiera_*.pt
    "sam2.1_tiny": "facebook/sam2.1-hiera-tiny",
    "sam2.1_small": "facebook/sam2.1-hiera-small",
    "sam2.1_base_plus": "facebook/sam2.1-hiera-base-plus",
    "sam2.1_large": "facebook/sam2.1-hiera-large",
}
KNOWN_CONFIGS: dict[str, SamConfig | Sam2Config] = {**MODEL_CONFIGS, **SAM2_CONFIGS}
DEMO_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "demo" / "sam_demo.safetensors"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
# Files looked for, in order, in a Hub repo or a folder.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CONFIG_METADATA_KEY = "sam_config"
SAM2_CONFIG_METADATA_KEY = "sam2_config"

StateDict = dict[str, torch.Tensor]


class CheckpointError(ValueError):
    """A checkpoint could not be found, downloaded or read; the message says what to do."""


def suggested_model(device: str | torch.device | None = None) -> str:
    """The model a person gets without naming one: SAM 2.1 tiny where ``device`` (see
    :func:`resolve_device`) is a CPU, the fastest there to the first mask after an upload
    (docs/benchmarks.md); Meta's vit_b on a GPU."""
    return "vit_b" if resolve_device(device).type == "cuda" else "sam2.1_tiny"


def load_sam(
    name_or_path: str | os.PathLike = "vit_b",
    device: str | torch.device | None = None,
    precision: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    fast: bool = True,
) -> Sam | Sam2:
    """Load SAM or SAM 2 weights into our model, ready for inference.

    name_or_path: "vit_b" | "vit_l" | "vit_h" (Meta's weights from the Hub), "sam2.1_tiny" |
    "sam2.1_small" | "sam2.1_base_plus" | "sam2.1_large" (SAM 2.1 from the Hub, a
    :class:`sam.modeling.sam2.Sam2`), "demo" (the bundled demo model), a local
    ``.safetensors``/``.pth``/``.pt`` file or folder in Meta's or transformers' layout, or a Hub
    repo id holding one. ``precision`` applies to the image encoder (see
    :func:`sam.weights.precision.resolve_precision`); the prompt encoder and decoder stay
    float32; "int8" quantizes the encoder's linear layers (CPU only, :mod:`sam.fast.int8`).
    ``fast`` swaps in the faster equal modules of :func:`sam.fast.optimize`; without it
    the model is the plain one, Meta's code as written.
    """
    target_device = resolve_device(device)
    check_precision(precision, target_device)  # before any download
    path, known_config = resolve_checkpoint(name_or_path, cache_dir=cache_dir)
    state_dict, config = read_checkpoint(path)
    if is_sam2_state_dict(state_dict):
        try:
            config = (
                config or known_config or sam2_config_for(state_dict, path.parent / "config.json")
            )
        except (ValueError, KeyError) as error:
            raise CheckpointError(f"checkpoint {path}: {error}") from error
        model = build_sam2(config)
    else:
        config = config or known_config or infer_config(state_dict, _config_hints(path))
        model = build_sam(config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {error}") from error
    if fast:
        optimize(model)
    encoder = "hiera" if isinstance(model, Sam2) else "vit"
    encoder_dtype = resolve_precision(precision, target_device, encoder)
    return apply_precision(model.to(target_device).eval(), encoder_dtype)


def resolve_checkpoint(
    name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None
) -> tuple[Path, SamConfig | Sam2Config | None]:
    """A local checkpoint file for a model name, path or Hub repo id (downloading if needed)."""
    name = os.fspath(name_or_path)
    if name in HUB_REPOS:
        return _download_hub_weights(HUB_REPOS[name], cache_dir), KNOWN_CONFIGS[name]
    if name == "demo":
        if not DEMO_CHECKPOINT.exists():
            raise CheckpointError(f"the bundled demo model is missing: expected {DEMO_CHECKPOINT}")
        return DEMO_CHECKPOINT, None
    path = Path(name).expanduser()
    if name.strip() and path.is_file():
        return path, None
    if name.strip() and path.is_dir():
        return _find_weights(path), None
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        return _download_hub_weights(name, cache_dir), None
    known = ", ".join([*HUB_REPOS, "demo"])
    raise CheckpointError(
        f"unknown model {name!r}: use one of {known}, a path to a .safetensors or .pth file, "
        "or a Hugging Face repo id such as facebook/sam-vit-base"
    )


def _find_weights(folder: Path) -> Path:
    for filename in HUB_WEIGHT_FILES:
        if (folder / filename).is_file():
            return folder / filename
    candidates = sorted(p for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if not candidates:
        raise CheckpointError(f"no checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) in {folder}")
    return candidates[0]


def _download_hub_weights(repo_id: str, cache_dir: str | os.PathLike | None) -> Path:
    """Fetch a repo's weights through huggingface_hub (its cache, resume, HF_TOKEN and
    HF_HUB_OFFLINE apply) and return the local file."""
    failures = []
    for filename in HUB_WEIGHT_FILES:
        try:
            path = Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
        except Exception as error:  # absent here, offline, gated, no network...
            failures.append(error)
            if _hub_unreachable(error):
                break  # each further file would only wait through the same retries
            continue
        # transformers' config.json names what weights alone cannot tell (decoder heads)
        with contextlib.suppress(Exception):
            hf_hub_download(repo_id, "config.json", cache_dir=cache_dir)
        return path
    else:
        try:  # other repos may hold, say, Meta's sam_vit_b_01ec64.pth
            folder = snapshot_download(
                repo_id, cache_dir=cache_dir, allow_patterns=[f"*{s}" for s in CHECKPOINT_SUFFIXES]
            )
            return _find_weights(Path(folder))
        except Exception as error:  # every Hub failure gets the same advice
            failures.append(error)
    reason = next(
        (
            e
            for e in failures
            if not isinstance(e, EntryNotFoundError) or isinstance(e, LocalEntryNotFoundError)
        ),
        failures[-1],
    )
    raise CheckpointError(
        f"could not get the weights of {repo_id} from the Hugging Face Hub "
        f"({type(reason).__name__}: {reason}). If this machine is offline, download "
        f"model.safetensors from https://huggingface.co/{repo_id} elsewhere and pass its path "
        "(load_sam('/path/to/model.safetensors') or --model /path/to/model.safetensors), or "
        "use the bundled demo model ('demo')."
    ) from reason


def _hub_unreachable(error: Exception) -> bool:
    """The Hub could not be reached and the file is not cached (as opposed to: the repo has no
    such file, or HF_HUB_OFFLINE asked for the cache alone, where other files are worth a try)."""
    return (
        isinstance(error, LocalEntryNotFoundError) and not huggingface_hub.constants.HF_HUB_OFFLINE
    )


def read_checkpoint(path: str | os.PathLike) -> tuple[StateDict, SamConfig | Sam2Config | None]:
    """A state dict in Meta's layout (ours for SAM 2: :mod:`sam.weights.sam2_keys`), plus the
    config stored with it if any.

    Reads safetensors, or torch pickles with ``weights_only=True``; accepts either layout and
    common wrappers ({"model": ...}, {"state_dict": ...}).
    """
    path = Path(path)
    config = None
    try:
        if path.suffix == ".safetensors":
            state_dict = load_file(path)
            config = _config_from_metadata(path)
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling and parsing raise many kinds
        raise CheckpointError(f"could not read checkpoint {path}: {error}") from error
    for wrapper in ("model", "state_dict"):
        if isinstance(state_dict, dict) and isinstance(state_dict.get(wrapper), dict):
            state_dict = state_dict[wrapper]
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    try:
        if is_sam2_state_dict(state_dict):
            state_dict = sam2_to_ours(state_dict)
        elif is_hf_layout(state_dict):
            state_dict = hf_to_original(state_dict)
    except ValueError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error
    return state_dict, config


def _config_from_metadata(path: Path) -> SamConfig | Sam2Config | None:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    if CONFIG_METADATA_KEY in metadata:
        return SamConfig.from_dict(json.loads(metadata[CONFIG_METADATA_KEY]))
    if SAM2_CONFIG_METADATA_KEY in metadata:
        return Sam2Config.from_dict(json.loads(metadata[SAM2_CONFIG_METADATA_KEY]))
    return None


def save_checkpoint(
    model: Sam | Sam2, path: str | os.PathLike, config: SamConfig | Sam2Config | None = None
) -> Path:
    """Write the weights (Meta's layout, ours for SAM 2; float32) and the config to one
    safetensors file."""
    config = config or model.config
    if config is None:
        raise ValueError("save_checkpoint needs a config (model.config is None)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    key = SAM2_CONFIG_METADATA_KEY if isinstance(config, Sam2Config) else CONFIG_METADATA_KEY
    save_file(state_dict, path, metadata={key: config.to_json()})
    return path


def _config_hints(path: Path) -> dict:
    """Hyper-parameters that weights alone cannot tell (decoder heads), from a config.json
    beside the checkpoint in our format or transformers'."""
    config_file = path.parent / "config.json"
    if not config_file.is_file():
        return {}
    try:
        values = json.loads(config_file.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if "mask_decoder_config" in values:
        heads = values["mask_decoder_config"].get("num_attention_heads")
        return {"decoder_num_heads": heads} if heads else {}
    return {k: v for k, v in values.items() if k == "decoder_num_heads"}


def infer_config(state_dict: StateDict, hints: dict | None = None) -> SamConfig:
    """Rebuild the config from the weights' shapes (Meta's layout)."""
    hints = hints or {}
    try:
        patch = state_dict["image_encoder.patch_embed.proj.weight"]
        embed_dim, patch_size = patch.shape[0], patch.shape[-1]
        grid = state_dict["image_encoder.pos_embed"].shape[1]
        depth = 1 + max(
            int(k.split(".")[2]) for k in state_dict if k.startswith("image_encoder.blocks.")
        )
        sides = [
            (state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"].shape[0] + 1) // 2
            for i in range(depth)
        ]
        head_dim = state_dict["image_encoder.blocks.0.attn.rel_pos_h"].shape[1]
        windows = {side for side in sides if side != grid}
        mlp_dim = state_dict["image_encoder.blocks.0.mlp.lin1.weight"].shape[0]
        decoder_layers = {
            int(k.split(".")[3])
            for k in state_dict
            if k.startswith("mask_decoder.transformer.layers.")
        }
        iou_layers = {
            int(k.split(".")[3])
            for k in state_dict
            if k.startswith("mask_decoder.iou_prediction_head.layers.")
        }
        inferred = SamConfig(
            encoder_embed_dim=embed_dim,
            encoder_depth=depth,
            encoder_num_heads=embed_dim // head_dim,
            encoder_global_attn_indexes=tuple(i for i, side in enumerate(sides) if side == grid),
            encoder_window_size=windows.pop() if windows else grid,
            encoder_mlp_ratio=mlp_dim / embed_dim,
            image_size=grid * patch_size,
            patch_size=patch_size,
            prompt_embed_dim=state_dict["image_encoder.neck.0.weight"].shape[0],
            mask_in_chans=state_dict["prompt_encoder.mask_downscaling.3.weight"].shape[0],
            decoder_depth=len(decoder_layers),
            decoder_num_heads=int(hints.get("decoder_num_heads", 8)),
            decoder_mlp_dim=state_dict["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[
                0
            ],
            iou_head_depth=len(iou_layers),
            iou_head_hidden_dim=state_dict[
                "mask_decoder.iou_prediction_head.layers.0.weight"
            ].shape[0],
            num_multimask_outputs=state_dict["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        )
    except (KeyError, ValueError, IndexError) as error:
        raise CheckpointError(
            f"checkpoint is not a SAM state dict: missing or odd {error}"
        ) from error
    if "decoder_num_heads" not in hints:  # the one thing shapes cannot tell: ask known configs
        for known in MODEL_CONFIGS.values():
            if dataclasses.replace(inferred, decoder_num_heads=known.decoder_num_heads) == known:
                return known
    return inferred


def _registry_builder(name: str):
    def build(checkpoint: str | os.PathLike | None = None) -> Sam:
        """Meta's ``sam_model_registry[name](checkpoint=...)``: the plain model with random
        weights, or, given a checkpoint, the loaded one on the CPU in fp32."""
        if checkpoint is None:
            return build_sam(name)
        return load_sam(checkpoint, device="cpu", precision="fp32")

    return build


# Meta's loading idiom, ``sam_model_registry["vit_b"](checkpoint="sam_vit_b_01ec64.pth")``
sam_model_registry = {name: _registry_builder(name) for name in ("vit_h", "vit_l", "vit_b")} | {
    "default": _registry_builder("vit_h")
}
