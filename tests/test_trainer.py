import time

import numpy as np
import pytest
import torch

from sam.modeling.sam import build_sam
from sam.train.batches import make_batch, simulate
from sam.train.config import TrainConfig
from sam.train.data import SceneDataset
from sam.train.optim import lr_factor, parameter_groups
from sam.train.trainer import EMA_FILE, MODEL_FILE, Trainer
from sam.weights.checkpoint import load_sam


def _sample():
    return next(iter(SceneDataset(seed=3, count=1, size=128)))


def _config(**changes) -> TrainConfig:
    values = dict(
        steps=4,
        lr=1e-3,
        warmup_steps=1,
        masks_per_image=4,
        num_points=2,
        num_mask_only=1,
        drop_path=0.1,
        log_every=1000,
    )
    values.update(changes)
    return TrainConfig(**values)


def test_lr_schedule_warms_up_then_steps_down():
    config = TrainConfig(warmup_steps=4, decay_steps=(10, 20), decay_factor=0.1)
    assert lr_factor(0, config) == pytest.approx(0.25)
    assert lr_factor(3, config) == 1.0 and lr_factor(9, config) == 1.0
    assert lr_factor(10, config) == pytest.approx(0.1)
    assert lr_factor(25, config) == pytest.approx(0.01)


def test_layer_decay_gives_lower_lr_to_early_encoder_layers():
    torch.manual_seed(0)
    model = build_sam("vit_test")
    groups = parameter_groups(model, TrainConfig(lr=1.0, layer_decay=0.5))
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    encoder = model.image_encoder
    assert lr_of[id(encoder.patch_embed.proj.weight)] == pytest.approx(0.5**3)
    assert lr_of[id(encoder.blocks[1].mlp.lin1.weight)] == pytest.approx(0.5)
    assert lr_of[id(model.mask_decoder.iou_token.weight)] == 1.0


def test_training_lowers_the_loss_on_a_fixed_sample():
    torch.manual_seed(0)
    model = build_sam("vit_test")
    trainer = Trainer(model, _config(box_probability=0.0, drop_path=0.0))
    sample = _sample()
    trainer.rng = np.random.default_rng(0)
    first = trainer.train_step(sample)["loss"]
    for _ in range(5):
        trainer.train_step(sample)
    trainer.rng = np.random.default_rng(0)
    model.eval()
    with torch.no_grad():
        batch = make_batch(model, sample, trainer.rng, 4)
        after = simulate(model, batch, trainer.rng, trainer.config)[0].item()
    assert after < first


def test_lr_decays_at_fractions_of_a_time_budget():
    config = TrainConfig(steps=1000, warmup_steps=2, decay_fractions=(0.5, 0.9))
    assert lr_factor(100, config, progress=0.4) == 1.0
    assert lr_factor(100, config, progress=0.6) == pytest.approx(0.1)
    assert lr_factor(100, config, progress=0.95) == pytest.approx(0.01)
    assert lr_factor(600, config) == pytest.approx(0.1)  # by steps when no time is given
    trainer = Trainer(build_sam("vit_test"), _config(steps=10**6, max_seconds=100.0))
    trainer.started = time.monotonic() - 60  # 60% of the time spent
    assert trainer.progress() == pytest.approx(0.6, abs=0.01)


def test_batching_several_images_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = build_sam("vit_test")
    trainer = Trainer(model, _config(box_probability=0.0, drop_path=0.0, images_per_step=3))
    samples = list(SceneDataset(seed=4, count=3, size=128))
    batch = make_batch(model, samples, np.random.default_rng(0), 4)
    assert batch.pixels.shape == (3, 3, 128, 128)
    assert batch.image_index.tolist() == sorted(batch.image_index.tolist())
    assert set(batch.image_index.tolist()) == {0, 1, 2} and len(batch.masks) > 3

    def loss_now() -> float:
        model.eval()
        with torch.no_grad():
            batch = make_batch(model, samples, np.random.default_rng(0), 4)
            return simulate(model, batch, np.random.default_rng(0), trainer.config)[0].item()

    before = loss_now()
    for _ in range(6):
        trainer.rng = np.random.default_rng(0)
        metrics = trainer.train_step(samples)
    assert metrics["masks"] == len(batch.masks)
    assert loss_now() < before


