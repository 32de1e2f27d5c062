"""The image encoder in int8 on the CPU: dynamic quantization of its linear layers.

The encoder's linear layers (qkv, proj and the MLP) do nearly all of its arithmetic. Dynamic
quantization stores their weights in int8, one scale per output channel, and quantizes each
input on the fly, so that those products run on the CPU's int8 instructions (fbgemm); attention's
own products, the convolutions and the norms stay float32, as do the prompt encoder and decoder.

torch.ao's eager-mode API is deprecated in favour of torchao, whose int8 linear layers ran
slower than fp32 on the CPU without ``torch.compile``; so this uses torch.ao while torch has it.
"""

from __future__ import annotations

import warnings

from torch import nn

from sam.modeling.sam import Sam


def quantize_encoder(model: Sam) -> Sam:
    """Swap, in place, the image encoder's ``nn.Linear`` layers for int8 dynamically quantized
    ones; returns ``model``. The model must be on the CPU."""
    if model.device.type != "cpu":
        raise ValueError(f"int8 runs on the CPU only; the model is on {model.device}")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            quantize_dynamic(
                model.image_encoder, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True
            )
    except (ImportError, AttributeError, RuntimeError) as error:
        raise ValueError(f"this torch build cannot run int8 linear layers: {error}") from error
    return model


def is_quantized(model: Sam) -> bool:
    """Whether the image encoder's linear layers are int8 (:func:`quantize_encoder`)."""
    return not any(type(m) is nn.Linear for m in model.image_encoder.modules())
