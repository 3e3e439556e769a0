"""benchmarks/device_check.py: the --quick run on this CPU writes every figure the GPU
run writes (measured, or named with why not); the plan's file transfer (the network
file in halves, the peer rebuilt from them) rehearsed; --estimate-from reads its
throughputs into the dry run."""

from __future__ import annotations

import hashlib
import json

import pytest

from benchmarks import device_check
from benchmarks.device_check import FIGURES, PEER, rebuild_peer, split_network
from fid.network import locate_network_file
from tests.helpers.commands import run_command
from tests.helpers.data import ROOT
from vae_sweep.errors import InputError

MIB = 1024 * 1024
# measured on any machine; the rest need CUDA
ANY_DEVICE = ["fid.images_per_s", "fid.peer_images_per_s", "fid.speedup_vs_peer",
              "fid.max_abs_difference_vs_peer", "stage2.vectors_per_s",
              "ray.fractional_gpu_sweep"] + [
              f"stage1.{v}.images_per_s" for v in device_check.VARIANTS] + [
              f"stage1.{v}.loss_relative_to_fp32"
              for v in list(device_check.VARIANTS)[1:]]  # fmt: skip


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory, small_cifar_root):
    out = tmp_path_factory.mktemp("device") / "device.json"
    run_command("benchmarks.device_check", "--quick", "--out", str(out),
                "--data", str(small_cifar_root), check_rc=0)  # fmt: skip
    return json.loads(out.read_text())


@pytest.mark.ray
def test_the_quick_run_writes_every_figure_of_the_gpu_run(quick_report):
    figures = quick_report["figures"]
    assert list(figures) == list(FIGURES)  # the GPU run's names, in its order
    assert quick_report["device_type"] == "cpu" and quick_report["quick"] is True
    assert quick_report["verdict"] == "ok"
    for name in ANY_DEVICE:
        entry = figures[name]
        assert entry["verdict"] == "ok" and entry["value"] > 0, (name, entry)
        assert entry["unit"] == FIGURES[name]
    for name in set(FIGURES) - set(ANY_DEVICE):
        assert figures[name]["verdict"] == "not measured", name
        assert "no CUDA" in figures[name]["reason"] and figures[name]["value"] is None
    # the project's extractor and the peer's see the same images: the same features
    assert figures["fid.max_abs_difference_vs_peer"]["value"] <= 1e-3


@pytest.mark.ray
def test_estimate_from_takes_the_measured_rates(quick_report, tmp_path):
    path = tmp_path / "device.json"
    path.write_text(json.dumps(quick_report))
    plan = run_command("sweep.run", str(ROOT / "grids" / "smoke.yaml"), "--dry-run",
                       "--estimate-from", str(path), check_rc=0)  # fmt: skip
    figures = quick_report["figures"]
    train = figures["stage1.fp32.images_per_s"]["value"]
    assert f"train_images_per_s = {train:g} (measured)" in plan.stdout
    fid = figures["fid.images_per_s"]["value"]
    assert f"fid_images_per_s = {fid:g} (measured)" in plan.stdout


def test_a_failing_check_is_named_and_the_run_goes_on():
    check = device_check.Check()

    def broken():
        check.put("stage2.vectors_per_s", 1.0)
        raise RuntimeError("CUDA error: out of memory")

    check.attempt(["stage2.vectors_per_s", "tests.cuda"], broken)
    figures = check.result()
    assert figures["stage2.vectors_per_s"]["verdict"] == "ok"
    assert figures["tests.cuda"] == {"value": None, "unit": FIGURES["tests.cuda"],
                                     "verdict": "fail",
                                     "reason": "RuntimeError: CUDA error: out of "
                                               "memory"}  # fmt: skip
    assert figures["fid.images_per_s"]["verdict"] == "not measured"


def test_the_network_file_travels_in_two_halves_and_is_rebuilt(tmp_path):
    package = tmp_path / "installed" / PEER
    package.mkdir(parents=True)
    blob = bytes(range(256)) * 4099  # odd length: the halves differ by a byte
    (package / "default_1.pt").write_bytes(blob)
    (package / "__init__.py").write_text("VERSION = 1\n")
    staged = tmp_path / "staged"
    manifest = split_network(staged, package / "default_1.pt")
    assert manifest["sha1"] == hashlib.sha1(blob).hexdigest()
    halves = [(staged / f"part{i}" / f"net.part{i}").stat().st_size for i in (0, 1)]
    assert sum(halves) == len(blob) and abs(halves[0] - halves[1]) <= 1
    # on the device: both parts copied into one folder, then rebuilt
    on_device = tmp_path / "dc"
    on_device.mkdir()
    for part in ("part0", "part1"):
        for path in (staged / part).rglob("*"):
            target = on_device / path.relative_to(staged / part)
            if path.is_dir():
                target.mkdir(exist_ok=True)
            else:
                target.write_bytes(path.read_bytes())
    rebuilt = rebuild_peer(on_device, tmp_path / "site")
    assert (rebuilt / "default_1.pt").read_bytes() == blob
    assert (rebuilt / "__init__.py").read_text() == "VERSION = 1\n"
    (on_device / "net.part1").write_bytes(b"x" + (on_device / "net.part1").read_bytes())
    with pytest.raises(InputError, match="sha1 differs"):
        rebuild_peer(on_device, tmp_path / "site2")


def test_the_real_network_halves_fit_a_call():
    size = locate_network_file().stat().st_size
    assert size > 64 * MIB and (size + 1) // 2 < 48 * MIB


def test_bad_input_is_one_line(tmp_path):
    for argv, words in (([], "--out FILE is required"),
                        (["--out", str(tmp_path)], "is a folder"),
                        (["--out", str(tmp_path / "no" / "x.json")], "no such folder")):
        result = run_command("benchmarks.device_check", *argv)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
