"""CLIP through open_clip: loading (built-in names, ``hf-hub:`` names, local checkpoints, a tiny
registered demo config) and a :class:`ClipModel` wrapper with normalised text, image and dense
MaskCLIP-style patch features.

Dense features follow MaskCLIP (Zhou et al., 2022): the last transformer block's q-k attention is
skipped; each patch token's value vector goes through the attention's output projection, then
``ln_post`` and ``proj`` into the joint text-image space, so every patch can be compared to text.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_MODEL = "ViT-B-16"
DEFAULT_PRETRAINED = "datacomp_xl_s13b_b90k"

#: A tiny ViT + tiny text tower for the demo bundle and the tests (random until trained).
DEMO_MODEL_NAME = "sam-demo-tiny-clip"
DEMO_MODEL_CONFIG: dict = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 96,
        "layers": 4,
        "width": 128,
        "head_width": 32,
        "patch_size": 8,
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}

#: The bundled trained weights of :data:`DEMO_MODEL_NAME` (``python -m prompts.train_clip``);
#: ``load_clip("demo")`` loads them.
DEMO_CLIP_CHECKPOINT = (
    Path(__file__).resolve().parent.parent / "assets" / "demo" / "clip_demo.safetensors"
)

#: Text longer than this many characters is cut before tokenising (CLIP sees at most its
#: context length of tokens anyway; this bounds the BPE cost of pathological input).
MAX_TEXT_CHARS = 1000

_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".safetensors")
_register_lock = threading.Lock()
_registered: set[str] = set()


class ClipLoadError(RuntimeError):
    """CLIP could not be built or its weights could not be loaded."""


def register_model_config(name: str, config: dict) -> None:
    """Make ``name`` a model name that open_clip (create_model, get_tokenizer) knows.

    Uses open_clip's public ``add_model_config``, which reads JSON files: the config is written
    once per process to a private temporary folder.
    """
    import open_clip

    if not all(k in config for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError("a CLIP config needs 'embed_dim', 'vision_cfg' and 'text_cfg'")
    with _register_lock:
        if name in _registered and open_clip.get_model_config(name) == config:
            return
        folder = Path(tempfile.mkdtemp(prefix="sam-clip-config-"))
        path = folder / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
        _registered.add(name)


def register_demo_config() -> None:
    """Register :data:`DEMO_MODEL_NAME` with open_clip (idempotent)."""
    register_model_config(DEMO_MODEL_NAME, DEMO_MODEL_CONFIG)


def _looks_like_path(value: str) -> bool:
    return (
        os.sep in value
        or "/" in value
        or value.startswith(".")
        or value.lower().endswith(_CHECKPOINT_SUFFIXES)
    )


def _offline_hint(model_name: str) -> str:
    return (
        f"If this machine is offline, download the weights elsewhere (for example "
        f"open_clip_pytorch_model.bin from the model's Hugging Face repository) and pass the file: "
        f"load_clip({model_name!r}, pretrained='/path/to/open_clip_pytorch_model.bin'), or a "
        f"folder holding open_clip_config.json and the weights: "
        f"load_clip('local-dir:/path/to/folder')."
    )


def load_clip(
    model_name: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    cache_dir: str | None = None,
) -> ClipModel:
    """Build a CLIP model with open_clip and wrap it.

    ``model_name``: a built-in open_clip name ("ViT-B-16"), :data:`DEMO_MODEL_NAME`, "demo" (that
    tiny model with the bundled weights :data:`DEMO_CLIP_CHECKPOINT`; ``pretrained`` is ignored),
    "hf-hub:org/repo" or "local-dir:/folder" (those two carry their own weights; ``pretrained``
    is ignored). ``pretrained``: an open_clip tag ("datacomp_xl_s13b_b90k"), a local checkpoint
    file, or None for random weights.
    """
    import open_clip

    register_demo_config()
    if not isinstance(model_name, str) or not model_name.strip():
        raise ClipLoadError(f"model_name must be a non-empty string, got {model_name!r}")
    if model_name == "demo":
        if not DEMO_CLIP_CHECKPOINT.is_file():
            raise ClipLoadError(
                f"the bundled demo CLIP is missing: expected {DEMO_CLIP_CHECKPOINT} "
                "(train it with: python -m prompts.train_clip)"
            )
        model_name, pretrained = DEMO_MODEL_NAME, str(DEMO_CLIP_CHECKPOINT)
    schema = None
    if model_name.startswith(("hf-hub:", "local-dir:")):
        schema = model_name.split(":", 1)[0]
        pretrained = None
    elif open_clip.get_model_config(model_name.replace("/", "-")) is None:
        known = ", ".join(open_clip.list_models()[:8])
        raise ClipLoadError(
            f"unknown CLIP model {model_name!r}: use an open_clip name (e.g. {known}, ...), "
            f"{DEMO_MODEL_NAME!r}, 'hf-hub:org/repo' or 'local-dir:/path/to/folder'"
        )
    if pretrained is not None:
        pretrained = str(pretrained)
        if not pretrained:
            pretrained = None
        elif not os.path.isfile(pretrained) and _looks_like_path(pretrained):
            raise ClipLoadError(
                f"CLIP checkpoint for {model_name!r} not found: {pretrained!r} is not a file"
            )
        elif not os.path.isfile(pretrained) and not open_clip.get_pretrained_cfg(
            model_name.replace("/", "-"), pretrained
        ):
            tags = open_clip.list_pretrained_tags_by_model(model_name.replace("/", "-"))
            raise ClipLoadError(
                f"{pretrained!r} is neither a pretrained tag of CLIP model {model_name!r} "
                f"(known tags: {tags or 'none'}) nor a checkpoint file"
            )
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=pretrained,
            device=device,
            precision=precision,
            cache_dir=cache_dir,
        )
        tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir)
    except ClipLoadError:
        raise
    except Exception as error:
        source = model_name if schema else f"{model_name!r} with pretrained={pretrained!r}"
        raise ClipLoadError(
            f"could not load CLIP model {source}: {error}. {_offline_hint(model_name)}"
        ) from error
    return ClipModel(model, tokenizer, name=model_name, pretrained=pretrained)


def create_random_clip(model_name: str = DEMO_MODEL_NAME, seed: int = 0) -> ClipModel:
    """A CLIP with random weights (tests, benchmarks); nothing is downloaded."""
    import open_clip

    register_demo_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
    return ClipModel(model, open_clip.get_tokenizer(model_name), name=model_name, pretrained=None)


class ClipModel:
    """An open_clip model in eval mode with numpy-image in, normalised-feature out methods.

    All outputs are float32 CPU tensors; images are uint8 (H, W, 3) arrays (or (N, H, W, 3)
    batches / lists) and are resized (without cropping) to the model's square input size so that
    patch features cover the whole image.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, name: str = "", pretrained=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.pretrained = pretrained
        visual = model.visual
        size = getattr(visual, "image_size", None) or visual.preprocess_cfg["size"]
        self.image_size: tuple[int, int] = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))
        std = cfg.get("std", (0.26862954, 0.26130258, 0.27577711))
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.context_length = int(
            getattr(tokenizer, "context_length", None) or getattr(model, "context_length", 77)
        )

    # -- properties -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.visual.parameters()).dtype

    @property
    def logit_scale(self) -> float:
        """The learned temperature, already exponentiated (100 for OpenAI's CLIP)."""
        return float(self.model.logit_scale.detach().exp().reshape(-1)[0])

    @property
    def embed_dim(self) -> int:
        dim = getattr(self.model.visual, "output_dim", None)
        return int(dim) if dim is not None else int(self.encode_text(["a"]).shape[1])

    @property
    def grid_size(self) -> tuple[int, int]:
        """(h, w) of :meth:`dense_patch_features`."""
        grid = getattr(self.model.visual, "grid_size", None)
        if grid is None:
            raise NotImplementedError(f"{self.name}: dense features need an open_clip ViT")
        return int(grid[0]), int(grid[1])

    # -- text -----------------------------------------------------------------------------------

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """Token ids (N, context_length); over-long text is truncated, never an error."""
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t)[:MAX_TEXT_CHARS] for t in texts]
        return self.tokenizer(texts)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """(N, D) unit-norm text embeddings."""
        tokens = self.tokenize(texts).to(self.device)
        features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).cpu()

    # -- images ---------------------------------------------------------------------------------

    def preprocess(self, images) -> torch.Tensor:
        """uint8 (H, W, 3), (N, H, W, 3) or a list of (H, W, 3) -> normalised (N, 3, S, S)."""
        if isinstance(images, (list, tuple)):
            return torch.cat([self.preprocess(image) for image in images], dim=0)
        if not isinstance(images, np.ndarray):
            raise ValueError(f"image must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (0..255), got dtype {images.dtype}")
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[3] != 3 or 0 in images.shape:
            raise ValueError(f"image must have shape (H, W, 3) or (N, H, W, 3), got {images.shape}")
        # astype copies: images may be read-only (Gradio's), which from_numpy warns about
        x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2) / 255.0
        if tuple(x.shape[2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bicubic", antialias=True)
            x = x.clamp(0.0, 1.0)
        x = (x - self._mean) / self._std
        return x.to(device=self.device, dtype=self.dtype)

    @torch.no_grad()
    def encode_image(self, images) -> torch.Tensor:
        """(N, D) unit-norm global image embeddings."""
        features = self.model.encode_image(self.preprocess(images))
        return F.normalize(features.float(), dim=-1).cpu()

    @torch.no_grad()
    def encode_image_dense(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass -> (global (D,), dense (h, w, D)), both unit-norm.

        The global embedding is the model's own (the full last block); the dense map is the
        MaskCLIP value path of that same block, so both come from one run of the encoder.
        """
        pixels = self.preprocess(image)
        if pixels.shape[0] != 1:
            raise ValueError("encode_image_dense takes one image")
        pooled, dense = self._forward_dense(pixels)
        h, w = self.grid_size
        dense = F.normalize(dense.float(), dim=-1).reshape(h, w, -1)
        return F.normalize(pooled.float(), dim=-1)[0].cpu(), dense.cpu()

    def dense_patch_features(self, image: np.ndarray) -> torch.Tensor:
        """(h, w, D) unit-norm MaskCLIP-style patch features of one image."""
        return self.encode_image_dense(image)[1]

    def _forward_dense(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled (N, D), dense (N, h * w, D)), unnormalised; differentiable (used in training)."""
        return forward_dense(self.model, pixels, self.name)


def forward_dense(
    model: torch.nn.Module, pixels: torch.Tensor, name: str = "CLIP"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of an open_clip ViT -> (pooled (N, D), MaskCLIP dense (N, h * w, D)), both
    unnormalised and differentiable; see the module docstring."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = model.visual
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None:
        raise NotImplementedError(
            f"{name}: dense patch features need an open_clip VisionTransformer "
            "without attentional pooling"
        )
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or not isinstance(
        last.attn, torch.nn.MultiheadAttention
    ):
        raise NotImplementedError(f"{name}: dense patch features need standard attention blocks")
    batch_first = visual.transformer.batch_first
    x = visual._embeds(pixels)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    # Value path of the last block: no q-k attention, no residual, no MLP.
    attn = last.attn
    width = attn.embed_dim
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    values = F.linear(last.ln_1(x), attn.in_proj_weight[2 * width :], bias)
    values = last.ls_1(attn.out_proj(values))
    x = last(x)
    if not batch_first:
        x, values = x.transpose(0, 1), values.transpose(0, 1)
    pooled, _ = visual._pool(x)
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    dense = visual.ln_post(values[:, 1:])
    if visual.proj is not None:
        dense = dense @ visual.proj
    return pooled, dense
