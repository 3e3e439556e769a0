"""The second stage as Dai & Wipf built it (daib13/TwoStageVAE): layout, training on
fresh posterior draws, generation with gamma_z noise, and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fid.distance import frechet_distance
from fid.sample_metrics import mmd2_unbiased
from fid.stats import statistics
from vae.models import Stage2Config, Stage2VAE
from vae.stage2 import TwoStageOptions, stage2_data, stage2_latents, train_stage2_model
from vae.train_config import TrainConfig
from vae.trainer import new_trainer


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_dai_wipf_layout_shapes_and_parameters():
    model = Stage2VAE(Stage2Config(input_dim=128, latent_dim=64))
    assert model.config.hidden == (1024, 1024, 1024) and model.config.skip
    # encoder: 128 -> 1024 -> 1024 -> 1024, heads on [z, h] (128 + 1024 = 1152)
    encoder = 128 * 1024 + 1024 + 2 * (1024 * 1024 + 1024)
    heads = 2 * (1152 * 64 + 64)
    # decoder: 64 -> 1024 -> 1024 -> 1024, output on [u, h] (64 + 1024 = 1088)
    decoder = 64 * 1024 + 1024 + 2 * (1024 * 1024 + 1024)
    output = 1088 * 128 + 128
    assert _count(model) == encoder + heads + decoder + output == 4_684_032
    z = torch.randn(5, 128)
    mean, log_var = model.encode(z)
    assert mean.shape == log_var.shape == (5, 64)
    assert model.decode(mean).shape == (5, 128)


def test_the_skip_reaches_the_heads_on_both_sides():
    torch.manual_seed(0)
    model = Stage2VAE(Stage2Config(input_dim=6, latent_dim=3, hidden=(8, 8, 8)))
    # silence the hidden path: whatever is left is the skip from the input
    for layer in [*model.encoder, *model.decoder_body]:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
    z, u = torch.randn(4, 6), torch.randn(4, 3)
    heads = model.mean.weight[:, :6]  # the columns that read z itself
    torch.testing.assert_close(model.encode(z)[0], z @ heads.T + model.mean.bias)
    out = model.output.weight[:, :3]
    torch.testing.assert_close(model.decode(u), u @ out.T + model.output.bias)


def test_table4_variant_keeps_the_earlier_layout():
    model = Stage2VAE(Stage2Config(input_dim=128, latent_dim=64, layout="table4"))
    assert model.config.hidden == (2048, 512) and not model.config.skip
    assert _count(model) == 2_725_120  # as before: 128-2048-512-64, mirrored


def test_training_inputs_are_fresh_posterior_draws_each_time():
    means = torch.zeros(4, 3)
    log_vars = torch.zeros(4, 3)  # unit posterior variance
    model = Stage2VAE(Stage2Config(input_dim=3, latent_dim=2, hidden=(4,)))
    batch = stage2_data(means.numpy(), log_vars.numpy(), "posterior_draws")
    assert batch.shape == (4, 6)  # [mean | log variance]: drawn per batch
    torch.manual_seed(1)
    first = model.prepare(batch)
    second = model.prepare(batch)
    assert first.shape == (4, 3) and not torch.equal(first, second)
    torch.manual_seed(1)
    torch.testing.assert_close(model.prepare(batch), first)  # seeded
    # the means variant trains on the means themselves
    plain = stage2_data(means.numpy(), log_vars.numpy(), "means")
    torch.testing.assert_close(model.prepare(plain), means)


def _ring_mixture(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 latents in 8 dimensions: four tight clusters on a ring in the first
    two, nothing like N(0, I); posterior variance 0.01 around each."""
    angles = rng.integers(0, 4, n) * np.pi / 2
    means = np.zeros((n, 8))
    means[:, 0], means[:, 1] = 3 * np.cos(angles), 3 * np.sin(angles)
    means += 0.2 * rng.standard_normal((n, 8))
    return means.astype(np.float32), np.full((n, 8), np.log(0.01), np.float32)


