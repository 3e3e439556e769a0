"""Every option of every command, given a bad value the way a careless user would:
one line naming the flag, exit code 2, no traceback, and nothing written.

Each command has a table. `test_every_option_is_in_its_table` fails when an option
is added to a command without a bad-input case (flags that take no value and have no
impossible combination are listed, with the reason, in NO_BAD_VALUE).

The commands run in-process (`run_cli(main, argv)`, tests/commands.py): every case
fails in its checks, before data loads or Ray starts, so the whole table takes
seconds.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests.helpers.commands import assert_one_line_error, run_command, run_main
from tests.helpers.data import ROOT, random_images
from vae_sweep.errors import InputError

STUDY = ROOT / "reports" / "study_cpu" / "sweep"  # a real sweep, read only


def _fid():
    from fid.__main__ import _parser, main

    return _parser(), main


def _vae():
    from vae.train import main
    from vae.train_options import parser

    return parser("x"), main


def _e1():
    from experiments.fid_repeated import _parser, main

    return _parser(), main


def _e2():
    from experiments.fid_scrambled import _parser, main

    return _parser(), main


def _analysis():
    from experiments.analysis import _parser, main

    return _parser(), main


def _early_stopping():
    from experiments.early_stopping import _parser, main

    return _parser(), main


def _sweep():
    from sweep.run import _parser, main

    return _parser(), main


COMMANDS = {
    "fid": _fid,
    "vae.train": _vae,
    "fid_repeated": _e1,
    "fid_scrambled": _e2,
    "analysis": _analysis,
    "early_stopping": _early_stopping,
    "sweep.run": _sweep,
}

# {a}: a folder of 3 images; {npz}: a file that is not statistics; {file}: a plain
# file; {out}: a fresh path; {csv}: a CSV without the needed columns; {grid}: the
# smoke grid; {st}: fresh storage; {study}: a real sweep folder (read only)
FID = [
    (["{a}"], "the following arguments are required: PATH"),
    (["/no/such/dir", "{a}"], "/no/such/dir: no such file"),
    (["{a}", "{a}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["{a}", "{a}", "--batch-size", "x"], "--batch-size: invalid int value"),
    (["{a}", "{a}", "--device", "cuda:99"], "--device cuda:99: "),
    (["{a}", "{a}", "--device", "tpu"], "--device tpu: "),
    (["{a}", "{a}", "--limit", "1"], "--limit must be at least 2"),
    (["{a}", "{a}", "--limit", "-5"], "--limit must be at least 2"),
    (["{a}", "{a}", "--network", "/no/net.pt"], "--network /no/net.pt: no such file"),
    (["{a}", "{a}", "--network", "{a}"], "no such file"),
    (["{a}", "{a}", "--network-sha1", "abc"], "--network-sha1 abc: not a sha1"),
    (["{a}", "{a}", "--network-sha1", "0" * 40], "expected 0000"),
    (["{a}", "{a}", "--cache-dir", "{file}"], "--cache-dir {file}: exists and is not"),
    (["{a}", "{a}", "--cache-dir", "{file}/c"], "is a file, not a folder"),
    (["{a}", "{a}", "--seed", "x"], "--seed: expected an integer, got 'x'"),
    (["{a}", "{a}", "--seed", "-1"], "--seed: expected an integer from 0 to"),
    (["", "{a}"], "PATH: expected a value, got an empty string"),
    (["{a}", "{a}", "--network", ""], "--network: expected a value"),
    (["{a}", "{a}", "--network", "/proc/self/mem"], "cannot read the FID network"),
    (["{nan}", "{a}"], "mu or sigma holds NaN or infinity"),
    (["{neg}", "{a}"], "sigma is not a covariance"),
    (["--save-stats", "{a}", "out.txt"], "must end in .npz"),
    (["--save-stats", "{a}", "{file}/o.npz"], "exists and is not a folder"),
    (["--save-stats", "{a}", "{a}"], "must end in .npz"),
    (["--save-stats", "{a}", "/proc/o.npz"], "/proc/o.npz: its folder"),
    (["--save-stats", "--kid", "{a}", "{out}.npz"], "drop --save-stats"),
    (["--kid", "{a}", "{npz}"], "--kid needs images, not statistics"),
    (["{npz}", "{a}"], "junk.npz: not a statistics file"),
    (["--fid-inf", "{npz}", "{a}"], "--fid-inf needs images"),
    (["--fid-inf", "{a}", "{a}"], "needs at least 10,000 (its 1/n law"),
    (["--prdc", "{a}", "{a}"], "--prdc: {a} gives 3 images; density and coverage"),
    (["--prdc", "{npz}", "{a}"], "--prdc needs images"),
    (["{a}", "{a}", "--memorization", "/no/train"], "--memorization /no/train: no"),
    (["{a}", "{npz}", "--memorization", "{a}"], "--memorization needs images"),
    (["{a}", "{a}", "--bogus"], "unrecognized arguments: --bogus"),
]

VAE = [
    ([], "the following arguments are required: --out"),
    (["--out", "{file}"], "--out {file}: exists and is not a folder"),
    (["--out", "{file}/x"], "is a file, not a folder"),
    (["--out", "/proc/vae-sweep-x"], "cannot"),
    (["--out", "{out}", "--data", "/no/data"], "--data /no/data: no such folder"),
    (["--out", "{out}", "--criterion", "random", "--n", "0"], "--n must be at least 1"),
    (["--out", "{out}", "--n", "x"], "--n: invalid int value"),
    (
        ["--out", "{out}", "--criterion", "random", "--n", "50001"],
        "--n must be at most 50000 (the CIFAR-10 training set), got 50001",
    ),
    (["--out", "{out}", "--test-limit", "10001"], "--test-limit must be at most 10000"),
    (["--out", "{out}", "--n", "100"], "--criterion all takes the whole training"),
    (["--out", "{out}", "--criterion", "nearest"], "--criterion nearest: unknown"),
    (["--out", "{out}", "--epochs", "0"], "--epochs must be at least 1"),
    (["--out", "{out}", "--epochs", "1.5"], "--epochs: invalid int value"),
    (["--out", "{out}", "--priors", "vamp"], "--priors: unknown prior 'vamp'"),
    (["--out", "{out}", "--priors", ","], "--priors: unknown prior (none given)"),
    (["--out", "{out}", "--fid-samples", "-1"], "--fid-samples must be at least 0"),
    (["--out", "{out}", "--seed", "x"], "--seed: expected an integer, got 'x'"),
    (["--out", "{out}", "--seed", "-1"], "--seed: expected an integer from 0"),
    (["--out", "{out}", "--seed", "99999999999999999999"], "--seed: expected an"),
    (["--out", ""], "--out: expected a value, got an empty string"),
    (["--out", "{out}", "--data", ""], "--data: expected a value"),
    (["--out", "{out}", "--fid-samples", "1"], "--fid-samples must be 0 (no FID)"),
    (["--out", "{out}", "--preview", "99999"], "--preview must be at most 1024"),
    (["--out", "{out}", "--fid-samples", "0", "--cache-dir", "/proc/x"], "--cache-dir"),
    (["--out", "{out}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--out", "{out}", "--lr", "0"], "--lr must be above 0"),
    (["--out", "{out}", "--lr", "nan"], "--lr: expected a finite number"),
    (["--out", "{out}", "--lr-patience", "-1"], "--lr-patience must be at least 0"),
    (["--out", "{out}", "--latent-dim", "0"], "--latent-dim must be at least 1"),
    (["--out", "{out}", "--encoder-channels", "8,x"], "--encoder-channels: expected"),
    (["--out", "{out}", "--encoder-channels", "0,8"], "--encoder-channels needs posit"),
    (["--out", "{out}", "--encoder-channels", "8,8,8,8,8,8"], "--encoder-channels (8,"),
    (["--out", "{out}", "--decoder-channels", "8"], "--decoder-channels (8,): the de"),
    (["--out", "{out}", "--loss", "l1"], "--loss: invalid choice: 'l1'"),
    (["--out", "{out}", "--kl-weight", "-1"], "--kl-weight must be at least 0"),
    (["--out", "{out}", "--kl-weight", "inf"], "--kl-weight: expected a finite"),
    (["--out", "{out}", "--stage2-epochs", "0"], "--stage2-epochs must be at least 1"),
    (["--out", "{out}", "--steps", "0"], "--steps must be at least 1"),
    (["--out", "{out}", "--epochs", "5", "--steps", "9"], "--epochs and --steps: 5"),
    (["--out", "{out}", "--round-steps", "0"], "--round-steps must be at least 1"),
    (["--out", "{out}", "--steps", "9", "--lr-patience", "5"],
     "--lr-patience = 5 is no multiple of --round-steps = 100"),
    (["--out", "{out}", "--lr-schedule", "cosine"], "--lr-schedule: invalid choice"),
    (["--out", "{out}", "--lr-schedule", "step"], "--lr-step goes with --lr-schedule"),
    (["--out", "{out}", "--lr-step", "0"], "--lr-step must be at least 1"),
    (["--out", "{out}", "--stage2-steps", "0"], "--stage2-steps must be at least 1"),
    (["--out", "{out}", "--stage2-epochs", "3", "--stage2-steps", "3"],
     "--stage2-epochs and --stage2-steps: 3 and 3"),
    (["--out", "{out}", "--stage2-lr-schedule", "x"], "--stage2-lr-schedule: invalid"),
    (["--out", "{out}", "--stage2-lr-schedule", "step"],
     "--stage2-lr-step goes with --stage2-lr-schedule step"),
    (["--out", "{out}", "--stage2-lr-step", "0"], "--stage2-lr-step must be at least"),
    (["--out", "{out}", "--stage2-latent-dim", "0"], "--stage2-latent-dim must be"),
    (["--out", "{out}", "--stage2-layout", "big"], "--stage2-layout: invalid choice"),
    (["--out", "{out}", "--stage2-hidden", "0"], "--stage2-hidden needs positive"),
    (["--out", "{out}", "--stage2-inputs", "x"], "--stage2-inputs: invalid choice"),
    (["--out", "{out}", "--gmm-reg-covar", "-1"], "--gmm-reg-covar must be at least"),
    (["--out", "{out}", "--gmm-max-iter", "0"], "--gmm-max-iter must be at least 1"),
    (["--out", "{out}", "--gmm-n-init", "0"], "--gmm-n-init must be at least 1"),
    (["--out", "{out}", "--reference-epochs", "0"], "--reference-epochs must be at"),
    (["--out", "{out}", "--mahalanobis-space", "x"], "--mahalanobis-space: invalid"),
    (["--out", "{out}", "--mahalanobis-ridge", "-1"], "--mahalanobis-ridge must be"),
    (["--out", "{out}", "--mahalanobis-ridge", "0.5"], "--mahalanobis-ridge 0.5: a ri"),
    (["--out", "{out}", "--mahalanobis-covariance", "ridge"], "--mahalanobis-ridge 0"),
    (["--out", "{out}", "--mahalanobis-covariance", "lw"], "--mahalanobis-covarian"),
    (["--out", "{out}", "--selection-space", "dino"], "--selection-space: invalid"),
    (["--out", "{out}", "--criterion", "k_centre"], "--criterion k_centre: unknown"),
    (["--out", "{out}", "--device", "cuda:99"], "--device cuda:99: "),
    (["--out", "{out}", "--precision", "fp8"], "--precision: invalid choice"),
    (["--out", "{out}", "--test-limit", "1"], "--test-limit must be at least 2"),
    (["--out", "{out}", "--fid-batch-size", "0"], "--fid-batch-size must be at least"),
    (["--out", "{out}", "--network", "/no/net.pt"], "--network /no/net.pt: no such"),
    (["--out", "{out}", "--network-sha1", "12"], "--network-sha1 12: not a sha1"),
    (["--out", "{out}", "--cache-dir", "{file}"], "--cache-dir {file}: exists and"),
    (["--out", "{out}", "--preview", "0"], "--preview must be at least 1"),
    (["--out", "{out}", "--resume"], "--resume: nothing to resume"),
]

E_COMMON = [
    (["--out", "{file}"], "--out {file}: exists and is not a folder"),
    (["--out", "{file}/e"], "is a file, not a folder"),
    (["--data", "/no/data"], "--data /no/data: no such folder"),
    (["--repetitions", "0"], "--repetitions must be at least 1"),
    (["--seed", "x"], "--seed: expected an integer, got 'x'"),
    (["--seed", "-1"], "--seed: expected an integer from 0"),
    (["--out", ""], "--out: expected a value, got an empty string"),
    (["--test-limit", "1"], "--test-limit must be at least 2"),
    (["--test-limit", "10001"], "--test-limit must be at most 10000 (the CIFAR-10 te"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--device", "tpu"], "--device tpu: "),
    (["--network", "/no/net.pt"], "--network /no/net.pt: no such file"),
    (["--network-sha1", "x"], "--network-sha1 x: not a sha1"),
    (["--cache-dir", "{file}"], "--cache-dir {file}: exists and is not a folder"),
    (["--published", "/no/pub.csv"], "--published /no/pub.csv: cannot read it"),
    (["--published", "{csv}"], "needs the columns"),
]

E1 = [
    *E_COMMON,
    (["--sizes", "x"], "--sizes: expected comma-separated integers"),
    (["--sizes", ","], "--sizes: expected at least one integer"),
    (["--sizes", "0,10"], "--sizes needs positive integers"),
    (["--sizes", "20", "--count", "10"], "--sizes: 20 distinct images is more than"),
    (["--count", "1"], "--count must be at least 2"),
    (["--sizes", "50001", "--count", "60000"], "more than the CIFAR-10 training set"),
    (["--sizes", "4,8,4"], "--sizes: 4 is given twice"),
    (["--count", "x"], "--count: invalid int value"),
    (["--total", "1"], "--count must be at least 2"),  # its old name
]

E2 = [
    *E_COMMON,
    (["--tiles", "3"], "--tiles: 3"),
    (["--tiles", "2048"], "--tiles: 2048"),
    (["--tiles", "x"], "--tiles: expected comma-separated integers"),
    (["--count", "0"], "--count must be at least 1"),
    (["--count", "1"], "--count must be at least 2"),
    (["--count", "50001"], "--count must be at most 50000 (the CIFAR-10 training set"),
    (["--tiles", "4,4"], "--tiles: 4 is given twice"),
]

ANALYSIS = [
    ([], "the following arguments are required: RESULTS_DIR"),
    (["/no/sweep"], "/no/sweep"),
    (["{a}", "--out", "{out}"], "{a}: "),
    (["{file}"], "{file}: no such folder (a sweep folder is wanted)"),
    (["{study}", "{study}", "--out", "{out}"], "the same sweep folder is given twice"),
    (["{study}", "--out", ""], "--out: expected a value"),
    (["{study}", "--out", "{file}"], "--out {file}: exists and is not a folder"),
    (["{study}", "--out", "{out}", "--test", "z"], "--test: invalid choice: 'z'"),
    (["{study}", "--out", "{out}", "--metric", "ssim"], "--metric: invalid choice"),
    (["{study}", "--out", "{out}", "--level", "1.5"], "--level must be between 0"),
    (["{study}", "--out", "{out}", "--level", "nan"], "--level: expected a finite"),
]

EARLY_STOPPING = [
    ([], "the following arguments are required: RUN_DIR"),
    (["/no/sweep"], "/no/sweep"),
    (["{study}", "{study}", "--out", "{out}"], "exactly one exhaustive run"),
    (["{study}", "--out", "{file}"], "--out {file}: exists and is not a folder"),
    (["{study}", "--out", "{out}", "--prior", "vamp"], "--prior vamp: not among"),
    (["{study}", "--out", "{out}", "--top-k", "0"], "--top-k must be at least 1"),
    (["{study}", "--out", "{out}", "--grace", "0"], "--grace needs positive integers"),
    (["{study}", "--out", "{out}", "--grace", "x"], "--grace: expected comma-sep"),
    (["{study}", "--out", "{out}", "--reduction", "1"], "--reduction needs numbers ab"),
    (["{study}", "--out", "{out}", "--reduction", "x"], "--reduction: expected comma"),
    (["{study}", "--out", "{out}", "--replay", "--grace", "x"], "--grace: expected"),
    (["{study}", "--out", "{out}", "--grace", "2"], "--grace sets what --replay"),
    (["{study}", "--out", "{out}", "--reduction", "2"], "--reduction sets what"),
    (["{study}", "--out", "{out}", "--replay", "--grace", "999"], "--grace 999 is"),
    (
        ["{study}", "--out", "{out}", "--replay", "--grace", "1,1"],
        "--grace: 1 is given",
    ),
    (["{study}", "--out", "{out}", "--prior", ""], "--prior: expected a value"),
    (["{study}", "--out", "{out}", "--metric", "precision"],
     "--metric: invalid choice: 'precision' (choose from 'fid', 'kid', 'fid_inf')"),
]

SHARED = ["--set", "storage_shared=true"]  # storage that every node sees
SWEEP = [
    ([], "a grid file is needed"),
    (["/no/grid.yaml"], "/no/grid.yaml"),
    (["{a}"], "{a}"),
    (["{grid}", "--set", "st=1"], "unknown key st"),
    (["{grid}", "--set", "stage1.epochs=0"], "stage1.epochs"),
    (["{grid}", "--set", "seeds=[]"], "seeds"),
    (["{grid}", "--set", "nonsense"], "--set 'nonsense': expected key.path=value"),
    (["{grid}", "--set", "storage={file}/x"], "storage"),
    (["{grid}", "--set", "storage=file://host/x"], "storage = 'file://host/x': a file"),
    (["{grid}", "--set", "storage=file://{file}/x"], "is a file, not a folder"),
    (["{grid}", "--set", "resources.gpu=64"], "resources.gpu = 64, but this machine"),
    (["{grid}", "--set", "fid_service.replicas=64"], "64 FID replica(s)"),
    (["{grid}", "--address", "nowhere", *SHARED], "--address 'nowhere': expected"),
    (["{grid}", "--address", "127.0.0.1:1", *SHARED], "--address 127.0.0.1:1: no Ray"),
    (["{grid}", "--address", "auto"], "is a folder on this machine only"),
    (["{grid}", "--gpus", "0"], "--gpus: expected a number above 0"),
    (["{grid}", "--dry-run", "--cpus", "1e300"], "--cpus: expected a number above"),
    (["{grid}", "--address", ""], "--address: expected a value"),
    (["{grid}", "--set", "stage1.precision=fp16"], "'fp16': Input should be 'fp32'"),
    (["{grid}", "--set", "selection.space=dino"], "selection.space = 'dino'"),
    (["{grid}", "--set", "grid.criterion=[k_centre]"], "criterion = 'k_centre'"),
    (["{grid}", "--set", "grid.n_train=[1.5]"], "a fraction of the pool in (0, 1]"),
    (["{grid}", "--set", "fid.metrics=[fid, fid_inf]"],
     "fid.metrics has fid_inf, which needs fid.samples >= 10,000"),
    (["{grid}", "--set", "stage1.steps=0"], "stage1.steps"),
    (["{grid}", "--set", "stage1.steps=100"],
     "stage1.epochs = 10 and stage1.steps = 100: give one budget"),
    (["{grid}", "--set", "stage1.epochs=null", "--set", "stage1.steps=200",
      "--set", "eval.every=150"], "eval.every = 150 steps is no multiple of"),
    (["{grid}", "--set", "stage1.epochs=null"], "give one budget"),
    (["{grid}", "--set", "stage2.lr_schedule=step"], "stage2.lr_step goes with"),
    (["{grid}", "--set", "selection.mahalanobis_ridge=0.1"],
     "selection.mahalanobis_ridge = 0.1 goes with selection.mahalanobis_covariance"),
    (["{grid}", "--set", "grid.selection.mahalanobis_covariance=[oas, ridge]"],
     "selection.mahalanobis_ridge = 0.0 goes with"),
    (["{grid}", "--set", "fid.network=/nonexist"], "fid.network = '/nonexist': "),
    (["{grid}", "--set", "data.test_limit=1"], "data.test_limit = 1"),
    (["{grid}", "--set", "data.test_limit=10001"], "data.test_limit = 10001: Input sh"),
    (["{grid}", "--set", "data.train_limit=50001"], "data.train_limit = 50001: Input"),
    (["{grid}", "--set", "data.train_limit=0"], "data.train_limit = 0: Input should"),
    (["{grid}", "--set", "fid.samples=1"], "fid.samples = 1"),
    (["{grid}", "--set", "grid.seed=[0, 0]"], "seed = [0, 0]: 0 is given twice"),
    (["{grid}", "--set", "priors=[gmm, gmm]"], "'gmm' is given twice"),
    (["{grid}", "--set", "stage1.lr=.inf"], "stage1.lr = inf: Input should be a fin"),
    (["{grid}", "--set", "model.encoder_channels=[]"], "model.encoder_channels must"),
    (["{grid}", "--set", "kind=fid_scrambled", "--set", "e2.tiles=[3]"], "e2.tiles: 3"),
    (["{grid}", "--cpus", "x"], "--cpus: expected a number"),
    (["{grid}", "--gpus", "2"], "--gpus and --cpus size the --dry-run cost"),
    (["{grid}", "--retry-errored", "--resume"], "nothing to resume"),
    (["{grid}", "--retry-errored"], "--retry-errored retries a sweep's errored"),
    (["{grid}", "--resume"], "nothing to resume"),
    (["{grid}", "--dry-run", "--set", "grid.n_train=[0]"], "n_train"),
    (["{grid}", "--rehearse", "--set", "stage1.epochs=-1"], "stage1.epochs"),
    (["--list-keys", "--bogus"], "unrecognized arguments: --bogus"),
    (["{grid}", "--set", "tracking.mlflow.uri=ftp://x"], "not a tracking URI"),
    (["{grid}", "--estimate-from", "/no/such.json"], "add --dry-run"),
    (["{grid}", "--dry-run", "--estimate-from", "/no/such.json"],
     "--estimate-from /no/such.json: not a device check's JSON"),
    (["{grid}", "--set", "tracking.wandb.entity=[1]"], "tracking.wandb.entity"),
    (["{grid}", "--set", "tracking.mlflow={{}}"], "tracking.mlflow.uri"),
    (["{grid}", "--set", "tracking.mlflow.uri=/proc/mlflow"],
     "tracking.mlflow.uri = '/proc/mlflow': cannot"),
    (["{grid}", "--set", "tracking.mlflow.uri={file}"], "exists and is not a folder"),
    (["{grid}", "--set", "tracking.wandb.mode=offline", "--set",
      "tracking.wandb.dir=/proc/wb"], "tracking.wandb.dir = '/proc/wb': cannot"),
]

TABLES = {
    "fid": FID,
    "vae.train": VAE,
    "fid_repeated": E1,
    "fid_scrambled": E2,
    "analysis": ANALYSIS,
    "early_stopping": EARLY_STOPPING,
    "sweep.run": SWEEP,
}

# flags with no value to get wrong, and no combination they cannot be in
NO_BAD_VALUE = {
    "--quiet",  # progress bars only
    "--download",  # allowed whether or not the data is there
    "--no-cache",  # any run can do without the cache
    "--channels-last",  # a memory layout, valid on every device
    "--compile",  # torch.compile works on every device
    "--list-keys",  # prints and exits before anything else (its case: --bogus)
    "--dry-run",  # prints and exits; its cases are --gpus and --cpus without it
    "--verbose",  # the console's form only
}


def _case_ids():
    return [
        pytest.param(command, argv, needle, id=f"{command}:{' '.join(argv)}")
        for command, table in TABLES.items()
        for argv, needle in table
    ]


def _snapshot(*folders) -> set:
    return {
        (str(path), path.stat().st_size if path.is_file() else -1)
        for folder in folders
        for path in folder.rglob("*")
        if ".pytest_cache" not in path.parts and "__pycache__" not in path.parts
    }


@pytest.fixture
def places(tmp_path, rng):
    from PIL import Image

    folder = tmp_path / "a"
    folder.mkdir()
    for i, image in enumerate(random_images(rng, 3)):
        Image.fromarray(image).save(folder / f"{i}.png")
    (tmp_path / "junk.npz").write_bytes(b"nonsense")
    (tmp_path / "file").write_text("a plain file")
    (tmp_path / "pub.csv").write_text("x,y\n1,2\n")
    np.savez(tmp_path / "nan.npz", mu=np.array([np.nan, 0.0]), sigma=np.eye(2), n=9)
    np.savez(tmp_path / "neg.npz", mu=np.zeros(2), sigma=-np.eye(2), n=9)
    return {
        "a": str(folder),
        "npz": str(tmp_path / "junk.npz"),
        "nan": str(tmp_path / "nan.npz"),
        "neg": str(tmp_path / "neg.npz"),
        "file": str(tmp_path / "file"),
        "out": str(tmp_path / "out"),
        "csv": str(tmp_path / "pub.csv"),
        "grid": str(ROOT / "grids" / "smoke.yaml"),
        "st": str(tmp_path / "st"),
        "study": str(STUDY),
    }


@pytest.mark.parametrize("command, argv, needle", _case_ids())
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    command, argv, needle, places, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a relative output path would land here
    argv = [arg.format(**places) for arg in argv]
    if command == "sweep.run" and not any("storage=" in arg for arg in argv):
        argv = ["--set", f"storage={places['st']}", *argv]  # never ./results
    if command == "sweep.run":  # a case that passed its checks stops at the data,
        argv = ["--set", "data.root=/no/such/data", "--set", "data.download=false",
                *argv]  # before Ray could start  # fmt: skip
    needle = needle.format(**places)
    _, main = COMMANDS[command]()
    before = _snapshot(tmp_path, STUDY)
    assert_one_line_error(run_main(main, argv), needle)
    assert _snapshot(tmp_path, STUDY) == before, "something was written"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_is_in_its_table(command):
    parser, _ = COMMANDS[command]()
    tried = {arg for argv, _ in TABLES[command] for arg in argv if arg.startswith("--")}
    options = {
        flag
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
    }
    untried = options - tried - NO_BAD_VALUE
    assert not untried, f"{command}: no bad-input case for {sorted(untried)}"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_option_has_help_that_shows_its_default(command):
    parser, _ = COMMANDS[command]()
    text = " ".join(parser.format_help().split())  # argparse wraps lines
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        assert action.help, f"{command} {action.option_strings or action.dest}: no help"
        default = action.default
        if action.option_strings and not (default is None or default is False
                                          or default == []):  # fmt: skip
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) \
                else str(default)  # fmt: skip
            assert f"(default: {shown})" in text or "(default: " in action.help, (
                f"{command} {action.option_strings[0]}: default {shown} not shown"
            )


def test_train_help_says_its_defaults_are_the_full_study_and_gives_a_quick_run(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    from vae.train import __doc__ as description
    from vae.train_options import check, parser

    text = parser(description).format_help()
    assert "600 epochs" in text and "10,000 generated images per prior" in text
    quick = text.split("A quick try")[1].split(":", 1)[1].replace("\\\n", " ").split()
    assert quick[:3] == ["python", "-m", "vae.train"]
    args = parser(description).parse_args(quick[3:])
    check(args)  # the quick command passes every check, as printed
    assert (args.epochs, args.fid_samples, args.test_limit) == (3, 200, 500)


def test_sweep_help_describes_itself_and_its_repeatable_set():
    from sweep.run import _parser

    text = " ".join(_parser().format_help().split())
    assert "Validates the grid" in text and "repeat it for several" in text
    assert "--list-keys" in text


def test_resume_refuses_a_grid_that_changed_since_the_sweep_started(tmp_path):
    from sweep.config import resolved_yaml
    from sweep.grid_file import load_grid

    grid = str(ROOT / "grids" / "smoke.yaml")
    storage = f"storage={tmp_path}"
    (tmp_path / "smoke").mkdir()
    saved = tmp_path / "smoke" / "grid.yaml"
    saved.write_text(resolved_yaml(load_grid(grid, [storage])))
    before = _snapshot(tmp_path)
    result = run_command("sweep.run", grid, "--resume", "--set", storage,
                         "--set", "stage1.epochs=3")  # fmt: skip
    assert_one_line_error(
        result,
        f"{saved}: the grid differs from the one this sweep started with "
        "(stage1.epochs); resume",
    )
    assert _snapshot(tmp_path) == before


def test_resume_accepts_a_grid_saved_before_a_key_was_added(tmp_path):
    """A sweep saved by an older version lacks the keys added since; they take
    their defaults, so the same file and --set values resume it. A saved value that
    differs from today's, or a key today's schema no longer knows, is a change."""
    import yaml

    from sweep.config import resolved_yaml
    from sweep.grid_file import load_grid
    from sweep.run import check_storage

    config = load_grid(ROOT / "grids" / "smoke.yaml", [f"storage={tmp_path}"])
    folder = tmp_path / "smoke"
    folder.mkdir()
    saved = yaml.safe_load(resolved_yaml(config))
    del saved["fid"]["bootstrap"], saved["stage1"]["round_steps"]  # added later
    (folder / "grid.yaml").write_text(yaml.safe_dump(saved))
    check_storage(str(folder), config, resume=True)  # no error

    saved["fid"]["bootstrap"] = 100  # a value of its own: not today's default
    (folder / "grid.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(InputError, match=r"\(fid\.bootstrap\); resume"):
        check_storage(str(folder), config, resume=True)
    del saved["fid"]["bootstrap"]
    saved["stage1"]["warmup"] = 10  # a key this version does not know
    (folder / "grid.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(InputError, match="the saved grid no longer loads"):
        check_storage(str(folder), config, resume=True)
