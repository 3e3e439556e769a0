"""The training loop: exact resume, callbacks, LR halving, divergence, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.helpers.tiny import TINY_STAGE1, TINY_STAGE2
from vae.train_config import TrainConfig
from vae.trainer import batch_bounds, load_model, new_trainer, read_checkpoint
from vae_sweep.errors import InputError


@pytest.fixture
def images(rng) -> torch.Tensor:
    return torch.as_tensor(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8))


def _config(**options) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 16, "seed": 7, **options})


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_resume_from_checkpoint_file_is_bit_exact(images, tmp_path):
    straight = new_trainer(TINY_STAGE1, images, _config())
    straight.run()

    first = new_trainer(TINY_STAGE1, images, _config(epochs=2))
    first.run(checkpoint=tmp_path / "stage1.pt")
    # a different process would draw other random numbers between the two halves
    torch.manual_seed(999)
    torch.randn(100)
    resumed = new_trainer(TINY_STAGE1, images, _config())
    resumed.load_state_dict(read_checkpoint(tmp_path / "stage1.pt"))
    assert resumed.epoch == 2
    resumed.run()

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "weights differ after resume"
    assert torch.equal(straight.loss.log_gamma, resumed.loss.log_gamma)
    assert [r.loss for r in straight.history] == [r.loss for r in resumed.history]


def test_runs_are_seeded_and_seeds_differ(images):
    a = new_trainer(TINY_STAGE1, images, _config(epochs=1))
    b = new_trainer(TINY_STAGE1, images, _config(epochs=1))
    c = new_trainer(TINY_STAGE1, images, _config(epochs=1, seed=8))
    for trainer in (a, b, c):
        trainer.run()
    assert a.history[0].loss == b.history[0].loss != c.history[0].loss


def test_callback_sees_each_epoch_and_can_stop(images, tmp_path):
    seen = []

    def stop_after_two(report):
        seen.append((report.epoch, report.mse))
        return report.epoch == 2

    trainer = new_trainer(TINY_STAGE1, images, _config())
    result = trainer.run([stop_after_two], checkpoint=tmp_path / "ck.pt")
    assert result.outcome == "stopped" and result.epochs == 2
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert all(0 < mse < 1 for _, mse in seen)  # per-pixel MSE on [0, 1] pixels
    assert read_checkpoint(tmp_path / "ck.pt")["outcome"] == "stopped"


def test_nan_loss_ends_as_diverged(images):
    trainer = new_trainer(TINY_STAGE1, images, _config())
    with torch.no_grad():
        trainer.model.mean.weight.fill_(float("nan"))
    result = trainer.run()
    assert result.outcome == "diverged" and result.epochs == 0 and not result.history


def test_lr_halves_when_epoch_loss_stops_falling(images):
    trainer = new_trainer(TINY_STAGE1, images, _config(epochs=3, lr_patience=0))
    losses = iter([5.0, 4.0, 4.5])  # the third epoch does not improve
    trainer._round = _fake_epochs(trainer, losses)
    trainer.run()
    assert [r.lr for r in trainer.history] == [1e-4, 1e-4, 1e-4]
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)


def test_lr_halves_after_patience_epochs_without_a_new_best(images):
    # the default patience is 5 rounds (the study's plateau rule: epochs)
    from vae.train_config import PLATEAU_ROUNDS, TrainConfig

    assert TrainConfig().lr_patience is None and PLATEAU_ROUNDS == 5
    # every epoch from the third on is better than the one before it, but none beats
    # the best (9.0): a "worse than the last epoch" rule would never halve. Patience 5
    # tolerates 5 epochs without a new best (3 to 7) and halves after the 6th (8):
    # epoch 9 runs at half the rate
    losses = [10.0, 9.0, 9.5, 9.4, 9.3, 9.2, 9.1, 9.05, 9.02]
    trainer = new_trainer(TINY_STAGE1, images, _config(epochs=len(losses)))
    trainer._round = _fake_epochs(trainer, iter(losses))
    trainer.run()
    assert [r.lr for r in trainer.history] == [1e-4] * 8 + [5e-5]
    # the other way round: each epoch worse than the last but a new best every other
    # epoch never goes 5 epochs without one, so the LR stays
    losses = [10.0, 10.5, 9.0, 9.5, 8.0, 8.5, 7.0, 7.5, 6.0]
    trainer = new_trainer(TINY_STAGE1, images, _config(epochs=len(losses)))
    trainer._round = _fake_epochs(trainer, iter(losses))
    trainer.run()
    assert [r.lr for r in trainer.history] == [1e-4] * len(losses)


def _fake_epochs(trainer, losses):
    from vae.train_config import EpochReport

    def epoch():
        lr = trainer.optimizer.param_groups[0]["lr"]
        return EpochReport(trainer.epoch + 1, next(losses), 0.1, 0.0, lr, 1.0, 1.0)

    return epoch


def test_stage2_trains_on_latents_and_reloads(tmp_path, rng):
    latents = torch.as_tensor(rng.standard_normal((30, 4)), dtype=torch.float32)
    trainer = new_trainer(TINY_STAGE2, latents, _config(epochs=2), loss="mse")
    trainer.run(checkpoint=tmp_path / "stage2.pt")
    model = load_model(tmp_path / "stage2.pt")
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[key])


def test_batch_bounds_never_leave_a_single_sample():
    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 9)]
    assert batch_bounds(3, 100) == [(0, 3)]


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"epochs": 0}, "epochs"),
        ({"precision": "fp16"}, "precision"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_training_options(options, needle):
    with pytest.raises(InputError, match=needle):
        _config(**options)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_trains_to_numbers_close_to_fp32(images, device):
    runs, seen = {}, {}
    for precision in ("fp32", "bf16"):
        trainer = new_trainer(
            TINY_STAGE1, images, _config(precision=precision, device=device, epochs=2)
        )
        # what the decoder's last layer computed in, batch after batch
        convolutions = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        last = [m for m in trainer.model.modules() if isinstance(m, convolutions)][-1]
        dtypes = set()
        last.register_forward_hook(lambda _m, _i, out, d=dtypes: d.add(out.dtype))
        assert trainer.run().outcome == "completed"
        runs[precision], seen[precision] = [r.mse for r in trainer.history], dtypes
    assert seen == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}
    # bf16 keeps 8 bits of mantissa: the same descent, to about a percent, and not
    # the same numbers (it did run in bf16)
    np.testing.assert_allclose(runs["bf16"], runs["fp32"], rtol=0.03)
    assert runs["bf16"] != runs["fp32"]


def test_channels_last_trains_the_same_model_in_another_layout(images):
    plain = new_trainer(TINY_STAGE1, images, _config(epochs=2))
    last = new_trainer(TINY_STAGE1, images, _config(epochs=2, channels_last=True))
    conv = next(p for p in last.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert conv.stride() != next(p for p in plain.model.parameters()
                                 if p.dim() == 4).stride()  # fmt: skip
    plain.run()
    last.run()
    np.testing.assert_allclose([r.loss for r in last.history],
                               [r.loss for r in plain.history], rtol=1e-4)  # fmt: skip


def test_checkpoint_of_another_model_is_refused(images, tmp_path):
    trainer = new_trainer(TINY_STAGE1, images, _config(epochs=1))
    trainer.run(checkpoint=tmp_path / "a.pt")
    other = new_trainer(TINY_STAGE2, torch.zeros(4, 4), _config(epochs=1))
    with pytest.raises(InputError, match="checkpoint holds model"):
        other.load_state_dict(read_checkpoint(tmp_path / "a.pt"))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "bad.pt")


def test_a_checkpoint_with_width_lists_resumes_under_a_config_of_tuples(
    images, tmp_path
):
    """Widths given on the command line reach the config as lists (stage1.pt files
    written so hold lists); a config built from them now holds tuples: one model."""
    listed = dataclasses.replace(
        TINY_STAGE1, encoder_channels=list(TINY_STAGE1.encoder_channels)
    )
    trainer = new_trainer(listed, images, _config(epochs=1))
    trainer.run(checkpoint=tmp_path / "a.pt")
    assert isinstance(read_checkpoint(tmp_path / "a.pt")["model"]["encoder_channels"],
                      list)  # fmt: skip
    resumed = new_trainer(TINY_STAGE1, images, _config(epochs=2))
    resumed.load_state_dict(read_checkpoint(tmp_path / "a.pt"))
    assert resumed.epoch == 1
    wider = dataclasses.replace(TINY_STAGE1, encoder_channels=(8, 8, 8, 8))
    assert wider != TINY_STAGE1
    with pytest.raises(InputError, match="checkpoint holds model"):
        new_trainer(wider, images, _config()).load_state_dict(
            read_checkpoint(tmp_path / "a.pt")
        )


def _steps(**options) -> TrainConfig:
    return _config(**{"epochs": None, "steps": 10, "round_steps": 4, **options})


def test_a_step_budget_runs_exactly_its_steps_in_rounds(images):
    # 40 images in batches of 16: passes of 3 batches (16, 16, 8 images). 10 steps
    # in rounds of 4: rounds of 4, 4 and 2 steps; 3 whole passes and one batch
    trainer = new_trainer(TINY_STAGE1, images, _steps())
    result = trainer.run()
    assert (result.outcome, result.steps, result.epochs) == ("completed", 10, 3)
    assert [r.step for r in trainer.history] == [4, 8, 10]
    seen = [r.images_seen for r in trainer.history]
    per_step = [16, 16, 8] * 4
    assert seen == [sum(per_step[:4]), sum(per_step[:8]), sum(per_step[:10])]
    # an epoch budget: whole passes, the steps they take
    epochs = new_trainer(TINY_STAGE1, images, _config(epochs=2))
    epochs.run()
    assert epochs.step == 2 * 3 and epochs.images == 2 * 40
    assert [r.step for r in epochs.history] == [3, 6]


def test_equal_steps_whatever_the_training_set_size(rng):
    small = torch.as_tensor(rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8))
    large = torch.as_tensor(rng.integers(0, 256, (200, 32, 32, 3), dtype=np.uint8))
    runs = [new_trainer(TINY_STAGE1, data, _steps(steps=12)) for data in (small, large)]
    for trainer in runs:
        trainer.run()
    assert [t.step for t in runs] == [12, 12]
    assert runs[1].images == 12 * 16  # 200 images: every batch full within the budget
    assert runs[0].images == 6 * (16 + 4)  # 20 images: a batch of 16 and one of 4


def test_a_step_budget_resumes_mid_pass_bit_exactly(images, tmp_path):
    straight = new_trainer(TINY_STAGE1, images, _steps())
    straight.run()
    # stopped after the first round: 4 steps, in the middle of the second pass
    first = new_trainer(TINY_STAGE1, images, _steps())
    first.run([lambda report: True], checkpoint=tmp_path / "stage1.pt")
    assert (first.outcome, first.step) == ("stopped", 4)
    resumed = new_trainer(TINY_STAGE1, images, _steps())
    resumed.load_state_dict(read_checkpoint(tmp_path / "stage1.pt"))
    resumed.run()
    assert resumed.step == 10 and resumed.images == straight.images
    for name, tensor in _weights(straight).items():
        assert torch.equal(tensor, _weights(resumed)[name]), name
    assert [r.loss for r in resumed.history] == [r.loss for r in straight.history]


def test_step_schedule_cuts_the_lr_every_lr_step(images):
    # Dai & Wipf's schedule: lr * factor ** floor(t / lr_step), t in the budget's unit
    trainer = new_trainer(TINY_STAGE1, images, _config(
        epochs=5, lr_schedule="step", lr_step=2, lr=1e-3))  # fmt: skip
    trainer.run()
    assert [r.lr for r in trainer.history] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    by_steps = new_trainer(TINY_STAGE1, images, _steps(
        steps=12, round_steps=2, lr_schedule="step", lr_step=4, lr=1e-3))  # fmt: skip
    by_steps.run()
    assert [r.lr for r in by_steps.history] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])


@pytest.mark.parametrize("options, needle", [
    ({"steps": 10}, "give epochs or steps, one of them"),
    ({"epochs": None}, "give epochs or steps"),
    ({"epochs": None, "steps": 10, "lr_patience": 5}, "lr_patience = 5 is no multiple"),
    ({"lr_schedule": "step"}, "lr_step goes with lr_schedule step"),
    ({"lr_step": 3}, "lr_step goes with lr_schedule step"),
    ({"epochs": None, "steps": 0}, "steps must be at least 1"),
])  # fmt: skip
def test_bad_budgets_and_schedules(options, needle):
    with pytest.raises(InputError, match=needle):
        _config(**options)


def test_every_round_reports_the_decoder_scale(images):
    trainer = new_trainer(TINY_STAGE1, images, _config(epochs=2), loss="gamma")
    trainer.run()
    assert trainer.history[-1].gamma == pytest.approx(
        float(trainer.loss.log_gamma.detach().exp()))
    calibrated = new_trainer(TINY_STAGE1, images, _config(epochs=1),
                             loss="optimal_gamma")  # fmt: skip
    calibrated.run()
    assert calibrated.history[-1].gamma == pytest.approx(calibrated.loss.gamma)
    assert 0 < calibrated.history[-1].gamma < 1
    plain = new_trainer(TINY_STAGE1, images, _config(epochs=1), loss="mse")
    plain.run()
    assert plain.history[-1].gamma is None  # no decoder scale


def test_the_recon_criterions_reference_vae_trains_to_a_step_budget(images, tmp_path):
    """The reference VAE behind the recon criteria takes stage 1's budget, steps
    included, and resumes from its checkpoint without training on."""
    from vae.recon_scores import reference_scores

    training = _steps(steps=5, round_steps=2)
    scores = reference_scores(images.numpy(), model=TINY_STAGE1, training=training,
                              checkpoint=tmp_path / "ref.pt")  # fmt: skip
    assert scores.shape == (40,) and np.isfinite(scores).all()
    state = read_checkpoint(tmp_path / "ref.pt")
    assert state["step"] == 5 and state["epoch"] == 3  # rounds of 2, 2 and 1 steps
    again = reference_scores(images.numpy(), model=TINY_STAGE1, training=training,
                             checkpoint=tmp_path / "ref.pt")  # fmt: skip
    np.testing.assert_array_equal(again, scores)  # read back, not trained further