def test_stage2_samples_come_closer_to_the_latents_than_the_prior():
    rng = np.random.default_rng(0)
    means, log_vars = _ring_mixture(rng, 2000)
    options = TwoStageOptions(
        latent_dim=8, hidden=(64, 64, 64),
        train=TrainConfig(epochs=60, batch_size=100, lr=1e-3, device="cpu"),
    )  # fmt: skip
    stage2, gamma, _ = train_stage2_model(means, log_vars, options)
    assert 0 < gamma < 1  # the learned decoder scale shrank from exp(0) = 1
    target = _ring_mixture(np.random.default_rng(1), 2000)[0].astype(np.float64)
    generator = torch.Generator().manual_seed(2)
    drawn = stage2_latents(stage2, gamma, 2000, generator).numpy().astype(np.float64)
    prior = rng.standard_normal((2000, 8))
    fd_stage2 = frechet_distance(statistics(target), statistics(drawn))
    fd_prior = frechet_distance(statistics(target), statistics(prior))
    assert fd_stage2 < fd_prior / 5, (fd_stage2, fd_prior)
    mmd_stage2 = mmd2_unbiased(target[:500], drawn[:500])
    mmd_prior = mmd2_unbiased(target[:500], prior[:500])
    assert mmd_stage2 < mmd_prior / 5, (mmd_stage2, mmd_prior)


