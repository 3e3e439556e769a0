"""`python -m vae.train` end to end on a tiny fake CIFAR, with the stand-in network."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.helpers.commands import assert_one_line_error, run_command
from tests.helpers.data import ROOT, image_folder, random_images
from tests.helpers.processes import started
from tests.helpers.tiny import TINY_CLI


@pytest.fixture
def fake_data(tmp_path, rng, monkeypatch):
    import fid.options
    from tests.helpers.standin import StandInExtractor

    for split, n in [("train", 48), ("test", 24)]:
        for c in ("cat", "dog"):
            image_folder(tmp_path / "data" / split / c, random_images(rng, n // 2))
    extractors = []

    def standin(*args, **kwargs):
        extractors.append(StandInExtractor())
        return extractors[-1]

    monkeypatch.setattr(fid.options, "InceptionExtractor", standin)
    return tmp_path / "data", extractors


def _train(data, out, *extra):
    from vae.train import main

    main(["--data", str(data), "--out", str(out), "--epochs", "2",
          "--batch-size", "8", "--fid-samples", "16", "--stage2-epochs", "2",
          "--quiet", *TINY_CLI, *extra])  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def test_cli_writes_checkpoint_metrics_and_sample_grids(fake_data, tmp_path):
    data, extractors = fake_data
    out = tmp_path / "run"
    metrics = _train(data, out, "--n", "20", "--criterion", "class_balanced")
    assert metrics["outcome"] == "completed" and metrics["epochs_run"] == 2
    assert metrics["n_train"] == 20 and len(np.load(out / "selection.npy")) == 20
    assert 0 < metrics["loss_mse_per_pixel"] < 1
    assert metrics["loss_mse_per_pixel"] == metrics["history"][-1]["mse"]
    assert metrics["variance_law"] > 0 and 0 <= metrics["inactive_dims"] <= 4
    assert set(metrics["priors"]) == {"gaussian", "gmm", "two_stage", "recon"}
    for prior, record in metrics["priors"].items():
        assert record["fid"] > 0 and record["fid_samples"] == 16
        assert (out / f"samples_{prior}.png").stat().st_size > 1000
    assert metrics["fid_reference"]["n"] == 24
    stage2 = metrics["stage2"]  # the same names as the sweep's result columns
    assert stage2["stage2_epochs_run"] == 2 and stage2["stage2_outcome"] == "completed"
    assert stage2["stage2_loss_mse"] == stage2["stage2_history"][-1]["loss_mse"]
    clocks = [r["finished_at"] for r in stage2["stage2_history"]]  # for the replay
    assert clocks == sorted(clocks)
    assert clocks[0] > metrics["history"][-1]["finished_at"]  # after stage 1's
    assert 0 <= stage2["stage2_inactive_dims"] <= stage2["stage2_latent_dim"]
    assert metrics["gmm"]["gmm_converged"] in (True, False)
    for name in ("stage1.pt", "stage2.pt", "loss.png"):
        assert (out / name).is_file()
    # 24 test images for the reference + 16 per prior, one network for the run
    assert len(extractors) == 1 and extractors[0].images_seen == 24 + 4 * 16


def test_cli_resume_continues_the_checkpoint(fake_data, tmp_path):
    data, _ = fake_data
    out = tmp_path / "run"
    first = _train(data, out, "--priors", "gaussian")
    again = _train(data, out, "--priors", "gaussian", "--resume", "--epochs", "3")
    assert first["epochs_run"] == 2 and again["epochs_run"] == 3
    assert again["history"][:2] == first["history"]


@pytest.mark.parametrize("criterion", ["lowest_recon", "highest_mahalanobis"])
def test_cli_score_criteria(fake_data, tmp_path, criterion):
    data, _ = fake_data
    metrics = _train(
        data,
        tmp_path / "run",
        "--n",
        "10",
        "--criterion",
        criterion,
        "--reference-epochs",
        "1",
        "--priors",
        "gaussian",
    )
    assert metrics["n_train"] == 10 and metrics["criterion"] == criterion


@pytest.mark.parametrize("criterion", ["lowest_recon", "highest_mahalanobis"])
def test_cli_selection_is_what_the_scores_imply(fake_data, tmp_path, criterion):
    data, _ = fake_data
    cache = tmp_path / "cache"
    _train(data, tmp_path / "run", "--n", "10", "--criterion", criterion,
           "--reference-epochs", "1", "--priors", "gaussian", "--fid-samples", "0",
           "--cache-dir", str(cache))  # fmt: skip
    files = list((cache / "scores").glob(f"{criterion.split('_')[1]}-*"))
    assert len(files) == 1
    scores = np.load(files[0])
    assert scores.shape == (48,)
    # the 10 lowest (or highest) scores, ties by index, as sorted indices
    order = np.argsort(-scores if criterion.startswith("highest") else scores,
                       kind="stable")  # fmt: skip
    chosen = np.load(tmp_path / "run" / "selection.npy")
    np.testing.assert_array_equal(chosen, np.sort(order[:10]))


@pytest.mark.parametrize("criterion, space", [("k_center", "pixel"),
                                             ("knn_density", "inception")])
def test_cli_literature_criteria_select_from_their_scores(fake_data, tmp_path,
                                                          criterion, space):
    """The CLI's subset is the criterion's choice from scores worked out here, in
    the space --selection-space names (Inception: the stand-in network's)."""
    from selection.criteria import ScoreBook, select
    from selection.datasets import load_cifar10
    from selection.feature_scores import feature_scores, pixel_features
    from tests.helpers.standin import StandInExtractor

    data, _ = fake_data
    metrics = _train(data, tmp_path / "run", "--n", "12", "--criterion", criterion,
                     "--selection-space", space, "--priors", "gaussian",
                     "--fid-samples", "0", "--seed", "3")  # fmt: skip
    train = load_cifar10(data, "train", progress=False)
    features = (pixel_features(train.images) if space == "pixel"
                else StandInExtractor()(np.asarray(train.images)))  # fmt: skip
    kind = "k_center" if criterion == "k_center" else "knn_density"
    scores = feature_scores(kind, features, np.asarray(train.labels), seed=3)
    expected = select(criterion, train, 12, seed=3,
                      scores=ScoreBook.in_memory({kind: scores}))  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "run" / "selection.npy"),
                                  expected.indices)  # fmt: skip
    assert sum(metrics["class_counts"].values()) == 12


