"""Train the small bundled demo SAM on generated scenes and evaluate it on held-out ones.

    python -m sam.train.demo --minutes 10

writes ``assets/demo/sam_demo.safetensors`` (loadable with ``load_sam("demo")``) and the
held-out evaluation (``results.md``, ``scenes.json``) next to it.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

from ..checkpoint import DEMO_CHECKPOINT, save_checkpoint
from ..config import SamConfig
from ..evaluate import evaluate, write_report
from ..model import build_sam
from ..predictor import SamPredictor
from .data import SceneDataset
from .trainer import TrainConfig, Trainer

# About a million parameters: 128 px input, 8 px patches (a 16 x 16 embedding), 4 encoder blocks.
DEMO_CONFIG = SamConfig(
    encoder_embed_dim=96,
    encoder_depth=4,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(1, 3),
    encoder_window_size=4,
    image_size=128,
    patch_size=8,
    prompt_embed_dim=64,
    mask_in_chans=16,
    decoder_num_heads=4,
    decoder_mlp_dim=256,
    iou_head_hidden_dim=64,
    name="demo",
)
TRAIN_SEED, HELD_OUT_SEED = 0, 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--train-scenes", type=int, default=2000)
    parser.add_argument("--eval-scenes", type=int, default=50)
    parser.add_argument("--output", type=Path, default=DEMO_CHECKPOINT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(TRAIN_SEED)
    model = build_sam(DEMO_CONFIG)
    config = TrainConfig(
        trainable="all",
        steps=args.steps,
        lr=4e-4,
        warmup_steps=100,
        layer_decay=0.9,
        drop_path=0.0,
        masks_per_image=8,
        max_seconds=args.minutes * 60,
        log_every=100,
    )
    with tempfile.TemporaryDirectory(prefix="sam_demo_") as run_dir:
        config.output_dir = run_dir
        trainer = Trainer(model, config)
        history = trainer.fit(SceneDataset(TRAIN_SEED, args.train_scenes))
    tail = history[-100:]
    logging.info(
        "trained %d steps; last %d steps: loss %.3f, train mIoU %.3f",
        trainer.step,
        len(tail),
        sum(h["loss"] for h in tail) / len(tail),
        sum(h["miou"] for h in tail) / len(tail),
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model.eval(), args.output)
    result = evaluate(
        SamPredictor(model), SceneDataset(HELD_OUT_SEED, args.eval_scenes), "scenes_held_out"
    )
    report = write_report([result], args.output.parent)
    print(report.read_text())


if __name__ == "__main__":
    main()
