import numpy as np
import pytest
import torch

from sam.checkpoint import load_sam
from sam.model import build_sam
from sam.train.data import SceneDataset
from sam.train.trainer import (
    MODEL_FILE,
    TrainConfig,
    Trainer,
    lr_factor,
    make_batch,
    parameter_groups,
    simulate,
)


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


def test_points_are_padded_with_not_a_point_labels():
    from sam.train.simulation import Prompt
    from sam.train.trainer import stack_points

    prompts = [Prompt(), Prompt().with_point(np.array([3.0, 4.0]), 1).with_point([5, 6], 0)]
    coords, labels = stack_points(prompts, torch.device("cpu"))
    assert coords.shape == (2, 2, 2)
    assert labels.tolist() == [[-1, -1], [1, 0]]
    assert coords[1, 1].tolist() == [5.0, 6.0]


def test_drop_path_acts_in_training_only():
    from sam.train.trainer import add_drop_path

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
