"""Grid files: defaults, --set, expansion, and each bad input's one-line error."""

from __future__ import annotations

import pytest

from sweep.config import GridConfig, resolved_yaml
from sweep.cost import estimate, slots
from sweep.grid_file import load_grid
from sweep.trials import expand, settings
from tests.helpers.commands import assert_one_line_error, ray_started, run_command
from tests.helpers.data import ROOT
from vae_sweep.errors import InputError

GRIDS = ROOT / "grids"


def _grid(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_defaults_live_in_the_schema_and_files_override_them(tmp_path):
    config = load_grid(_grid(tmp_path, "name: t\nstage1: {epochs: 3}\n"))
    assert config.stage1.epochs == 3 and config.stage1.lr == 1e-4  # default kept
    assert config.model.encoder_channels == (128, 256, 512, 1024)
    assert config.grid == {"n_train": [None], "criterion": ["all"], "seed": [0]}
    assert config.priors == ("gaussian", "gmm", "two_stage", "recon")


def test_set_overrides_file_values_and_grid_axes(tmp_path):
    path = _grid(tmp_path, "name: t\nstage1: {epochs: 3}\n")
    config = load_grid(path, ["stage1.epochs=5", "grid.stage1.lr=[1e-3, 1e-4]",
                              "grid.n_train=[10, 20]", "priors=[gmm]"])  # fmt: skip
    assert config.stage1.epochs == 5
    assert config.grid["stage1.lr"] == [1e-3, 1e-4]
    assert config.priors == ("gmm",)
    trials = expand(config, total=100)
    assert len(trials) == 4
    lrs = {settings(config, t, device="cpu").stage1.lr for t in trials}
    assert lrs == {1e-3, 1e-4}


def test_whole_set_trials_collapse_whatever_the_criterion(tmp_path):
    path = _grid(tmp_path, "name: t\ngrid: {n_train: [null, 50, 100], "
                 "criterion: [random, lowest_recon], seed: [0, 1]}\n")  # fmt: skip
    trials = expand(load_grid(path), total=100)
    # 50: 2 criteria x 2 seeds; the whole set (null and 100 alike): 1 x 2 seeds
    assert len(trials) == 6
    whole = [t for t in trials if t["n_train"] == 100]
    assert {t["criterion"] for t in whole} == {"all"} and len(whole) == 2


def test_config_hash_names_every_setting(tmp_path):
    config = load_grid(_grid(tmp_path, "name: t\ngrid: {stage1.lr: [1e-3, 1e-4]}\n"))
    a, b = (settings(config, t, device="cpu") for t in expand(config, total=10))
    assert a.config_hash != b.config_hash
    assert settings(config, expand(config, total=10)[0]).config_hash == a.config_hash


def test_resolved_grid_round_trips(tmp_path):
    config = load_grid(_grid(tmp_path, "name: t\ngrid: {seed: [0, 1]}\n"))
    again = load_grid(_grid(tmp_path, resolved_yaml(config)))
    assert again == config


def test_cost_estimate_counts_images_and_schedules_waves(tmp_path):
    # slots: (1.5 GPUs - 0.5 for the FID replica) / 0.5 per trial = 2 at once
    path = _grid(tmp_path, "name: t\ndata: {train_limit: 100, test_limit: 10}\n"
                 "grid: {n_train: [10, 20]}\nstage1: {epochs: 2}\n"
                 "fid: {samples: 5}\npriors: [gaussian]\nresources: {gpu: 0.5}\n"
                 "fid_service: {gpu: 0.5}\nestimate: {train_images_per_s: 10,"
                 " fid_images_per_s: 5}\n")  # fmt: skip
    config = load_grid(path)
    trials = expand(config)
    layout = slots(config, len(trials), gpus=1.5)
    assert layout.count == 2
    cost = estimate(config, trials, layout)
    # first the x_test statistics: 10 images / 5 per s = 2 s; then trial n=10:
    # 20 images / 10 + 5 FID images / 5 = 3 s, beside n=20: 4 + 1 = 5 s
    assert cost["stage1_images"] == (10 + 20) * 2 and cost["fid_images"] == 10 + 2 * 5
    assert cost["wall_hours"] * 3600 == pytest.approx(2 + 5)
    assert cost["gpu_hours"]["trials"] * 3600 == pytest.approx((3 + 5) * 0.5)
    assert cost["gpu_hours"]["fid_service"] * 3600 == pytest.approx(7 * 0.5)
    assert cost["gpu_hours_total"] * 3600 == pytest.approx(4 + 3.5)
    # one slot: the trials run one after the other
    single = estimate(config, trials, slots(config, len(trials), gpus=1.0))
    assert single["waves"] == 2 and single["wall_hours"] * 3600 == pytest.approx(10)


def test_cost_estimate_of_a_step_budget_counts_steps_of_a_batch(tmp_path):
    # 6 steps of batches of 4 whatever n_train: 24 images each; stage 2 twice the
    # steps (12 of 4 vectors); one reference VAE per seed (2 seeds), each a slot
    path = _grid(tmp_path, "name: t\ndata: {train_limit: 100, test_limit: 10}\n"
                 "grid: {n_train: [10, 50], criterion: [lowest_recon],"
                 " seed: [0, 1]}\n"
                 "stage1: {steps: 6, round_steps: 2, batch_size: 4}\n"
                 "stage2: {batch_size: 4}\n"
                 "fid: {samples: 5}\npriors: [gaussian, two_stage]\n"
                 "estimate: {train_images_per_s: 10, fid_images_per_s: 5,"
                 " stage2_vectors_per_s: 12}\n")  # fmt: skip
    config = load_grid(path)
    trials = expand(config)
    assert len(trials) == 4
    cost = estimate(config, trials, slots(config, len(trials), cpus=4))
    # 4 trials x 24 images, and 2 reference VAEs x 24 (the pool, 6 steps of 4)
    assert cost["stage1_images"] == 4 * 24 + 2 * 24
    assert cost["stage2_vectors"] == 4 * 12 * 4
    assert cost["reference_hours"] * 3600 == pytest.approx(2 * 24 / 10)


def test_cost_estimate_waits_for_the_reference_vae(tmp_path):
    path = _grid(tmp_path, "name: t\ndata: {train_limit: 100, test_limit: 10}\n"
                 "grid: {n_train: [10], criterion: [lowest_recon, random]}\n"
                 "stage1: {epochs: 2}\nselection: {reference_epochs: 1}\n"
                 "fid: {samples: 5}\npriors: [gaussian]\nresources: {gpu: 0.5}\n"
                 "fid_service: {gpu: 0.5}\nestimate: {train_images_per_s: 10,"
                 " fid_images_per_s: 5}\n")  # fmt: skip
    config = load_grid(path)
    cost = estimate(config, expand(config), slots(config, 2, gpus=1.5))
    # after the x_test statistics (2 s) the reference VAE (100 images / 10 = 10 s)
    # holds a slot; random runs beside it (2-5 s); lowest_recon starts when its
    # scores exist (12-15 s)
    assert cost["reference_hours"] * 3600 == pytest.approx(10)
    assert cost["wall_hours"] * 3600 == pytest.approx(15)
    assert cost["gpu_hours"]["prerequisites"] * 3600 == pytest.approx(10 * 0.5)
    assert cost["gpu_hours_total"] * 3600 == pytest.approx(3 + 15 * 0.5 + 5)
    assert cost["stage1_images"] == 2 * 10 * 2 + 100


def test_cost_estimate_of_a_cpu_grid_counts_the_cores_its_work_shares(tmp_path):
    text = ("name: t\ndata: {train_limit: 100, test_limit: 10}\n"
            "grid: {n_train: [10, 20]}\nstage1: {epochs: 2}\n"
            "fid: {samples: 20}\npriors: [gaussian]\nresources: {cpu: 0.5}\n"
            "fid_service: {cpu: 1, threads: 2}\nestimate: {train_images_per_s: 10,"
            " fid_images_per_s: 5}\n")  # fmt: skip
    config = load_grid(_grid(tmp_path, text))
    trials = expand(config)
    layout = slots(config, len(trials), cpus=2)
    assert layout.count == 2 and layout.cpus == 2  # (2 - 1 for the replica) / 0.5
    cost = estimate(config, trials, layout)
    # by the slots: the x_test statistics 10 / 5 = 2 s, then n=10 (20 images / 10 +
    # 20 FID images / 5 = 6 s) beside n=20 (4 + 4 = 8 s): done at 10 s. By the
    # cores: training 2 + 4 = 6 s on one thread, the network (10 + 2 x 20 images)
    # / 5 = 10 s on two: 26 CPU-seconds on 2 CPUs, 13 s
    assert cost["core_hours"] * 3600 == pytest.approx(26)
    assert cost["wall_hours"] * 3600 == pytest.approx(13)
    # a replica on one thread: 16 CPU-seconds, 8 s on 2 CPUs; the slots' 10 s stand
    one = load_grid(_grid(tmp_path, text.replace("threads: 2", "threads: 1")))
    cost = estimate(one, trials, slots(one, len(trials), cpus=2))
    assert cost["core_hours"] * 3600 == pytest.approx(16)
    assert cost["wall_hours"] * 3600 == pytest.approx(10)


def test_cost_cluster_size_is_checked(tmp_path):
    config = load_grid(_grid(tmp_path, "name: t\nresources: {gpu: 0.5}\n"
                             "fid_service: {gpu: 1}\n"))  # fmt: skip
    with pytest.raises(InputError, match="--gpus 1 leaves no room for a trial"):
        slots(config, 4, gpus=1)
    assert slots(config, 4).gpus == 3  # 4 x 0.5 + 1: every trial at once
    cpu = load_grid(_grid(tmp_path, "name: c\n"))
    with pytest.raises(InputError, match="ask for no GPU"):
        slots(cpu, 4, gpus=2)
    assert slots(cpu, 4, cpus=5).count == 4  # (5 - 1 for the FID replica) / 1


BAD_GRIDS = [
    (
        "name: t\nstage1: {epochs: 0}\n",
        "stage1.epochs = 0: Input should be greater than 0",
    ),
    (
        "name: t\nscheduler: {name: pbt}\n",
        "scheduler.name = 'pbt': Input should be 'none'",
    ),
    ("name: t\nstage1: {epoch: 3}\n", "unknown key stage1.epoch"),
    ("stage1: {epochs: 3}\n", "name is required"),
    (
        "name: t\ngrid: {criterion: [nearest]}\n",
        "grid.criterion = 'nearest': choose from all",
    ),
    ("name: t\ngrid: {n_train: [0]}\n", "grid.n_train = 0: a positive integer"),
    ("name: t\ngrid: {stage9.lr: [1]}\n", "grid.stage9.lr: unknown axis"),
    (
        "name: t\ngrid: {stage1.lr: [-1]}\n",
        "grid.stage1.lr = -1: Input should be greater",
    ),
    ("name: t\ngrid: {seed: []}\n", "grid.seed = []: a non-empty list"),
    ("name: t\npriors: [flow]\n", "priors.0 = 'flow': Input should be 'gaussian'"),
    ("name: t\nresources: {gpu: -0.5}\n", "resources.gpu = -0.5"),
    ("name: 't/../x'\n", "name = 't/../x': String should match pattern"),
    ("name: t\nscheduler: {name: asha}\n", "set eval.every to a number of epochs > 0"),
    ("name: t\nkind: gan\n", "kind = 'gan': Input should be 'vae'"),
    ("name: t\nstage1: [1, 2\n", "not valid YAML at line"),
    ("- just\n- a list\n", "a grid file is a mapping of keys, got list"),
]


@pytest.mark.parametrize("text, needle", BAD_GRIDS)
def test_bad_grid_is_one_clear_line(tmp_path, text, needle):
    path = _grid(tmp_path, text)
    with pytest.raises(InputError) as error:
        load_grid(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and needle in message


def test_too_large_n_train_is_refused_before_anything_runs(tmp_path):
    config = load_grid(_grid(tmp_path, "name: t\ngrid: {n_train: [200]}\n"))
    with pytest.raises(
        InputError,
        match=r"grid.n_train = 200 is larger than the training set \(100 images\)",
    ):
        expand(config, total=100)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "stage1.epochs=0"], "stage1.epochs = 0"),
        (["--set", "nonsense"], "expected key.path=value"),
        (["--set", "grid.criterion=[nearest]"], "choose from all, random"),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, needle):
    storage = tmp_path / "results"
    result = run_command("sweep.run", str(GRIDS / "smoke.yaml"),
                         "--set", f"storage={storage}", *args)  # fmt: skip
    assert_one_line_error(result, needle)
    assert not storage.exists() and not ray_started()