def test_stage2_resume_is_exact():
    rng = np.random.default_rng(3)
    means, log_vars = _ring_mixture(rng, 300)
    data = stage2_data(means, log_vars, "posterior_draws")
    config = Stage2Config(input_dim=8, latent_dim=4, hidden=(16, 16, 16))

    def trainer(epochs):
        return new_trainer(config, data, TrainConfig(epochs=epochs, batch_size=50,
                                                     seed=5, device="cpu"))  # fmt: skip

    straight = trainer(4)
    straight.run()
    first = trainer(4)
    first.config = TrainConfig(epochs=2, batch_size=50, seed=5, device="cpu")
    first.run()
    state = first.state_dict()
    torch.manual_seed(123)  # other random draws in between must not matter
    resumed = trainer(4)
    resumed.load_state_dict(state)
    resumed.run()
    for a, b in zip(straight.model.state_dict().values(),
                    resumed.model.state_dict().values(), strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [r.loss for r in straight.history] == [r.loss for r in resumed.history]


def _tiny_options(epochs=6, lr=1e-4) -> TwoStageOptions:
    return TwoStageOptions(latent_dim=4, hidden=(16, 16, 16),
                           train=TrainConfig(epochs=epochs, batch_size=50, seed=5,
                                             lr=lr, device="cpu"))  # fmt: skip


def test_stage2_saves_by_time_and_after_its_last_epoch(monkeypatch):
    import vae.stage2
    from vae.stage2 import RESUME_KEY, Stage2Checkpoint

    rng = np.random.default_rng(4)
    means, log_vars = _ring_mixture(rng, 100)
    clock = iter([0.0, 10.0, 60.0, 65.0, 100.0, 124.0, 125.0, 130.0, 140.0, 141.0])
    monkeypatch.setattr(vae.stage2.time, "monotonic", lambda: next(clock))
    saved = []
    every_minute = Stage2Checkpoint(saved.append, seconds=60)
    train_stage2_model(means, log_vars, _tiny_options(), stage1_key="k",
                       checkpoint=every_minute)  # fmt: skip
    # started at 0; epochs end at 10, 60 (60 s: save, done at 65), 100, 124 (59 s
    # since the save), 125 (60 s: save, done at 130), and the last one always saves
    assert [state["epoch"] for state in saved] == [2, 5, 6]
    assert all(state[RESUME_KEY] == saved[0][RESUME_KEY] for state in saved)
    with pytest.raises(ValueError, match="seconds = nan"):
        Stage2Checkpoint(saved.append, seconds=float("nan"))


def test_a_saved_stage2_goes_on_only_with_the_same_stage1_and_settings():
    from dataclasses import replace

    from vae.stage2 import resume_key

    options = _tiny_options()
    config = Stage2Config(input_dim=8, latent_dim=4, hidden=(16, 16, 16))
    key = resume_key("k", config, options)
    more = replace(options.train, epochs=99, device="cuda")  # may go on, elsewhere
    assert resume_key("k", config, replace(options, train=more)) == key
    train = options.train
    changed = [
        resume_key("another stage 1", config, options),
        resume_key("k", replace(config, latent_dim=3), options),
        resume_key("k", replace(config, layout="table4"), options),
        resume_key("k", config, replace(options, inputs="means")),
        resume_key("k", config, replace(options, loss="mse")),
        resume_key("k", config, replace(options, kl_weight=0.5)),
        resume_key("k", config, replace(options, train=replace(train, lr=1e-3))),
        resume_key("k", config, replace(options, train=replace(train, batch_size=7))),
        resume_key("k", config, replace(options, train=replace(train, seed=9))),
        resume_key(
            "k", config, replace(options, train=replace(train, precision="bf16"))
        ),
    ]
    assert len({key, *changed}) == 1 + len(changed)


def test_a_diverged_stage2_is_saved_as_it_ended_and_not_run_again():
    from vae.stage2 import Stage2Checkpoint

    rng = np.random.default_rng(4)
    means, log_vars = _ring_mixture(rng, 100)
    saved = []
    options = _tiny_options(lr=1e6)  # a non-finite loss within a few epochs
    _, _, result = train_stage2_model(
        means, log_vars, options, stage1_key="k",
        checkpoint=Stage2Checkpoint(saved.append),
    )  # fmt: skip
    assert result.outcome == "diverged" and result.epochs < 6
    assert saved[-1]["outcome"] == "diverged" and saved[-1]["epoch"] == result.epochs
    again = []
    _, _, resumed = train_stage2_model(
        means, log_vars, options, stage1_key="k",
        checkpoint=Stage2Checkpoint(again.append, saved=saved[-1]),
    )  # fmt: skip
    assert resumed.outcome == "diverged" and resumed.epochs == result.epochs
    assert again == []  # nothing ran, nothing to save


def test_the_stage1_key_is_the_weights_and_nothing_else():
    from vae.models import Stage1Config, Stage1VAE
    from vae.stage2 import model_key

    torch.manual_seed(0)
    model = Stage1VAE(Stage1Config(latent_dim=4, encoder_channels=(8, 8),
                                   decoder_channels=(8, 8)))  # fmt: skip
    key = model_key(model)
    twin = Stage1VAE(model.config)
    twin.load_state_dict(model.state_dict())
    assert model_key(twin) == key
    assert model_key(twin.to(memory_format=torch.channels_last)) == key  # layout only
    with torch.no_grad():
        weight = next(twin.parameters())
        weight[(0,) * weight.dim()] += 1e-3  # one weight
    assert model_key(twin) != key
    # the batch norms' running statistics shape the encoder means as much
    twin.load_state_dict(model.state_dict())
    name, buffer = next((n, b) for n, b in twin.named_buffers() if "running_mean" in n)
    buffer[0] += 1e-3
    assert model_key(twin) != key, name


@pytest.mark.parametrize("layout", ["dai_wipf", "table4"])
def test_unknown_layouts_and_sizes_are_refused(layout):
    from vae_sweep.errors import InputError

    with pytest.raises(InputError, match="layout"):
        Stage2Config(layout="flow")
    Stage2Config(layout=layout)  # both names are known


def test_stage2_diagnostics_read_what_it_trained_on(monkeypatch):
    """Its variance law and inactive dimensions come from one seeded draw of the
    posterior draws it trained on (z = mu + sigma eps), not from the means; from the
    means when it trained on them."""
    import dataclasses

    import vae.stage2
    from vae.stage2 import diagnostic_inputs, fit_stage2

    rng = np.random.default_rng(6)
    means, _ = _ring_mixture(rng, 3000)
    log_vars = np.full(means.shape, np.log(0.25), np.float32)  # posterior sd 0.5
    options = _tiny_options(epochs=1)
    draws = diagnostic_inputs(means, log_vars, options)
    # the law of total variance: the draws' spread is the means' plus 0.25
    np.testing.assert_allclose(draws.var(axis=0), means.var(axis=0) + 0.25,
                               rtol=0.08)  # fmt: skip
    assert np.array_equal(draws, diagnostic_inputs(means, log_vars, options))
    seen = []
    real = vae.stage2.encode
    monkeypatch.setattr(vae.stage2, "encode",
                        lambda model, x: seen.append(x) or real(model, x))
    fit_stage2(means, log_vars, options, stage1=torch.nn.Linear(1, 1))
    assert np.array_equal(seen[-1], draws)
    on_means = dataclasses.replace(options, inputs="means")
    fit_stage2(means, log_vars, on_means, stage1=torch.nn.Linear(1, 1))
    assert np.array_equal(seen[-1], means)
