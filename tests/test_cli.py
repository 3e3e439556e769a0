"""Command lines: `python -m fid`, E1 and E2, and their one-line errors (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from fid.sample_metrics import kid
from tests.helpers.commands import assert_one_line_error, run_command
from tests.helpers.data import ROOT, image_folder, random_images


def _run(*args, env_extra=None, check_rc=None):
    env = {**os.environ, **(env_extra or {})}
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stderr
    return result


@pytest.mark.real_network
def test_fid_cli_folder_zip_and_saved_stats_agree(tmp_path, rng, monkeypatch):
    a = image_folder(tmp_path / "a", random_images(rng, 5))
    b = image_folder(tmp_path / "b", random_images(rng, 6) // 2)
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        for file in sorted(b.iterdir()):
            archive.write(file, f"b/{file.name}")
    monkeypatch.setenv("VAE_SWEEP_CACHE", str(tmp_path / "cache"))
    direct = run_command("fid", str(a), str(b), "--quiet", check_rc=0)
    value = float(direct.stdout.split("FID:")[1])
    assert value > 0
    assert "warning: samples = 5 is below the 2048 feature dimensions" in direct.stderr
    run_command("fid", "--save-stats", str(a), str(tmp_path / "a.npz"), "--quiet",
                check_rc=0)  # fmt: skip
    with np.load(tmp_path / "a.npz") as stats:
        assert stats["mu"].shape == (2048,) and int(stats["n"]) == 5
    via_stats = run_command("fid", str(tmp_path / "a.npz"), str(tmp_path / "b.zip"),
                            "--quiet", check_rc=0)  # fmt: skip
    assert float(via_stats.stdout.split("FID:")[1]) == pytest.approx(value, rel=1e-9)
    limited = run_command("fid", str(a), str(b), "--limit", "4", "--quiet",
                          "--no-cache", check_rc=0)  # fmt: skip
    assert "samples: 4 vs 4" in limited.stderr
    # KID and FID-infinity: the library functions applied to the same features (the
    # ones the first call cached)
    extra = run_command("fid", str(a), str(b), "--kid", "--seed", "3", "--quiet",
                        check_rc=0)  # fmt: skip
    lines = dict(line.split(": ", 1) for line in extra.stdout.strip().splitlines())
    assert float(lines["FID"]) == pytest.approx(value, rel=1e-9)
    files = (tmp_path / "cache").rglob("*.features.npy")
    cached = {len(f): f for f in map(np.load, files)}
    expected_kid = kid(cached[5], cached[6], seed=3)
    assert lines["KID"].startswith(f"{expected_kid.mean} +- {expected_kid.std}")
    # FID-infinity needs 10,000 samples (refused on 5: tests/test_bad_input.py)
    assert "FID-infinity" not in lines


# every option's bad values run in-process in tests/test_bad_input.py; these go
# through a real process, for the exit code and stderr as a shell sees them
@pytest.mark.parametrize(
    "args,needle",
    [
        (["-m", "fid", "{junk}", "{a}"], "junk.npz: not a statistics file"),
        (["-m", "fid", "--device", "cuda:99", "{a}", "{a}"], "--device cuda:99: "),
        (["-m", "experiments.fid_scrambled", "--tiles", "3"], "--tiles: 3"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, rng, args, needle):
    a = image_folder(tmp_path / "a", random_images(rng, 3))
    (tmp_path / "junk.npz").write_bytes(b"nonsense")
    args = [x.format(a=a, junk=tmp_path / "junk.npz") for x in args]
    out = tmp_path / "out"
    result = _run(*args, "--out", str(out)) if "experiments" in args[1] else _run(*args)
    assert_one_line_error(result, needle)
    assert not out.exists() and not (ROOT / "out.txt").exists()


@pytest.fixture
def fake_cifar(tmp_path, rng, monkeypatch):
    """A two-class CIFAR layout of random images; the stand-in network patched in."""
    import fid.options
    from tests.helpers.standin import StandInExtractor

    for split, n in [("train", 60), ("test", 20)]:
        for c in ("cat", "dog"):
            image_folder(tmp_path / "data" / split / c, random_images(rng, n // 2))
    monkeypatch.setattr(
        fid.options, "InceptionExtractor", lambda *a, **k: StandInExtractor()
    )
    return tmp_path / "data"


def test_e1_cli_writes_table_plot_and_options(fake_cifar, tmp_path):
    import json

    from experiments import fid_repeated
    from selection.datasets import load_cifar10

    def e1(out, *extra):
        fid_repeated.main(["--data", str(fake_cifar), "--sizes", "2,5,20", "--count",
                           "20", "--repetitions", "3", "--out", str(tmp_path / out),
                           "--quiet", *extra])  # fmt: skip
        return pd.read_parquet(tmp_path / out / "fid_repeated.parquet")

    table = e1("e1", "--test-limit", "10")
    assert table["size"].tolist() == [2, 5, 20]
    assert (table["repetitions"] == 3).all() and (table["sample_count"] == 20).all()
    for row in table.itertuples():
        assert row.fid_mean == pytest.approx(np.mean(row.fid_values))
        assert row.fid_variance_ddof1 == pytest.approx(np.var(row.fid_values, ddof=1))
    assert (tmp_path / "e1" / "fid_repeated.png").stat().st_size > 1000
    options = json.loads((tmp_path / "e1" / "fid_repeated.json").read_text())
    assert (options["test_limit"], options["count"], options["sizes"]) == \
        (10, 20, [2, 5, 20])  # fmt: skip
    train = load_cifar10(fake_cifar, "train", progress=False)
    assert options["train_sha256"] == train.sha256
    assert options["network"] == "standin-v1" and options["seconds"] > 0
    # the same draws against all 20 test images: another reference, other FIDs
    whole = e1("e1-whole")
    assert not np.allclose(whole["fid_mean"], table["fid_mean"])


def test_e2_cli_writes_table_and_plot(fake_cifar, tmp_path):
    from experiments import fid_scrambled

    fid_scrambled.main(
        [
            "--data",
            str(fake_cifar),
            "--tiles",
            "2,16,1024",
            "--count",
            "12",
            "--repetitions",
            "2",
            "--out",
            str(tmp_path / "e2"),
            "--quiet",
        ]
    )
    table = pd.read_parquet(tmp_path / "e2" / "fid_scrambled.parquet")
    assert table["tiles"].tolist() == [2, 16, 1024]
    assert (table["sample_count"] == 12).all() and (table["repetitions"] == 2).all()
    assert (tmp_path / "e2" / "fid_scrambled.png").stat().st_size > 1000


@pytest.mark.parametrize("module", ["experiments.fid_repeated",
                                    "experiments.fid_scrambled"])  # fmt: skip
def test_e1_e2_refuse_an_out_they_cannot_write_before_any_work(tmp_path, module):
    (tmp_path / "taken").write_text("a file")
    result = run_command(module, "--data", "/no/data", "--out",
                         str(tmp_path / "taken" / "e"))  # fmt: skip
    # the output folder is refused before the (missing) data is even looked at
    assert_one_line_error(result, "is a file, not a folder")


@pytest.mark.parametrize("no_cache", [False, True])
def test_no_cache_leaves_the_cache_folder_alone(fake_cifar, tmp_path, monkeypatch,
                                               no_cache):  # fmt: skip
    import tempfile

    from experiments import fid_repeated

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    cache = tmp_path / "cache"
    fid_repeated.main(["--data", str(fake_cifar), "--sizes", "2,5", "--count", "10",
                       "--repetitions", "2", "--out", str(tmp_path / "e1"),
                       "--cache-dir", str(cache), "--quiet"]
                      + (["--no-cache"] if no_cache else []))  # fmt: skip
    written = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert (tmp_path / "e1" / "fid_repeated.parquet").is_file()
    if no_cache:  # the run had its own temporary cache, removed after it
        assert written == [] and list(scratch.iterdir()) == []
    else:  # decoded images and FID statistics
        assert any(n.endswith(".npy") for n in written), written


def test_fid_cli_prdc_and_memorization_from_the_same_features(tmp_path, rng,
                                                              monkeypatch):
    """--prdc and --memorization print what fid.fidelity and fid.memorization give on
    the features the command extracted (the stand-in network's, cached)."""
    import fid.options
    from fid.fidelity import fidelity
    from fid.memorization import memorization
    from tests.helpers.standin import StandInExtractor

    monkeypatch.setattr(fid.options, "InceptionExtractor",
                        lambda *a, **k: StandInExtractor())  # fmt: skip
    train_images = random_images(rng, 40)
    train = image_folder(tmp_path / "train", train_images)
    real = image_folder(tmp_path / "real", random_images(rng, 30))
    copies = image_folder(tmp_path / "copies", train_images[:12])  # copied exactly
    monkeypatch.setenv("VAE_SWEEP_CACHE", str(tmp_path / "cache"))
    out = run_command("fid", str(real), str(copies), "--prdc", "--memorization",
                      str(train), "--quiet", check_rc=0)  # fmt: skip
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    features = {len(f): f for f in map(np.load, (tmp_path / "cache").rglob(
        "*.features.npy"))}  # fmt: skip
    expected = fidelity(features[30], features[12]).as_dict()
    for name, value in expected.items():
        assert float(lines[name]) == pytest.approx(value, rel=1e-12), name
    assert lines["memorization"].startswith("1.0 (12 of 12 samples")
    assert memorization(features[12], features[40]).rate == 1.0
