"""The sweep's front door.

    python -m sweep.run grids/smoke.yaml [--address auto|HOST:PORT] [--resume]
                                         [--dry-run] [--rehearse]
                                         [--set key.path=value ...]

Validates the grid (nothing starts on a bad file), saves the resolved grid beside the
results, starts or joins Ray, puts the datasets in the object store once, starts the
named FID actor(s), computes the shared prerequisites once (x_train features, reference
VAE scores), runs the trials on Ray Tune, and writes results.parquet and
history.parquet into <storage>/<name>/.
"""

from __future__ import annotations

import argparse
import sys

from fid.stats import warn_small_sample
from sweep.cluster import check_address, connect, use_endpoint
from sweep.config import GridConfig, resolved_yaml
from sweep.cost import estimate, measured_rates, rate_lines, slots
from sweep.folder import GRID_FILE, NAMESPACE
from sweep.grid_file import changed_keys, load_grid
from sweep.list_keys import schema_lines
from sweep.rehearsal import BANNER as REHEARSAL_BANNER
from sweep.rehearsal import rehearsal
from sweep.schedulers import RESUMABLE
from sweep.storage import check_storage_reachable, is_uri, join, read_text
from sweep.tracking import check_tracking
from sweep.trials import expand, settings, trial_name
from vae_sweep.cli import Parser, positive_number, text
from vae_sweep.errors import EXIT_TRIALS_FAILED, InputError, Terminated, run_cli


def _parser() -> argparse.ArgumentParser:
    parser = Parser("python -m sweep.run", __doc__)
    parser.add_argument(
        "grid", type=text, nargs="?", help="grid YAML file (see grids/)"
    )
    parser.add_argument(
        "--list-keys",
        action="store_true",
        help="print every grid key with its type, default and allowed values; exit",
    )
    parser.add_argument(
        "--address",
        type=text,
        default=None,
        help="Ray cluster to join: 'auto' or HOST:PORT (default: a local Ray)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep in <storage>/<name>"
    )
    parser.add_argument(
        "--retry-errored",
        action="store_true",
        help="with --resume: also retry the trials that ended in error, from their "
        "last checkpoints (default: keep them as errors)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the trials and their cost; exit"
    )
    parser.add_argument(
        "--gpus",
        type=positive_number,
        default=None,
        metavar="N",
        help="cluster GPUs for the --dry-run cost (default: enough for every trial "
        "at once)",
    )
    parser.add_argument(
        "--cpus",
        type=positive_number,
        default=None,
        metavar="N",
        help="cluster CPUs for the --dry-run cost of a CPU grid (default: this "
        "machine's)",
    )
    parser.add_argument(
        "--estimate-from",
        type=text,
        default=None,
        metavar="FILE",
        help="with --dry-run: the throughputs a device check measured "
        "(python -m benchmarks.device_check --out FILE), marked measured",
    )
    parser.add_argument(
        "--rehearse",
        action="store_true",
        help="run the grid on its real data and axes with a tiny model, 1 epoch per "
        "stage and the stand-in feature network, into <name>-rehearsal "
        "(see sweep/rehearsal.py)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="Tune's own status tables and per-trial results instead of the compact "
        "progress view",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a grid value (YAML), e.g. --set stage1.epochs=2; repeat it "
        "for several (--list-keys shows them all)",
    )
    return parser


def check_fid_network(config: GridConfig) -> None:
    """The Inception file the FID actors will load exists and has its sha1 (the
    actors would otherwise fail after the data loads and Ray starts)."""
    if config.fid.extractor is not None:  # another feature network (tests)
        return
    from fid.network import NETWORK_SHA1, locate_network_file, verify_named

    path = config.fid.network or locate_network_file()
    verify_named(path, NETWORK_SHA1, f"fid.network = {config.fid.network!r}")


def warn_fid_samples(config: GridConfig) -> None:
    if config.kind == "vae":
        warn_small_sample(config.fid.samples, "fid.samples")


