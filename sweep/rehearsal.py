"""`--rehearse`: a grid at its real size, with everything that only costs time shrunk.

    python -m sweep.run grids/table5.yaml --rehearse

A rehearsal keeps what breaks at scale: the full data (all 50,000 / 10,000 images, or
the grid's own limits), every axis value (sizes, criteria, seeds, learning rates),
every prior, the scheduler, the FID replicas and the E1/E2 sizes and tile counts. It
shrinks what only costs time: a tiny model, one epoch per stage (and for the
reference VAE), an intermediate FID every epoch from 50 samples with a grace period of
one epoch (so a scheduler really stops trials), 100 samples per final FID, two E1/E2
repetitions, and the stand-in feature network instead of Inception. GPU requests
become CPU shares of the local machine. Its FIDs say nothing about the study; its
point is that every trial runs to `ok` (or `stopped`) on the real data in minutes.
The results go to `<storage>/<name>-rehearsal`.
"""

from __future__ import annotations

from fid.standin import STANDIN_SPEC
from sweep.budget import budget_unit
from sweep.config import GridConfig
from sweep.grid_file import check_consistency

TINY_MODEL = {"latent_dim": 4, "encoder_channels": [4, 4, 4, 4],
              "decoder_channels": [4, 4]}  # fmt: skip
TINY_STAGE2 = {"latent_dim": 4, "hidden": [16, 16]}
# a budget of one epoch, or under a step budget two steps in rounds of one (every
# setting counted in steps then stays a multiple of a round)
ONE_EPOCH = {"epochs": 1, "steps": None}
TWO_STEPS = {"epochs": None, "steps": 2, "round_steps": 1}
REHEARSAL_FID_SAMPLES = 100
REHEARSAL_EVAL_SAMPLES = 50
REHEARSAL_REPETITIONS = 2
# CPU shares on the local machine: a few trials at once beside the FID replicas
TRIAL_CPU = 0.5
FID_REPLICA_CPU = 0.25

# axes whose values would undo the shrink: rehearsed at the rehearsal's value
SHRUNK_AXES = {
    "stage1.epochs": 1,
    "stage2.epochs": 1,
    "stage1.steps": 2,
    "stage2.steps": 2,
    "selection.reference_epochs": 1,
}


def rehearsal(config: GridConfig, source: str) -> GridConfig:
    """The rehearsal of `config`: same data and axes, tiny and quick."""
    raw = config.model_dump(mode="json")
    raw["name"] = f"{config.name}-rehearsal"
    raw["model"] = dict(TINY_MODEL)
    steps = budget_unit(config) == "step"
    raw["stage1"].update(TWO_STEPS if steps else ONE_EPOCH, batch_size=100,
                         precision="fp32", channels_last=False,
                         compile=False)  # fmt: skip
    stage2_steps = steps or budget_unit(config, "stage2") == "step"
    raw["stage2"].update(TINY_STAGE2, **(TWO_STEPS if stage2_steps else ONE_EPOCH))
    raw["selection"]["reference_epochs"] = 1
    raw["fid"].update(samples=REHEARSAL_FID_SAMPLES, extractor=STANDIN_SPEC,
                      network=None, batch_size=None)  # fmt: skip
    if config.eval.every:
        raw["eval"].update(every=1, samples=REHEARSAL_EVAL_SAMPLES)
    raw["scheduler"]["grace_period"] = 1
    raw["resources"] = {"gpu": 0.0, "cpu": TRIAL_CPU}
    raw["fid_service"].update(gpu=0.0, cpu=FID_REPLICA_CPU)
    raw["checkpoint_every"] = 1
    for section in ("e1", "e2"):
        raw[section]["repetitions"] = min(
            raw[section]["repetitions"], REHEARSAL_REPETITIONS
        )
    grid = {}
    for axis, values in raw["grid"].items():
        if axis.startswith("model."):
            continue  # the tiny model replaces every width axis
        grid[axis] = [SHRUNK_AXES[axis]] if axis in SHRUNK_AXES else values
    raw["grid"] = grid
    rehearsed = GridConfig.model_validate(raw)
    check_consistency(rehearsed, f"{source} (rehearsal)")
    return rehearsed


BANNER = (
    "rehearsal: the real data and axes with a tiny model, 1 epoch per stage and the "
    "stand-in feature network; its FIDs are not comparable with any real run"
)
