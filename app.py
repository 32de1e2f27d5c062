"""The Segment Anything page. For now a placeholder: the interactive app is being built.

python app.py [--host 127.0.0.1] [--port 7860] [--share]
"""

from __future__ import annotations

import argparse

import gradio as gr

PLACEHOLDER = """
# Segment Anything

The interactive page (points, boxes, brush masks, text, segment everything, annotation export)
is under construction. The model, Meta's checkpoints and the predictor already work from Python:

```python
from sam import load_sam, SamPredictor
predictor = SamPredictor(load_sam("vit_b"))   # or a local .safetensors / .pth path
predictor.set_image(image)                    # (H, W, 3) uint8
candidates = predictor.predict_ranked(point_coords=[[x, y]], point_labels=[1])
```
"""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="Segment Anything") as demo:
        gr.Markdown(PLACEHOLDER)
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Launch the Segment Anything page.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="create a public share link")
    args = parser.parse_args()
    build_demo().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