def print_plan(config: GridConfig, trials: list[dict], layout) -> None:
    cost = estimate(config, trials, layout)
    print(
        f"{config.name}: {config.kind}, {len(trials)} trials -> "
        f"{join(config.storage, config.name)}"
    )
    for number, params in enumerate(trials, 1):
        print(f"  {number:4d}  {trial_name(params)}")
    gpu = cost["gpu_hours"]
    lines = [
        f"cost on {layout.note}: {cost['slots']} trials at once, "
        f"{cost['waves']} wave(s)",
        f"  work: {cost['stage1_images']:,} stage-1 training images (reference VAE "
        f"included), {cost['stage2_vectors']:,} stage-2 vectors, "
        f"{cost['fid_images']:,} FID images",
        f"  wall: about {_duration(cost['wall_hours'])} (trials "
        f"{_duration(cost['trial_hours'])} of slot time; reference VAE "
        f"{_duration(cost['reference_hours'])}; FID replicas busy "
        f"{_duration(cost['fid_service_hours'])})",
    ]
    if cost["core_hours"]:
        lines.append(
            f"  CPU: {cost['core_hours']:.1f} core-hours of work on {layout.cpus:g} "
            f"CPUs that the trials and the FID replicas share"
        )
    if layout.gpus:
        lines.append(
            f"  GPU-hours: about {cost['gpu_hours_total']:.2f} (trials "
            f"{gpu['trials']:.2f}, FID replicas {gpu['fid_service']:.2f}, "
            f"prerequisites {gpu['prerequisites']:.2f}); an upper bound with a "
            f"scheduler"
        )
    lines.append("  from the grid's estimate section: " + ", ".join(rate_lines(config)))
    lines.append(f"if the FID node is lost (on a cluster): {fid_node_loss(config)}")
    print("\n".join(lines))


def fid_node_loss(config: GridConfig) -> str:
    """What the sweep does when a node holding an FID replica is lost, in one line."""
    service = config.fid_service
    others = ("calls go to another replica at once" if service.replicas > 1
              else "")  # fmt: skip
    room = "a GPU is" if service.gpu > 0 else "CPUs are"
    if service.standby:
        last = ("while none answers, " if others else "") + (
            "the standby replica on the head node's CPU takes the calls (slower) "
            f"until Ray restarts the lost replica where {room} free")
    else:
        last = (f"calls wait (fid_service.standby is off) until Ray restarts the "
                f"replica where {room} free, for at most fid_service.timeout_s "
                f"= {service.timeout_s:g} s")  # fmt: skip
    return "; ".join(part for part in (others, last) if part)


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.1f} h"
    minutes = hours * 60
    return f"{minutes:.0f} min" if minutes >= 1 else "under a minute"


def check_storage(folder: str, config: GridConfig, resume: bool) -> None:
    """A new sweep needs an empty place; a resumed one the same resolved grid (keys
    added to the schema since it started take their defaults)."""
    saved = read_text(join(folder, GRID_FILE))
    if resume and saved is None:
        raise InputError(f"{folder}: nothing to resume (no {GRID_FILE} there)")
    changed = changed_keys(saved, config) if resume else []
    if changed:
        named = ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else "")
        raise InputError(
            f"{join(folder, GRID_FILE)}: the grid differs from the one this sweep "
            f"started with ({named}); resume with the same file and --set values"
        )
    if not resume and saved is not None:
        raise InputError(
            f"{folder} already holds a sweep: pass --resume to continue it, or "
            f"choose another name or storage"
        )


def check_cluster_options(config: GridConfig, args) -> None:
    """What --address, --resume and --retry-errored need of the grid."""
    if args.retry_errored and not args.resume:
        raise InputError(
            "--retry-errored retries a sweep's errored trials: add --resume"
        )
    if args.address and not (is_uri(config.storage) or config.storage_shared):
        raise InputError(
            f"storage = {config.storage!r} is a folder on this machine only, but with "
            f"--address every node writes trials and checkpoints there: use "
            f"s3://bucket/prefix or file:///shared/path, or set storage_shared: true "
            f"for an NFS mount every node sees at that path"
        )
    if args.resume and config.scheduler.name not in RESUMABLE:
        raise InputError(
            f"scheduler.name = {config.scheduler.name!r}: Tune cannot restore "
            f"HyperBand's brackets, so a resumed sweep would decide without its "
            f"history; rerun it under another name, or use asha or median, whose "
            f"history a resume restores"
        )


