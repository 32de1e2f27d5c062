"""The page's command line (``python app.py --help``): which model, where, and how to serve it."""

from __future__ import annotations

import argparse
import os


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` (default: the process's arguments) as app.main reads them."""
    parser = argparse.ArgumentParser(description="Launch the Segment Anything page.")
    parser.add_argument(
        "--model",
        default=None,
        help="vit_b, vit_l, vit_h, sam2.1_tiny, sam2.1_small, sam2.1_base_plus, sam2.1_large "
        "(Meta's weights from the Hugging Face Hub; default: sam2.1_tiny on a CPU, vit_b on a "
        "GPU), demo, or a checkpoint path (.safetensors, .pth); falls back to demo, then to an "
        "untrained test model, with a notice saying so",
    )
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16", "int8"],
        help="the image encoder's precision",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    parser.add_argument("--share", action="store_true", help="create a public share link")
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the segment tools to MCP clients (at /gradio_api/mcp)",
    )
    parser.add_argument(
        "--no-instant",
        dest="instant_masks",
        action="store_false",
        help="start with instant masks off: every click goes to the server (the page's checkbox "
        "switches them on)",
    )
    return parser.parse_args(argv)