# what only the data can refute, through the real process (every option's own bad
# values: tests/test_bad_input.py)
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--criterion", "random", "--n", "500"],
         "--n 500: must be between 1 and the training set size (48)"),
        (["--priors", "recon", "--fid-samples", "25"],
         "reconstructions of 24 test images"),
        (["--device", "cuda:99"], "--device cuda:99: "),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line_exit_2(fake_data, tmp_path, args, needle):
    data, _ = fake_data
    out = tmp_path / "bad"
    result = run_command("vae.train", "--data", str(data), "--out", str(out),
                         "--fid-samples", "0", *args)  # fmt: skip
    assert_one_line_error(result, needle)
    assert not out.exists()


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_refuses_an_out_it_cannot_write(fake_data, tmp_path, where):
    data, _ = fake_data
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "run"
    result = run_command("vae.train", "--data", str(data), "--out", str(out))
    needle = "exists and is not a folder" if where == "file" else "is a file, not a"
    assert_one_line_error(result, needle)
    assert (tmp_path / "taken").read_text() == "a file"


def test_cli_refuses_to_overwrite_a_run(fake_data, tmp_path):
    data, _ = fake_data
    _train(data, tmp_path / "run", "--priors", "gaussian")
    result = run_command("vae.train", "--data", str(data), "--out",
                         str(tmp_path / "run"))  # fmt: skip
    assert_one_line_error(result, "stage1.pt exists: pass --resume")


def test_cli_stage2_epochs_default_to_twice_the_stage1_epochs(fake_data, tmp_path):
    from vae.train import main

    data, _ = fake_data
    main(["--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
          "--batch-size", "8", "--fid-samples", "0", "--priors", "two_stage",
          "--quiet", *TINY_CLI])  # fmt: skip
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["stage2"]["stage2_epochs_run"] == 2


def test_cli_divergence_writes_its_metrics_and_exits_1(fake_data, tmp_path, capsys):
    from vae.train import main

    data, _ = fake_data
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:  # lr 1e6: a non-finite loss at once
        main(["--data", str(data), "--out", str(out), "--epochs", "3", "--lr",
              "1e6", "--batch-size", "8", "--fid-samples", "0", "--quiet",
              *TINY_CLI])  # fmt: skip
    assert exit_info.value.code == 1
    assert "stage 1 diverged (non-finite loss) in epoch 1" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["outcome"] == "diverged" and metrics["epochs_run"] == 0
    assert not list(out.glob("samples_*.png"))  # no samples from a diverged model


