"""What changes when the sweep runs on a cluster (`--address`), DESIGN section 7.

* Joining: the embedded local Ray unless an address is given (never a cluster that
  happens to run on this machine), listening on loopback only; the S3 endpoint
  reaches every worker.
* Retries: a spot node that disappears fails its trials; on a cluster a grid that
  does not set `max_failures` gets 3 retries, so the trial continues from its last
  checkpoint on another node.
* Placement: FID replicas keep off the head node unless `fid_service.on_head`.
* GPUs: a process that Ray gave a GPU runs on it or fails with one line
  (`vae_sweep.devices.gpu_device`); a preflight task finds a node without a usable GPU
  before any trial starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import ray
from ray._private import ray_constants

from sweep.config import GridConfig
from sweep.storage import ENDPOINT_ENV
from vae_sweep.devices import gpu_device
from vae_sweep.errors import InputError

CLUSTER_MAX_FAILURES = 3
CONNECT_TIMEOUT = 5.0  # seconds for a HOST:PORT address to accept a connection
HEAD_RESOURCE = "node:__internal_head__"
# The embedded local Ray (and the suite's simulated clusters) listen here only: a
# laptop's sweep is no service on its network. Ray on Linux replaces a loopback node
# address by the machine's outward one (services.resolve_ip_for_localhost) unless
# it runs single-machine, as it does on macOS and Windows: LOOPBACK_ENV, read when
# ray is imported (ray_constants.ENABLE_RAY_CLUSTER).
LOOPBACK = "127.0.0.1"
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def max_failures(config: GridConfig, address: str | None) -> int:
    if config.max_failures is not None:
        return config.max_failures
    return CLUSTER_MAX_FAILURES if address else 0


def use_endpoint(config: GridConfig) -> dict[str, str]:
    """Point this process's pyarrow (and Tune's) at the grid's S3 endpoint, if any;
    the environment variables every worker needs for the same."""
    endpoint = config.storage_endpoint or os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return {}
    os.environ[ENDPOINT_ENV] = endpoint
    return {ENDPOINT_ENV: endpoint}


def check_address(address: str | None) -> None:
    """A HOST:PORT --address answers in bounded time ('auto' and ray:// client
    addresses are Ray's to resolve)."""
    if address and address not in ("auto", "local") and "://" not in address:
        check_reachable(address)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """A HOST:PORT address must accept a connection within `timeout` seconds;
    Ray itself would retry for minutes."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(
            f"--address {address!r}: expected 'auto' or HOST:PORT (the head node's "
            f"GCS address, e.g. 10.0.0.5:6379)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InputError(
            f"--address {address}: no Ray cluster answers there ({reason}); check "
            f"that `ray start --head` runs on that host and the port is open"
        ) from None


def connect(config: GridConfig, address: str | None, namespace: str) -> None:
    """Join the cluster at `address` (checked first, in bounded time), or start the
    embedded local Ray."""
    env = use_endpoint(config)
    if ray.is_initialized():  # sweep.run connected first
        return
    check_address(address)
    # Ray's own INFO lines (a local instance started, a run restored) stay in its
    # logs; its warnings and errors still reach the console
    options = {"namespace": namespace, "include_dashboard": False,
               "ignore_reinit_error": True, "logging_level": logging.WARNING,
               "runtime_env": {"env_vars": env} if env else None}  # fmt: skip
    try:
        if address and address != "local":
            ray.init(address=address, **options)
        else:
            start_local(**options)
    except ConnectionError as error:
        raise InputError(f"--address {address}: {str(error).splitlines()[0]}") from None


def start_local(**options) -> None:
    """ray.init(**options) of a fresh embedded Ray whose GCS, raylet, object manager
    and workers listen on LOOPBACK only."""
    with _single_machine():
        # "local": address=None would join any cluster `ray start` left running on
        # this machine
        ray.init(address="local", _node_ip_address=LOOPBACK, **options)


@contextlib.contextmanager
def _single_machine():
    # LOOPBACK_ENV in this process, where ray is imported already; once started, the
    # node's own address is what Ray answers for this machine's
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled


def head_node_id() -> str | None:
    for node in ray.nodes():
        if node.get("Alive") and HEAD_RESOURCE in node.get("Resources", {}):
            return node["NodeID"]
    return None


def service_placement(config: GridConfig, address: str | None) -> dict:
    """Actor options that keep the FID replicas off the head of a cluster and, when
    there are several, on different nodes where Ray can (one lost node, one lost
    replica)."""
    if not address:
        return {}
    several = config.fid_service.replicas > 1
    spread = {"scheduling_strategy": "SPREAD"} if several else {}
    head = head_node_id()
    if config.fid_service.on_head or not head:
        return spread
    return {"label_selector": {"ray.io/node-id": f"!{head}"}, **spread}


def head_placement() -> dict:
    """Actor options that put it on the head node (the FID standby)."""
    head = head_node_id()
    return {"label_selector": {"ray.io/node-id": head}} if head else {}


def remote_error(error: BaseException) -> InputError | None:
    """The InputError a remote task or actor raised, if that is what `error` is."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, InputError):
        return InputError(str(cause))
    creation = str(error)
    if "InputError" in creation:  # an actor's constructor: only its text survives
        line = creation.strip().splitlines()[-1]
        return InputError(line.split("InputError: ", 1)[-1])
    return None


@ray.remote(max_retries=0)
def _gpu_device(who: str) -> str:
    return gpu_device(who)


def preflight(config: GridConfig) -> None:
    """With GPU trials, one task on a GPU node checks that torch sees its GPU."""
    if config.resources.gpu <= 0:
        return
    check = _gpu_device.options(num_gpus=config.resources.gpu, num_cpus=0)
    try:
        ray.get(check.remote("a trial (resources.gpu)"))
    except Exception as error:
        found = remote_error(error)
        if found is None:
            raise
        raise found from None


def trial_device() -> str:
    """The device of this trial or task: its GPU, if Ray gave it one."""
    return gpu_device("a trial (resources.gpu)") if ray.get_gpu_ids() else "cpu"
