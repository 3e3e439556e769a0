"""Which torch device a process runs on: a user's `--device` checked against this
machine, and the GPU of a process Ray gave one (never a quiet fall-back to the CPU)."""

from __future__ import annotations

import os

import torch

from vae_sweep.errors import InputError


def resolve_device(device: str | None = None, flag: str = "--device") -> torch.device:
    """'auto' or None: CUDA when available, else CPU. Anything else is checked against
    this machine: InputError (one line naming `flag`) for an unknown name, a CUDA
    device torch cannot see, or a GPU index past the last one."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"{flag} {device}: unknown device (auto, cpu, cuda or "
                         "cuda:N)") from None  # fmt: skip
    if resolved.type not in ("cpu", "cuda"):
        raise InputError(f"{flag} {device}: only cpu and cuda devices are supported")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{flag} {device}: torch sees no CUDA GPU on this machine "
                             "(use cpu or auto)")  # fmt: skip
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise InputError(f"{flag} {device}: this machine has {count} GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")  # fmt: skip
    return resolved


SIMULATED_GPUS_ENV = "VAE_SWEEP_SIMULATED_GPUS"


def gpu_device(who: str) -> str:
    """The device of a process that Ray gave a GPU: 'cuda', never a quiet CPU.

    InputError when torch sees no GPU, except on a simulated cluster whose nodes only
    advertise GPUs ($VAE_SWEEP_SIMULATED_GPUS=1 on the node, as the tests start
    them), where the process runs on the CPU.
    """
    if torch.cuda.is_available():
        return "cuda"
    if os.environ.get(SIMULATED_GPUS_ENV) == "1":
        return "cpu"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    raise InputError(
        f"{who} asked for a GPU but torch sees none here "
        f"(CUDA_VISIBLE_DEVICES={visible!r}); check the node's driver and the "
        f"torch build, or ask for gpu: 0"
    )