@pytest.mark.parametrize("storage, needle", [
    ("{tmp}/afile/results", "afile is a file, not a folder"),
    ("/proc/vae-sweep-results", "cannot create folders in /proc"),
])  # fmt: skip
def test_storage_that_cannot_be_created_is_one_line(tmp_path, storage, needle):
    (tmp_path / "afile").write_text("x")
    storage = storage.format(tmp=tmp_path)
    result = run_command("sweep.run", str(GRIDS / "smoke.yaml"),
                         "--set", f"storage={storage}")  # fmt: skip
    assert_one_line_error(result, needle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_cli_missing_grid_file_and_data(tmp_path):
    assert_one_line_error(run_command("sweep.run", str(tmp_path / "none.yaml")),
                          "none.yaml: no such grid file")  # fmt: skip
    storage = tmp_path / "results"
    result = run_command("sweep.run", str(GRIDS / "smoke.yaml"),
                         "--set", f"storage={storage}",
                         "--set", f"data.root={tmp_path}",
                         "--set", "data.download=false")  # fmt: skip
    assert_one_line_error(result, "no CIFAR-10 train split found")
    assert not storage.exists()


def test_dry_run_lists_trials_and_cost_without_ray(tmp_path):
    result = run_command("sweep.run", str(GRIDS / "smoke.yaml"), "--dry-run",
                         "--set", f"storage={tmp_path}", check_rc=0)  # fmt: skip
    assert "4 trials" in result.stdout and "wall: about" in result.stdout
    assert "n_train=2000,criterion=lowest_recon,seed=0" in result.stdout
    assert list(tmp_path.iterdir()) == [] and not ray_started()
    # the smoke grid's 100 samples per prior: FID biased, said in one line
    assert result.stderr.strip() == (
        "warning: fid.samples = 100 is below the 2048 feature dimensions: FID is "
        "biased upward and comparable only at equal sample counts (KID is not biased)"
    )
    full = run_command("sweep.run", str(GRIDS / "table5.yaml"), "--dry-run",
                       "--set", f"storage={tmp_path}", check_rc=0)  # fmt: skip
    assert "warning" not in full.stderr  # 10,000 samples
    # what a lost FID node does: table5's two GPU replicas, then the standby
    assert ("if the FID node is lost (on a cluster): calls go to another replica at "
            "once; while none answers, the standby replica on the head node's CPU "
            "takes the calls (slower) until Ray restarts the lost replica where a "
            "GPU is free") in full.stdout  # fmt: skip
    off = run_command("sweep.run", str(GRIDS / "smoke.yaml"), "--dry-run",
                      "--set", f"storage={tmp_path}",
                      "--set", "fid_service.standby=false", check_rc=0)  # fmt: skip
    assert ("calls wait (fid_service.standby is off) until Ray restarts the replica "
            "where CPUs are free, for at most fid_service.timeout_s = 3600 s"
            ) in off.stdout  # fmt: skip


@pytest.mark.parametrize("grid", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_are_valid_and_say_how_to_run_them(grid):
    config = load_grid(grid)
    assert isinstance(config, GridConfig) and expand(config)
    assert grid.read_text().startswith(f"# python -m sweep.run grids/{grid.name}")


def test_list_keys_prints_the_schema_without_a_grid():
    result = run_command("sweep.run", "--list-keys", check_rc=0)
    lines = result.stdout.splitlines()
    assert 'stage2.layout: choice = "dai_wipf"  (dai_wipf, table4)' in lines
    assert "fid_service.threads: int | null = null  (> 0)" in lines
    assert "scheduler.reduction_factor: float = 3.0  (> 1)" in lines
    # one line per leaf key of the schema, none left out
    keys = [line.split(":")[0] for line in lines]
    assert keys == _leaves(GridConfig.model_json_schema())
    missing = run_command("sweep.run")
    assert_one_line_error(missing, "a grid file is needed (or --list-keys)")


def _leaves(schema: dict) -> list[str]:
    """The leaf keys of the grid schema, from pydantic's JSON schema (another way
    to the same list than schema_lines' walk over the fields)."""
    definitions = schema.get("$defs", {})

    def walk(node, prefix):
        keys = []
        for name, prop in node["properties"].items():
            ref = prop.get("$ref") or (prop.get("allOf") or [{}])[0].get("$ref")
            optional = [p["$ref"] for p in prop.get("anyOf", []) if "$ref" in p]
            if ref:
                keys += walk(definitions[ref.split("/")[-1]], f"{prefix}{name}.")
            elif optional:  # a section that is off unless given: itself, then its keys
                keys.append(prefix + name)
                keys += walk(definitions[optional[0].split("/")[-1]],
                             f"{prefix}{name}.")  # fmt: skip
            else:
                keys.append(prefix + name)
        return keys

    return walk(schema, "")


def test_n_train_takes_fractions_of_the_pool(tmp_path):
    """Retention ratios as an axis: 0.5 of a 10,000-image pool is 5,000 images; a
    fraction and a count that name the same subset size are one trial; 1.0 is the
    whole pool (criterion all)."""
    config = load_grid(_grid(tmp_path, "name: t\ndata: {train_limit: 10000}\n"
                             "grid: {n_train: [0.5, 0.25, 2500, 1.0],"
                             " criterion: [random]}\n"))  # fmt: skip
    assert [t["n_train"] for t in expand(config)] == [5000, 2500, 10000]
    assert expand(config)[-1]["criterion"] == "all"
    for bad in ("1.5", "0.0", "-0.5"):
        with pytest.raises(InputError, match="a fraction of the pool in"):
            load_grid(_grid(tmp_path, f"name: t\ngrid: {{n_train: [{bad}]}}\n"))


def test_checkpoints_and_graces_count_rounds_of_the_budgets_unit():
    from sweep.budget import checkpoint_rounds, in_units

    def grid(**sections):
        return GridConfig.model_validate({"name": "t", **sections})

    assert checkpoint_rounds(grid()) == 10  # null: 10 rounds, epochs here
    assert checkpoint_rounds(grid(checkpoint_every=3)) == 3
    steps = {"stage1": {"steps": 1000, "round_steps": 50}}
    assert checkpoint_rounds(grid(**steps)) == 10
    assert in_units(grid(**steps), None) == 500  # 10 rounds of 50 steps
    assert checkpoint_rounds(grid(**steps, checkpoint_every=200)) == 4