def test_ctrl_c_stops_at_once_with_one_line_and_resume_continues(fake_data, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import torch

    data, _ = fake_data
    out = tmp_path / "run"
    command = [sys.executable, "-m", "vae.train", "--data", str(data), "--out",
               str(out), "--epochs", "100000", "--batch-size", "8", "--fid-samples",
               "0", "--priors", "gaussian", "--quiet", *TINY_CLI]  # fmt: skip
    # killed with its group when the test leaves, passed or not
    with started(command, cwd=ROOT, stderr=subprocess.PIPE, text=True) as process:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "stage1.pt").is_file():
            time.sleep(0.2)
        if not (out / "stage1.pt").is_file():
            os.killpg(process.pid, signal.SIGKILL)  # then its stderr says why
            _, error = process.communicate()
            raise AssertionError(f"no stage-1 checkpoint in 120 s: {error}")
        os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
        interrupted = time.time()
        _, error = process.communicate(timeout=60)
    assert process.returncode == 130 and time.time() - interrupted < 30
    lines = [line for line in error.splitlines() if line.strip()]
    assert len(lines) == 1
    expected = "interrupted: continue with the same command and --resume (stage 1"
    assert lines[0].startswith(expected)
    assert not [p for p in out.iterdir() if p.suffix == ".tmp" or ".tmp" in p.name]
    epoch = torch.load(out / "stage1.pt", weights_only=False)["epoch"]
    assert 1 <= epoch < 100000
    # the same command with --resume goes on from that epoch (to two more, here)
    run_command("vae.train", *command[3:], "--resume", "--epochs", str(epoch + 2),
                check_rc=0)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == epoch + 2 and len(metrics["history"]) == epoch + 2


def test_a_run_stopped_in_stage2_goes_on_from_its_last_save(
    fake_data, tmp_path, monkeypatch, caplog
):
    import torch

    import vae.train
    from vae.stage2 import Stage2Checkpoint
    from vae.train import main

    data, _ = fake_data
    saved_epochs = []

    def checkpoint(stop_at=None):
        def every_epoch(save, saved=None):
            def save_and_record(state):
                save(state)
                saved_epochs.append(state["epoch"])
                if state["epoch"] == stop_at:
                    raise KeyboardInterrupt  # as Ctrl-C between two stage-2 epochs

            return Stage2Checkpoint(save_and_record, saved, seconds=0)

        monkeypatch.setattr(vae.train, "Stage2Checkpoint", every_epoch)

    def train(out, *extra):
        main(["--data", str(data), "--out", str(out), "--epochs", "2",
              "--batch-size", "8", "--fid-samples", "0", "--priors", "two_stage",
              "--stage2-epochs", "6", "--quiet", *TINY_CLI, *extra])  # fmt: skip
        return json.loads((out / "metrics.json").read_text())

    checkpoint()
    straight = train(tmp_path / "straight")
    checkpoint(stop_at=3)
    with pytest.raises(KeyboardInterrupt, match="stage 2, if it had started, from"):
        train(tmp_path / "stopped")
    assert not (tmp_path / "stopped" / "metrics.json").exists()
    saved_epochs.clear()
    checkpoint()
    resumed = train(tmp_path / "stopped", "--resume")
    assert saved_epochs == [4, 5, 6]  # went on from epoch 3, not from the start
    # the same history, to the bit, but for the clocks each round stamps
    def unclocked(stage2):
        rounds = [{k: v for k, v in r.items() if k != "finished_at"}
                  for r in stage2["stage2_history"]]  # fmt: skip
        return {**stage2, "stage2_history": rounds}

    assert unclocked(resumed["stage2"]) == unclocked(straight["stage2"])
    ours = torch.load(tmp_path / "stopped" / "stage2.pt", weights_only=True)
    theirs = torch.load(tmp_path / "straight" / "stage2.pt", weights_only=True)
    for key, value in theirs["model_state"].items():
        assert torch.equal(ours["model_state"][key], value), key

    # stage 1 trains on (one more epoch): the saved stage 2 belongs to the old one
    saved_epochs.clear()
    more = train(tmp_path / "stopped", "--resume", "--epochs", "3")
    assert more["epochs_run"] == 3 and saved_epochs == [1, 2, 3, 4, 5, 6]
    assert "the saved state was trained for another stage 1" in caplog.text
    # other stage-2 settings, or fewer epochs than it ran: stage 2 starts over too
    for extra in (["--stage2-epochs", "4"], ["--stage2-inputs", "means"]):
        saved_epochs.clear()
        again = train(tmp_path / "stopped", "--resume", "--epochs", "3", *extra)
        epochs = again["stage2"]["stage2_epochs_run"]
        assert saved_epochs == list(range(1, epochs + 1)), extra