def test_per_mask_embeddings_decode_like_the_shared_one():
    torch.manual_seed(0)
    model = build_sam("vit_test").eval()
    embedding = torch.randn(1, 32, 8, 8)
    points = (torch.tensor([[[10.0, 20.0]], [[60.0, 70.0]]]), torch.ones(2, 1, dtype=torch.long))
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=points, boxes=None, masks=None)
        pe = model.prompt_encoder.get_dense_pe()
        shared = model.mask_decoder(embedding, pe, sparse, dense, True)
        per_mask = model.mask_decoder(
            torch.zeros_like(embedding), pe, sparse, dense + embedding.expand(2, -1, -1, -1), True
        )
    for a, b in zip(shared, per_mask, strict=True):
        torch.testing.assert_close(a, b)


def test_simulated_points_and_boxes_lie_where_they_should():
    from sam.train.batches import noisy_boxes, sample_points

    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 4:10, 20:30] = True
    masks[1, 0:32, 0:3] = True
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        coords, valid = sample_points(masks, generator)
        assert valid.tolist() == [True, True, False]
        for row in (0, 1):
            x, y = coords[row].long().tolist()
            assert masks[row, y, x]
    boxes = noisy_boxes(masks[:2], generator)
    assert (boxes >= 0).all() and (boxes <= 31).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert abs(boxes[0, 0].item() - 20) < 5 and abs(boxes[0, 3].item() - 9) < 5


def test_fit_groups_single_samples_into_steps(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(
        build_sam("vit_test"),
        _config(steps=2, images_per_step=2, output_dir=str(tmp_path / "run")),
    )
    history = trainer.fit(SceneDataset(seed=3, count=3, size=128))
    assert trainer.step == 2 and all(h["masks"] > 1 for h in history)


def test_decoder_mode_freezes_encoders():
    torch.manual_seed(0)
    model = build_sam("vit_test")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, _config(trainable="decoder"))
    for _ in range(2):
        trainer.train_step(_sample())
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        if name.startswith(("image_encoder", "prompt_encoder")):
            assert not changed, name
    assert any(
        not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("mask_decoder")
    )


def test_checkpoint_round_trip_and_resume(tmp_path):
    torch.manual_seed(0)
    model = build_sam("vit_test")
    config = _config(steps=2, output_dir=str(tmp_path / "run"))
    trainer = Trainer(model, config)
    trainer.fit([_sample()])
    loaded = load_sam(tmp_path / "run" / MODEL_FILE, device="cpu", precision="fp32")
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)

    fresh = Trainer(build_sam("vit_test"), config)
    fresh.resume(tmp_path / "run")
    assert fresh.step == 2
    for name, value in model.state_dict().items():
        torch.testing.assert_close(fresh.model.state_dict()[name], value)
    old_state = trainer.optimizer.state_dict()["state"]
    new_state = fresh.optimizer.state_dict()["state"]
    assert old_state.keys() == new_state.keys() and old_state
    for key in old_state:
        torch.testing.assert_close(new_state[key]["exp_avg"], old_state[key]["exp_avg"])
    assert fresh.scheduler.last_epoch == trainer.scheduler.last_epoch
    fresh.config.steps = 3
    fresh.fit([_sample()])
    assert fresh.step == 3


