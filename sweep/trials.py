"""From a validated grid to the list of trials, and from one trial back to its settings.

A trial's Ray config is only its axis values (`{"trial": {"n_train": ..., ...}}`); the
trainable rebuilds everything else from the grid, so Tune's state stays small and a
restored sweep sees the same settings. Equivalent trials are collapsed: a subset equal
to the whole training set is the same trial whatever the criterion (DESIGN section 6).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass

from experiments.protocols.scrambled import tile_grid
from sweep.config import CIFAR_TRAIN_SIZE, GridConfig
from vae.models import Stage1Config
from vae.priors import GMMOptions
from vae.stage2 import EPOCHS as STAGE2_EPOCHS
from vae.stage2 import TwoStageOptions
from vae.train_config import TrainConfig
from vae_sweep.configs import from_fields
from vae_sweep.errors import InputError
from vae_sweep.files import content_key


def train_size(config: GridConfig) -> int:
    return config.data.train_limit or CIFAR_TRAIN_SIZE


def expand(config: GridConfig, total: int | None = None) -> list[dict]:
    """The trials of a grid, in grid order, equivalent ones once."""
    total = total or train_size(config)
    check_experiment(config, total)
    if config.kind == "fid_repeated":
        return [
            {"size": s, "seed": seed}
            for seed in config.grid["seed"]
            for s in config.e1.sizes
        ]
    if config.kind == "fid_scrambled":
        return [
            {"tiles": t, "seed": seed}
            for seed in config.grid["seed"]
            for t in config.e2.tiles
        ]
    axes = list(config.grid)
    trials, seen = [], set()
    for values in itertools.product(*config.grid.values()):
        params = dict(zip(axes, values, strict=True))
        n = retained(params["n_train"], total)
        if n > total:
            raise InputError(
                f"grid.n_train = {n} is larger than the training set ({total} images)"
            )
        params["n_train"] = n
        if n == total:
            params["criterion"] = "all"
        key = json.dumps(params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            trials.append(params)
    return trials


def retained(n_train: int | float | None, total: int) -> int:
    """Images a trial trains on: a count, a fraction of the pool (0.5: half, rounded
    to the nearest image), or the whole pool (None)."""
    if n_train is None:
        return total
    if isinstance(n_train, float):
        return max(1, round(n_train * total))
    return n_train


def check_experiment(config: GridConfig, total: int) -> None:
    if config.kind == "fid_repeated":
        largest = min(config.e1.count, total)
        for size in config.e1.sizes:
            if size > largest:
                raise InputError(
                    f"e1.sizes: {size} distinct images is more than min(e1.count, "
                    f"training set) = {largest}"
                )
    if config.kind == "fid_scrambled":
        for tiles in config.e2.tiles:
            try:
                tile_grid(tiles)
            except InputError as error:  # it names the E2 command's flag
                raise InputError(str(error).replace("--tiles", "e2.tiles")) from None
        if config.e2.count > total:
            raise InputError(
                f"e2.count = {config.e2.count} is more than the {total} training images"
            )


def trial_name(params: dict) -> str:
    parts = [f"{k.split('.')[-1]}={v}" for k, v in params.items()]
    return ",".join(parts)


@dataclass(frozen=True)
class TrialSettings:
    """Everything one VAE trial needs, as the typed objects vae/ takes."""

    n_train: int
    criterion: str
    seed: int
    model: Stage1Config
    stage1: TrainConfig
    loss: str
    kl_weight: float
    reference: TrainConfig  # the recon criterion's reference VAE
    gmm: GMMOptions
    two_stage: TwoStageOptions
    config_hash: str


def section(config: GridConfig, name: str, params: dict):
    """A grid section with the trial's axis values for it applied."""
    base = getattr(config, name)
    updates = {
        axis.split(".", 1)[1]: value
        for axis, value in params.items()
        if axis.startswith(f"{name}.")
    }
    return type(base).model_validate({**base.model_dump(), **updates})


def settings(
    config: GridConfig, params: dict, *, device: str = "auto"
) -> TrialSettings:
    """A trial's settings; the model's own checks name the grid keys (model.*)."""
    try:
        return _settings(config, params, device=device)
    except InputError as error:
        message = re.sub(r"(?<![\w.])(latent_dim|encoder_channels|decoder_channels)\b",
                         r"model.\1", str(error))  # fmt: skip
        raise InputError(message) from None


def _training(stage: str, values: dict, **overrides) -> TrainConfig:
    """A stage's TrainConfig; its own checks name the grid keys (stage1.lr_step)."""
    try:
        return from_fields(TrainConfig, values, **overrides)
    except InputError as error:
        fields = "|".join(f.name for f in dataclasses.fields(TrainConfig))
        message = re.sub(rf"(?<![\w.])({fields})\b", rf"{stage}.\1", str(error))
        raise InputError(message) from None


def stage2_budget(stage1, stage2) -> dict:
    """Stage 2's budget: its own, or 1,200 epochs (the study's), or under a stage-1
    step budget twice stage 1's steps (the same unit in both stages)."""
    if stage2.epochs is not None or stage2.steps is not None:
        return {"epochs": stage2.epochs, "steps": stage2.steps}
    if stage1.steps is not None:
        return {"epochs": None, "steps": 2 * stage1.steps}
    return {"epochs": STAGE2_EPOCHS, "steps": None}


def _settings(config: GridConfig, params: dict, *, device: str) -> TrialSettings:
    model = section(config, "model", params)
    stage1 = section(config, "stage1", params)
    stage2 = section(config, "stage2", params)
    gmm = section(config, "gmm", params)
    selection = section(config, "selection", params)
    seed = params["seed"]
    stage1_training = _training("stage1", dict(stage1), seed=seed, device=device)
    # stage 2 is dense and small: no channels_last or compile; stage 1's precision
    stage2_training = _training("stage2", {**dict(stage2),
                                           **stage2_budget(stage1, stage2)},
                                seed=seed, device=device,
                                precision=stage1.precision)  # fmt: skip
    # the recon criterion's reference VAE: stage 1's recipe on the whole set, its own
    # epochs if given; the trial's seed (selection.reference_per_seed), else seed 0
    budget = ({"epochs": selection.reference_epochs, "steps": None}
              if selection.reference_epochs else {})  # fmt: skip
    reference = _training("stage1", {**dict(stage1), **budget},
                          seed=seed if selection.reference_per_seed else 0,
                          device=device, channels_last=False,
                          compile=False)  # fmt: skip
    resolved = {
        "params": params,
        **{
            name: s.model_dump(mode="json")
            for name, s in [
                ("model", model),
                ("stage1", stage1),
                ("stage2", stage2),
                ("gmm", gmm),
                ("selection", selection),
            ]
        },
        "priors": list(config.priors),
        "fid": config.fid.model_dump(mode="json"),
        "eval": config.eval.model_dump(mode="json"),
    }
    return TrialSettings(
        n_train=params["n_train"],
        criterion=params["criterion"],
        seed=params["seed"],
        model=from_fields(Stage1Config, dict(model)),
        stage1=stage1_training,
        loss=stage1.loss,
        kl_weight=stage1.kl_weight,
        reference=reference,
        gmm=from_fields(GMMOptions, dict(gmm)),
        # an empty hidden list means the layout's widths, as null does
        two_stage=from_fields(TwoStageOptions, dict(stage2), train=stage2_training,
                              hidden=stage2.hidden or None),  # fmt: skip
        config_hash=content_key(**resolved),
    )