def main(argv=None) -> None:
    args = _parser().parse_args(argv)
    if args.list_keys:
        print("\n".join(schema_lines()))
        return
    if args.grid is None:
        raise InputError("a grid file is needed (or --list-keys)")
    config = load_grid(args.grid, args.set)
    if args.rehearse:
        config = rehearsal(config, args.grid)
        print(REHEARSAL_BANNER)
    trials = expand(config)
    if config.kind == "vae":  # each trial's model and training settings, checked
        for params in trials:
            settings(config, params, device="cpu")
    if args.estimate_from is not None:
        if not args.dry_run:
            raise InputError("--estimate-from sets the --dry-run cost; add --dry-run")
        rates = measured_rates(args.estimate_from)
        config = config.model_copy(update={"estimate": config.estimate.model_copy(
            update={**rates, "measured": tuple(
                sorted(set(config.estimate.measured) | set(rates)))})})
    if args.dry_run:
        print_plan(config, trials, slots(config, len(trials), gpus=args.gpus,
                                         cpus=args.cpus))  # fmt: skip
        warn_fid_samples(config)
        return
    if args.gpus is not None or args.cpus is not None:
        raise InputError("--gpus and --cpus size the --dry-run cost; add --dry-run")
    check_cluster_options(config, args)
    check_address(args.address)  # bounded in time, before any data loads
    check_fid_network(config)
    folder = join(config.storage, config.name)
    text = resolved_yaml(config)
    use_endpoint(config)
    check_storage_reachable(config.storage)
    check_storage(folder, config, args.resume)
    check_tracking(config)  # the trackers' packages and servers, before Ray starts

    # the driver's own modules (the trainables, pandas, matplotlib) load only past
    # validation; torch and Ray do not wait that long yet: sweep.cluster and
    # sweep.config import them, so a bad grid takes about 4 s to refuse
    from sweep.driver import check_local_resources, load_data, run_sweep
    from sweep.stopping import stopped_by_sigterm

    if args.address is None:
        check_local_resources(config)
    train, test = load_data(config)  # a bad data path stops here, before any write
    warn_fid_samples(config)  # every check passed: the sweep will run
    trials = expand(config, len(train))
    # joined (in bounded time) before anything is written to storage
    connect(config, args.address, NAMESPACE)
    try:
        table = run_sweep(
            config,
            trials,
            folder,
            train=train,
            test=test,
            address=args.address,
            resume=args.resume,
            retry_errored=args.retry_errored,
            grid_text=text,  # written once the FID service stands, before any trial
            verbose=args.verbose,
        )
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM (Terminated)
        started = read_text(join(folder, GRID_FILE)) is not None
        raise (Terminated if stopped_by_sigterm(stop) else KeyboardInterrupt)(
            f"continue with the same command and --resume ({folder})"
            if started
            else "nothing was written; the same command starts afresh"
        ) from None
    statuses = table.drop_duplicates("trial_id")["status"] if len(table) else None
    errored = 0 if statuses is None else int((statuses == "error").sum())
    if statuses is None or errored:
        # The tables are written, but a script or CI must see that trials failed. A
        # diverged or scheduler-stopped trial is a recorded result of the grid, not a
        # fault: those exit 0.
        what = (
            "no trial ran" if statuses is None else f"{errored} trial(s) ended in error"
        )
        print(f"error: {what}: see the status and error columns of the results in "
              f"{folder}; --resume --retry-errored runs them again from their last "
              f"checkpoints", file=sys.stderr)  # fmt: skip
        raise SystemExit(EXIT_TRIALS_FAILED)


if __name__ == "__main__":
    run_cli(main)