def test_ema_is_the_moving_average_of_the_weights(tmp_path):
    torch.manual_seed(0)
    model = build_sam("vit_test")
    decay = 0.6
    trainer = Trainer(model, _config(ema_decay=decay, drop_path=0.0))
    expected = {k: v.clone() for k, v in model.state_dict().items()}  # starts at the weights
    for _ in range(3):
        trainer.train_step(_sample())
        for name, value in model.state_dict().items():
            expected[name] = decay * expected[name] + (1 - decay) * value
    averaged = trainer.ema.state_dict()
    changed = 0
    for name, value in model.state_dict().items():
        torch.testing.assert_close(averaged[name], expected[name])
        changed += not torch.equal(averaged[name], value)
    assert changed > 0  # the average lags the weights
    assert all(not p.requires_grad for p in trainer.ema.parameters())

    trainer.save(tmp_path)
    ema = load_sam(tmp_path / EMA_FILE, device="cpu", precision="fp32")
    for name, value in averaged.items():
        torch.testing.assert_close(ema.state_dict()[name], value)
    fresh = Trainer(build_sam("vit_test"), _config(ema_decay=decay))
    fresh.resume(tmp_path)
    for name, value in averaged.items():
        torch.testing.assert_close(fresh.ema.state_dict()[name], value)
    fresh.train_step(_sample())  # the resumed average goes on averaging the resumed weights
    for name, value in fresh.model.state_dict().items():
        torch.testing.assert_close(
            fresh.ema.state_dict()[name], decay * averaged[name] + (1 - decay) * value
        )
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(build_sam("vit_test"), _config(ema_decay=1.5))


@pytest.mark.slow
def test_demo_script_writes_a_loadable_model(tmp_path):
    from sam.train.demo import main

    output = tmp_path / "sam_demo.safetensors"
    main(
        ["--minutes", "0.02", "--train-scenes", "2", "--eval-scenes", "1", "--output", str(output)]
    )
    model = load_sam(output, device="cpu", precision="fp32")
    assert model.config.name == "demo" and model.config.patch_size == 8
    assert (tmp_path / "results.md").read_text().startswith("| dataset |")


@pytest.mark.slow
def test_demo_script_writes_everything_to_an_output_dir(tmp_path):
    from sam.train.demo import main

    args = ["--minutes", "0.02", "--train-scenes", "4", "--eval-scenes", "1"]
    main(
        [*args, "--device", "cpu", "--images-per-step", "2", "--num-workers", "1"]
        + ["--output-dir", str(tmp_path / "out"), "--ema-decay", "0.9"]
    )
    out = tmp_path / "out"
    for name in ("sam_demo.safetensors", "results.md", "scenes_held_out.json", "train_log.json"):
        assert (out / name).is_file(), name
    assert (out / "run" / MODEL_FILE).is_file()
    written = load_sam(out / "sam_demo.safetensors", device="cpu", precision="fp32")
    ema = load_sam(out / "run" / EMA_FILE, device="cpu", precision="fp32")  # the average is written
    for name, value in ema.state_dict().items():
        torch.testing.assert_close(written.state_dict()[name], value)


def test_points_are_padded_with_not_a_point_labels():
    from sam.train.batches import stack_points
    from sam.train.simulation import Prompt

    prompts = [Prompt(), Prompt().with_point(np.array([3.0, 4.0]), 1).with_point([5, 6], 0)]
    coords, labels = stack_points(prompts, torch.device("cpu"))
    assert coords.shape == (2, 2, 2)
    assert labels.tolist() == [[-1, -1], [1, 0]]
    assert coords[1, 1].tolist() == [5.0, 6.0]


def test_drop_path_acts_in_training_only():
    from sam.train.optim import add_drop_path

    torch.manual_seed(0)
    encoder = build_sam("vit_test").image_encoder
    pixels = torch.randn(8, 3, 128, 128)
    with torch.no_grad():
        reference = encoder(pixels)
        handles = add_drop_path(encoder, rate=0.9)
        torch.testing.assert_close(encoder.eval()(pixels), reference)
        assert not torch.allclose(encoder.train()(pixels), reference)
    for handle in handles:
        handle.remove()
    assert "blocks.0.attn.qkv.weight" in encoder.state_dict()  # weight names unchanged
